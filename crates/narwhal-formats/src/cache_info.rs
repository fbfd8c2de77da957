//! `nix-cache-info`, the file at the root of a binary cache.
//!
//! ```text
//! StoreDir: /nix/store
//! WantMassQuery: 1
//! Priority: 40
//! ```
//!
//! Nix reads it leniently (lines without ':' are skipped, values trimmed);
//! so does narwhal, but a StoreDir or Priority it cannot use is an error.

use std::fmt;

use thiserror::Error;

use crate::store_path::{self, StoreDir};

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("nix-cache-info line {line}: invalid StoreDir")]
    StoreDir {
        line: usize,
        #[source]
        source: store_path::Error,
    },
    #[error("nix-cache-info line {line}: Priority {value:?} is not a number")]
    Priority { line: usize, value: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheInfo {
    pub store_dir: StoreDir,
    pub want_mass_query: Option<bool>,
    /// Lower is preferred; Nix's default for a binary cache is 50.
    pub priority: Option<u64>,
}

impl CacheInfo {
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut info = Self::default();
        for (i, line) in text.split('\n').enumerate() {
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match key {
                "StoreDir" => {
                    info.store_dir = StoreDir::new(value).map_err(|source| Error::StoreDir { line: i + 1, source })?;
                }
                "WantMassQuery" => info.want_mass_query = Some(value == "1"),
                "Priority" => {
                    info.priority =
                        Some(value.parse().map_err(|_| Error::Priority { line: i + 1, value: value.to_owned() })?);
                }
                _ => {}
            }
        }
        Ok(info)
    }
}

impl fmt::Display for CacheInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "StoreDir: {}", self.store_dir)?;
        if let Some(w) = self.want_mass_query {
            writeln!(f, "WantMassQuery: {}", u8::from(w))?;
        }
        if let Some(p) = self.priority {
            writeln!(f, "Priority: {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n";
        let info = CacheInfo::parse(text).unwrap();
        assert_eq!(info.priority, Some(40));
        assert_eq!(info.to_string(), text);
        assert!(CacheInfo::parse("StoreDir: relative\n").is_err());
        assert!(CacheInfo::parse("Priority: high\n").is_err());
    }
}
