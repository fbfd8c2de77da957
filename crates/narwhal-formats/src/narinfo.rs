//! `<hash>.narinfo`: what a binary cache knows about one store path.
//!
//! ```text
//! StorePath: /nix/store/<hash>-<name>
//! URL: nar/<filehash>.nar.xz
//! Compression: xz                 (absent means bzip2)
//! FileHash: sha256:<nix32>        (optional)
//! FileSize: <bytes>               (optional)
//! NarHash: sha256:<nix32>         (any prefixed encoding is accepted)
//! NarSize: <bytes>                (non-zero)
//! References: <base> <base> …     (may be empty or absent)
//! Deriver: <base>.drv             (optional; "unknown-deriver" means none)
//! System: <system>                (optional)
//! Sig: <key name>:<base64>        (zero or more)
//! CA: fixed:r:sha256:<nix32>      (optional)
//! ```
//!
//! Every line is `Key: value\n`. [`NarInfo::parse`] records the layout it met
//! ([`Layout`]) so that [`NarInfo::to_string`] prints any narinfo Nix accepts
//! back byte for byte; a narinfo built in code prints in Nix's own layout.

use std::fmt;

use thiserror::Error;

use crate::hash::{self, Encoding, Hash};
use crate::signature::{self, fingerprint, PublicKey, SecretKey, Signature};
use crate::store_path::{self, StoreDir, StorePath};

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("line {line} is not 'Key: value'")]
    NotKeyValue { line: usize },
    #[error("the last line does not end with a newline")]
    MissingNewline,
    #[error("line {line}: {key} appears a second time")]
    Duplicate { line: usize, key: &'static str },
    #[error("the {0} line is missing")]
    Missing(&'static str),
    #[error("line {line}: invalid StorePath")]
    StorePath {
        line: usize,
        #[source]
        source: store_path::Error,
    },
    #[error("line {line}: invalid {key}")]
    Hash {
        line: usize,
        key: &'static str,
        #[source]
        source: hash::Error,
    },
    #[error("line {line}: {key} {value:?} is not a number")]
    Number { line: usize, key: &'static str, value: String },
    #[error("line {line}: NarSize is 0")]
    ZeroNarSize { line: usize },
    #[error("line {line}: URL is empty")]
    EmptyUrl { line: usize },
    #[error("line {line}: reference {index} is invalid")]
    Reference {
        line: usize,
        index: usize,
        #[source]
        source: store_path::Error,
    },
    #[error("line {line}: invalid Deriver")]
    Deriver {
        line: usize,
        #[source]
        source: store_path::Error,
    },
}

/// The fields a narinfo can have, in the order Nix writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    StorePath,
    Url,
    Compression,
    FileHash,
    FileSize,
    NarHash,
    NarSize,
    References,
    Deriver,
    System,
    /// The n-th signature.
    Sig(usize),
    Ca,
    /// The n-th line of a key narwhal does not know (kept, printed back).
    Unknown(usize),
}

/// How a parsed narinfo was laid out, where that differs between writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Lines in the order they appeared.
    pub order: Vec<Field>,
    pub nar_hash: Encoding,
    pub file_hash: Encoding,
    /// The Deriver line said `unknown-deriver`.
    pub unknown_deriver: bool,
}

impl Layout {
    /// Nix's own: nix32 hashes, no `unknown-deriver`, the fields in [`Field`]'s order.
    fn nix() -> Self {
        Self { order: Vec::new(), nar_hash: Encoding::Nix32, file_hash: Encoding::Nix32, unknown_deriver: false }
    }
}

/// What was measured of a NAR as it went by: its hash and size, and those of the compressed file
/// it came in (when it was compressed). The one check of a NAR against its narinfo,
/// [`Digests::check`], used wherever a NAR is read: by fetch as it unpacks, and through
/// `narwhal_store::nar_check` by `push --from`, the server's PUT and `narwhal verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    pub nar_hash: Hash,
    pub nar_size: u64,
    pub file_hash: Option<Hash>,
    pub file_size: Option<u64>,
}

/// One field of a narinfo that the bytes did not match.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field} is {actual}, the narinfo says {expected}")]
pub struct Mismatch {
    /// `FileHash`, `FileSize`, `NarSize` or `NarHash`, in the order they are checked.
    pub field: &'static str,
    pub expected: String,
    pub actual: String,
}

impl Digests {
    /// The first field of `info` these digests contradict, the compressed file's first (it is
    /// what was signed over the wire). Fields the narinfo leaves out are not checked; a NarHash in
    /// another algorithm than the one measured is a mismatch.
    pub fn check(&self, info: &NarInfo) -> Result<(), Mismatch> {
        let mismatch = |field, expected: String, actual: String| Err(Mismatch { field, expected, actual });
        if let (Some(expected), Some(actual)) = (info.file_hash, self.file_hash) {
            if expected != actual {
                return mismatch("FileHash", expected.to_string(), actual.to_string());
            }
        }
        if let (Some(expected), Some(actual)) = (info.file_size, self.file_size) {
            if expected != actual {
                return mismatch("FileSize", expected.to_string(), actual.to_string());
            }
        }
        if info.nar_size != self.nar_size {
            return mismatch("NarSize", info.nar_size.to_string(), self.nar_size.to_string());
        }
        if info.nar_hash != self.nar_hash {
            return mismatch("NarHash", info.nar_hash.to_string(), self.nar_hash.to_string());
        }
        Ok(())
    }
}

/// A parsed narinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    pub store_dir: StoreDir,
    pub path: StorePath,
    pub url: String,
    /// `None` when the line is absent, which means bzip2.
    pub compression: Option<String>,
    pub file_hash: Option<Hash>,
    pub file_size: Option<u64>,
    pub nar_hash: Hash,
    pub nar_size: u64,
    /// In file order. `None` when the line is absent.
    pub references: Option<Vec<StorePath>>,
    pub deriver: Option<StorePath>,
    pub system: Option<String>,
    /// Kept as text: a cache may hold signatures narwhal cannot parse.
    pub sigs: Vec<String>,
    pub ca: Option<String>,
    pub unknown: Vec<(String, String)>,
    pub layout: Layout,
}

impl NarInfo {
    /// A narinfo with Nix's layout.
    pub fn new(store_dir: StoreDir, path: StorePath, url: String, nar_hash: Hash, nar_size: u64) -> Self {
        Self {
            store_dir,
            path,
            url,
            compression: Some("none".to_owned()),
            file_hash: None,
            file_size: None,
            nar_hash,
            nar_size,
            references: Some(Vec::new()),
            deriver: None,
            system: None,
            sigs: Vec::new(),
            ca: None,
            unknown: Vec::new(),
            layout: Layout::nix(),
        }
    }

    /// Parses a narinfo whose StorePath lies in `store_dir`.
    pub fn parse(text: &str, store_dir: &StoreDir) -> Result<Self, Error> {
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(Error::MissingNewline);
        }
        let mut fields = Fields::new(store_dir);
        for (i, line) in text.split_terminator('\n').enumerate() {
            fields.line = i + 1;
            let (key, value) = line.split_once(": ").ok_or(Error::NotKeyValue { line: fields.line })?;
            let field = fields.field(key, value)?;
            fields.layout.order.push(field);
        }
        fields.finish()
    }

    /// The compression of the file at `url`; Nix reads a missing line as bzip2.
    pub fn compression(&self) -> &str {
        self.compression.as_deref().unwrap_or("bzip2")
    }

    pub fn references(&self) -> &[StorePath] {
        self.references.as_deref().unwrap_or_default()
    }

    /// The text signatures sign.
    pub fn fingerprint(&self) -> Result<String, signature::Error> {
        fingerprint(&self.store_dir, &self.path, &self.nar_hash, self.nar_size, self.references())
    }

    /// Adds (or replaces) the signature of `key`, keeping signatures sorted as Nix does.
    pub fn sign(&mut self, key: &SecretKey) -> Result<(), signature::Error> {
        let sig = key.sign(self.fingerprint()?.as_bytes()).to_string();
        let prefix = format!("{}:", key.name());
        self.sigs.retain(|s| !s.starts_with(&prefix));
        self.sigs.push(sig);
        self.sigs.sort();
        // Signatures are printed where Nix prints them: the recorded order no longer applies.
        self.layout.order.retain(|f| !matches!(f, Field::Sig(_)));
        if !self.layout.order.is_empty() {
            let at = self
                .layout
                .order
                .iter()
                .position(|f| matches!(f, Field::Ca | Field::Unknown(_)))
                .unwrap_or(self.layout.order.len());
            for i in (0..self.sigs.len()).rev() {
                self.layout.order.insert(at, Field::Sig(i));
            }
        }
        Ok(())
    }

    /// The names of the trusted keys whose signatures on this narinfo are valid.
    pub fn valid_signers<'k>(&self, trusted: &'k [PublicKey]) -> Vec<&'k str> {
        let Ok(fp) = self.fingerprint() else { return Vec::new() };
        let sigs: Vec<Signature> = self.sigs.iter().filter_map(|s| Signature::parse(s).ok()).collect();
        trusted.iter().filter(|k| sigs.iter().any(|s| k.verify(fp.as_bytes(), s))).map(PublicKey::name).collect()
    }

    fn canonical_order(&self) -> Vec<Field> {
        let mut order = vec![Field::StorePath, Field::Url, Field::Compression];
        if self.file_hash.is_some() {
            order.push(Field::FileHash);
        }
        if self.file_size.is_some() {
            order.push(Field::FileSize);
        }
        order.extend([Field::NarHash, Field::NarSize, Field::References]);
        if self.deriver.is_some() || self.layout.unknown_deriver {
            order.push(Field::Deriver);
        }
        if self.system.is_some() {
            order.push(Field::System);
        }
        order.extend((0..self.sigs.len()).map(Field::Sig));
        if self.ca.is_some() {
            order.push(Field::Ca);
        }
        order.extend((0..self.unknown.len()).map(Field::Unknown));
        order
    }

    fn write_field(&self, f: &mut fmt::Formatter<'_>, field: Field) -> fmt::Result {
        match field {
            Field::StorePath => writeln!(f, "StorePath: {}", self.store_dir.display(&self.path)),
            Field::Url => writeln!(f, "URL: {}", self.url),
            Field::Compression => match &self.compression {
                Some(c) => writeln!(f, "Compression: {c}"),
                None => Ok(()),
            },
            Field::FileHash => match &self.file_hash {
                Some(h) => writeln!(f, "FileHash: {}", h.to_prefixed(self.layout.file_hash)),
                None => Ok(()),
            },
            Field::FileSize => match self.file_size {
                Some(n) => writeln!(f, "FileSize: {n}"),
                None => Ok(()),
            },
            Field::NarHash => writeln!(f, "NarHash: {}", self.nar_hash.to_prefixed(self.layout.nar_hash)),
            Field::NarSize => writeln!(f, "NarSize: {}", self.nar_size),
            Field::References => match &self.references {
                Some(refs) => {
                    f.write_str("References:")?;
                    // Nix writes "References: " even when there are none.
                    f.write_str(" ")?;
                    for (i, r) in refs.iter().enumerate() {
                        if i > 0 {
                            f.write_str(" ")?;
                        }
                        write!(f, "{r}")?;
                    }
                    f.write_str("\n")
                }
                None => Ok(()),
            },
            Field::Deriver => match &self.deriver {
                Some(d) => writeln!(f, "Deriver: {d}"),
                None if self.layout.unknown_deriver => writeln!(f, "Deriver: unknown-deriver"),
                None => Ok(()),
            },
            Field::System => match &self.system {
                Some(s) => writeln!(f, "System: {s}"),
                None => Ok(()),
            },
            Field::Sig(i) => match self.sigs.get(i) {
                Some(s) => writeln!(f, "Sig: {s}"),
                None => Ok(()),
            },
            Field::Ca => match &self.ca {
                Some(c) => writeln!(f, "CA: {c}"),
                None => Ok(()),
            },
            Field::Unknown(i) => match self.unknown.get(i) {
                Some((k, v)) => writeln!(f, "{k}: {v}"),
                None => Ok(()),
            },
        }
    }
}

/// Prints the narinfo in its recorded layout, or Nix's when built in code.
/// A narinfo being parsed: what its lines gave so far, one method per key.
/// Each checks its value, then that its key did not appear before.
struct Fields<'s> {
    store_dir: &'s StoreDir,
    /// The line being parsed, from 1, for errors.
    line: usize,
    path: Option<StorePath>,
    url: Option<String>,
    compression: Option<String>,
    file_hash: Option<Hash>,
    file_size: Option<u64>,
    nar_hash: Option<Hash>,
    nar_size: Option<u64>,
    references: Option<Vec<StorePath>>,
    deriver: Option<StorePath>,
    /// A Deriver line was seen (`unknown-deriver` leaves `deriver` empty).
    seen_deriver: bool,
    system: Option<String>,
    sigs: Vec<String>,
    ca: Option<String>,
    unknown: Vec<(String, String)>,
    layout: Layout,
}

impl<'s> Fields<'s> {
    fn new(store_dir: &'s StoreDir) -> Self {
        Self {
            store_dir,
            line: 0,
            path: None,
            url: None,
            compression: None,
            file_hash: None,
            file_size: None,
            nar_hash: None,
            nar_size: None,
            references: None,
            deriver: None,
            seen_deriver: false,
            system: None,
            sigs: Vec::new(),
            ca: None,
            unknown: Vec::new(),
            layout: Layout::nix(),
        }
    }

    fn field(&mut self, key: &str, value: &str) -> Result<Field, Error> {
        match key {
            "StorePath" => self.store_path(value),
            "URL" => self.url(value),
            "Compression" => self.text(value, "Compression", Field::Compression),
            "FileHash" => self.file_hash(value),
            "FileSize" => self.file_size(value),
            "NarHash" => self.nar_hash(value),
            "NarSize" => self.nar_size(value),
            "References" => self.references(value),
            "Deriver" => self.deriver(value),
            "System" => self.text(value, "System", Field::System),
            "Sig" => {
                self.sigs.push(value.to_owned());
                Ok(Field::Sig(self.sigs.len() - 1))
            }
            "CA" => self.text(value, "CA", Field::Ca),
            _ => {
                self.unknown.push((key.to_owned(), value.to_owned()));
                Ok(Field::Unknown(self.unknown.len() - 1))
            }
        }
    }

    /// Puts `value` in `slot`, which must still be empty.
    fn once<T>(line: usize, slot: &mut Option<T>, key: &'static str, value: T) -> Result<(), Error> {
        if slot.is_some() {
            return Err(Error::Duplicate { line, key });
        }
        *slot = Some(value);
        Ok(())
    }

    fn number(&self, key: &'static str, value: &str) -> Result<u64, Error> {
        value.parse::<u64>().map_err(|_| Error::Number { line: self.line, key, value: value.to_owned() })
    }

    fn hash(&self, key: &'static str, value: &str) -> Result<Hash, Error> {
        Hash::parse_prefixed(value).map_err(|source| Error::Hash { line: self.line, key, source })
    }

    fn store_path(&mut self, value: &str) -> Result<Field, Error> {
        let path = self.store_dir.parse_path(value).map_err(|source| Error::StorePath { line: self.line, source })?;
        Self::once(self.line, &mut self.path, "StorePath", path)?;
        Ok(Field::StorePath)
    }

    fn url(&mut self, value: &str) -> Result<Field, Error> {
        if value.is_empty() {
            return Err(Error::EmptyUrl { line: self.line });
        }
        Self::once(self.line, &mut self.url, "URL", value.to_owned())?;
        Ok(Field::Url)
    }

    /// Compression, System and CA: kept as they are.
    fn text(&mut self, value: &str, key: &'static str, field: Field) -> Result<Field, Error> {
        let slot = match field {
            Field::Compression => &mut self.compression,
            Field::System => &mut self.system,
            _ => &mut self.ca,
        };
        Self::once(self.line, slot, key, value.to_owned())?;
        Ok(field)
    }

    fn file_hash(&mut self, value: &str) -> Result<Field, Error> {
        let hash = self.hash("FileHash", value)?;
        Self::once(self.line, &mut self.file_hash, "FileHash", hash)?;
        self.layout.file_hash = Hash::detect_encoding(value).unwrap_or(Encoding::Nix32);
        Ok(Field::FileHash)
    }

    fn file_size(&mut self, value: &str) -> Result<Field, Error> {
        let size = self.number("FileSize", value)?;
        Self::once(self.line, &mut self.file_size, "FileSize", size)?;
        Ok(Field::FileSize)
    }

    fn nar_hash(&mut self, value: &str) -> Result<Field, Error> {
        let hash = self.hash("NarHash", value)?;
        Self::once(self.line, &mut self.nar_hash, "NarHash", hash)?;
        self.layout.nar_hash = Hash::detect_encoding(value).unwrap_or(Encoding::Nix32);
        Ok(Field::NarHash)
    }

    fn nar_size(&mut self, value: &str) -> Result<Field, Error> {
        let size = self.number("NarSize", value)?;
        if size == 0 {
            return Err(Error::ZeroNarSize { line: self.line });
        }
        Self::once(self.line, &mut self.nar_size, "NarSize", size)?;
        Ok(Field::NarSize)
    }

    fn references(&mut self, value: &str) -> Result<Field, Error> {
        let line = self.line;
        let refs = value
            .split(' ')
            .filter(|r| !r.is_empty())
            .enumerate()
            .map(|(index, r)| StorePath::from_base_name(r).map_err(|source| Error::Reference { line, index, source }))
            .collect::<Result<Vec<_>, _>>()?;
        Self::once(line, &mut self.references, "References", refs)?;
        Ok(Field::References)
    }

    fn deriver(&mut self, value: &str) -> Result<Field, Error> {
        if self.seen_deriver {
            return Err(Error::Duplicate { line: self.line, key: "Deriver" });
        }
        self.seen_deriver = true;
        if value == "unknown-deriver" {
            self.layout.unknown_deriver = true;
        } else {
            let line = self.line;
            self.deriver = Some(StorePath::from_base_name(value).map_err(|source| Error::Deriver { line, source })?);
        }
        Ok(Field::Deriver)
    }

    /// The narinfo, once every line is in: StorePath, URL, NarHash and NarSize are required.
    fn finish(self) -> Result<NarInfo, Error> {
        Ok(NarInfo {
            store_dir: self.store_dir.clone(),
            path: self.path.ok_or(Error::Missing("StorePath"))?,
            url: self.url.ok_or(Error::Missing("URL"))?,
            compression: self.compression,
            file_hash: self.file_hash,
            file_size: self.file_size,
            nar_hash: self.nar_hash.ok_or(Error::Missing("NarHash"))?,
            nar_size: self.nar_size.ok_or(Error::Missing("NarSize"))?,
            references: self.references,
            deriver: self.deriver,
            system: self.system,
            sigs: self.sigs,
            ca: self.ca,
            unknown: self.unknown,
            layout: self.layout,
        })
    }
}

impl fmt::Display for NarInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let canonical;
        let order = if self.layout.order.is_empty() {
            canonical = self.canonical_order();
            &canonical
        } else {
            &self.layout.order
        };
        for &field in order {
            self.write_field(f, field)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIX_WRITTEN: &str = "StorePath: /nix/store/0pqyvyw21p553pf74czgvqks0vjaqp0l-t1
URL: nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.xz
Compression: xz
FileHash: sha256:1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3
FileSize: 92
NarHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73
NarSize: 120
References: 
Deriver: 257g5944d78w0sppjaj74h6sjp642vbp-t1.drv
";

    #[test]
    fn round_trips_and_reports() {
        let dir = StoreDir::default();
        let info = NarInfo::parse(NIX_WRITTEN, &dir).unwrap();
        assert_eq!(info.to_string(), NIX_WRITTEN);
        assert_eq!(info.compression(), "xz");
        assert!(info.references().is_empty());

        let variant = "StorePath: /nix/store/0pqyvyw21p553pf74czgvqks0vjaqp0l-t1\nURL: nar/x.nar\nNarHash: sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nNarSize: 120\nDeriver: unknown-deriver\nSig: a:b\nSig: c:d\nX-Extra: yes\n";
        let info = NarInfo::parse(variant, &dir).unwrap();
        assert_eq!(info.compression(), "bzip2");
        assert_eq!(info.deriver, None);
        assert_eq!(info.to_string(), variant);
    }

    #[test]
    fn errors_carry_the_line() {
        let dir = StoreDir::default();
        let e = NarInfo::parse("StorePath: /nix/store/0pqyvyw21p553pf74czgvqks0vjaqp0l-t1\nNarSize: x\n", &dir);
        assert_eq!(e.unwrap_err(), Error::Number { line: 2, key: "NarSize", value: "x".into() });
        assert_eq!(NarInfo::parse("StorePath\n", &dir).unwrap_err(), Error::NotKeyValue { line: 1 });
        let e = NarInfo::parse(&NIX_WRITTEN.replace("References: ", "References: nope"), &dir).unwrap_err();
        assert!(matches!(e, Error::Reference { line: 8, index: 0, .. }));
        assert_eq!(NarInfo::parse(&NIX_WRITTEN.replace("URL", "X"), &dir).unwrap_err(), Error::Missing("URL"));
    }

    #[test]
    fn signs_and_verifies() {
        let dir = StoreDir::default();
        let mut info = NarInfo::parse(NIX_WRITTEN, &dir).unwrap();
        let key = SecretKey::generate("cache-1").unwrap();
        info.sign(&key).unwrap();
        let printed = info.to_string();
        assert!(printed.ends_with(&format!("Sig: {}\n", info.sigs[0])));
        let back = NarInfo::parse(&printed, &dir).unwrap();
        let trusted = [key.public_key()];
        assert_eq!(back.valid_signers(&trusted), vec!["cache-1"]);
        let mut tampered = back.clone();
        tampered.nar_size += 1;
        assert!(tampered.valid_signers(&trusted).is_empty());
    }
}
