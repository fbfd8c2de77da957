//! The one way a path goes into a cache, for every push (from the local store, from another cache,
//! from an export): its NAR first, then its narinfo, signed, once the narinfos of its references
//! are in (the caller waits for that: [`crate::push::Commits`] or the export's own order).

use std::path::Path;

use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::signature::SecretKey;
use narwhal_formats::store_path::StoreDir;
use narwhal_store::{keys, CacheWriter};

use crate::error::Error;

/// Writes a `nix-cache-info` naming `store_dir` into a cache that has none.
pub(crate) fn ensure_cache_info(dest: &dyn CacheWriter, store_dir: &StoreDir) -> Result<(), Error> {
    if !dest.exists(keys::CACHE_INFO)? {
        dest.put(keys::CACHE_INFO, keys::cache_info_for(store_dir).as_bytes(), keys::CACHE_INFO_TYPE)?;
    }
    Ok(())
}

/// Uploads the compressed NAR at `file` as `url`, unless the cache has it (NARs are named by their
/// FileHash, so one there is the same bytes).
pub(crate) fn store_nar(dest: &dyn CacheWriter, url: &str, file: &Path) -> Result<(), Error> {
    if !dest.exists(url)? {
        dest.put_file(url, file, keys::NAR_TYPE)?;
    }
    Ok(())
}

/// Signs `narinfo` with each of `keys` (keeping the signatures it has, sorted, as Nix does).
pub(crate) fn sign(narinfo: &mut NarInfo, keys: &[SecretKey]) -> Result<(), Error> {
    narinfo.sigs.sort();
    for key in keys {
        let path = narinfo.store_dir.display(&narinfo.path).to_string();
        narinfo.sign(key).map_err(|source| Error::Sign { path, source })?;
    }
    Ok(())
}

/// The commit point: writes `narinfo`. Its NAR and its references' narinfos must be in already.
pub(crate) fn commit(dest: &dyn CacheWriter, narinfo: &NarInfo) -> Result<(), Error> {
    dest.put(&keys::narinfo(&narinfo.path), narinfo.to_string().as_bytes(), keys::NARINFO_TYPE)?;
    Ok(())
}
