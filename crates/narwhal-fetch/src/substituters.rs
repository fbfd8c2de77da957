//! Caches in priority order, as Nix's `substituters` setting.

use narwhal_formats::cache_info::CacheInfo;
use narwhal_formats::store_path::StoreDir;
use narwhal_store::http::HttpOptions;
use narwhal_store::{open_cache, BinaryCache, CacheUrl, Settings};

use crate::error::Error;

/// Nix's default priority for a binary cache.
pub const DEFAULT_PRIORITY: u64 = 50;

pub struct Substituter {
    pub url: CacheUrl,
    pub cache: Box<dyn BinaryCache>,
    pub info: CacheInfo,
    pub priority: u64,
}

pub struct Substituters {
    /// Lowest priority number first; ties keep the order given.
    pub list: Vec<Substituter>,
    pub store_dir: StoreDir,
}

impl Substituters {
    /// Opens each cache and reads its `nix-cache-info` (absent means `/nix/store`).
    /// A `?priority=N` parameter overrides the cache's own; `settings` gives credentials.
    pub fn open(urls: &[CacheUrl], options: &HttpOptions, settings: &Settings) -> Result<Self, Error> {
        let mut list = Vec::new();
        for url in urls {
            let cache = open_cache(url, options, settings)?;
            let info = match cache.get(narwhal_store::keys::CACHE_INFO)? {
                Some(bytes) => CacheInfo::parse(&String::from_utf8_lossy(&bytes))
                    .map_err(|source| Error::CacheInfo { cache: url.to_string(), source })?,
                None => CacheInfo::default(),
            };
            let priority =
                url.param("priority").and_then(|p| p.parse().ok()).or(info.priority).unwrap_or(DEFAULT_PRIORITY);
            list.push(Substituter { url: url.clone(), cache, info, priority });
        }
        list.sort_by_key(|s| s.priority);
        let store_dir = list.first().map(|s| s.info.store_dir.clone()).unwrap_or_default();
        if let Some(other) = list.iter().find(|s| s.info.store_dir != store_dir) {
            return Err(Error::StoreDirMismatch {
                first: list[0].url.to_string(),
                first_dir: store_dir.to_string(),
                second: other.url.to_string(),
                second_dir: other.info.store_dir.to_string(),
            });
        }
        Ok(Self { list, store_dir })
    }
}
