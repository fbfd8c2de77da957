//! Walking a closure through narinfos, breadth first, in parallel.

use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::signature::PublicKey;
use narwhal_formats::store_path::StorePath;

use crate::error::{Error, Failure, Why};
use crate::substituters::Substituters;

/// A path of the closure and where to get it.
#[derive(Debug, Clone)]
pub struct ClosurePath {
    pub info: NarInfo,
    /// Index into [`Substituters::list`].
    pub substituter: usize,
}

/// Finds the narinfo of `path` in the first cache (by priority) that has one
/// that parses and, when `trusted` is `Some`, carries a valid signature by a trusted key.
fn lookup(subs: &Substituters, path: &StorePath, trusted: Option<&[PublicKey]>) -> Result<ClosurePath, Error> {
    let mut tried = Vec::new();
    let full = subs.store_dir.display(path).to_string();
    for (i, s) in subs.list.iter().enumerate() {
        let key = narwhal_store::keys::narinfo(path);
        let Some(bytes) = s.cache.get(&key)? else {
            tried.push(Failure { cache: s.url.to_string(), why: Why::NotThere });
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let info = NarInfo::parse(&text, &s.info.store_dir).map_err(|source| Error::Narinfo {
            path: full.clone(),
            cache: s.url.to_string(),
            source,
        })?;
        if info.path != *path {
            tried.push(Failure { cache: s.url.to_string(), why: Why::OtherPath(info.path.to_string()) });
            continue;
        }
        if let Some(keys) = trusted {
            if info.valid_signers(keys).is_empty() {
                let why = if info.sigs.is_empty() {
                    Why::Unsigned
                } else {
                    Why::Untrusted(info.sigs.iter().map(|s| s.split(':').next().unwrap_or("").to_owned()).collect())
                };
                tried.push(Failure { cache: s.url.to_string(), why });
                continue;
            }
        }
        return Ok(ClosurePath { info, substituter: i });
    }
    Err(Error::NotFound { path: full, tried })
}

/// The closure of `roots`: every path with its narinfo, references first
/// (a path comes after all the paths it refers to, self-references aside).
pub fn walk_closure(
    subs: &Substituters,
    roots: &[StorePath],
    trusted: Option<&[PublicKey]>,
    jobs: usize,
) -> Result<Vec<ClosurePath>, Error> {
    narwhal_store::closure::walk(roots, jobs, |p| lookup(subs, p, trusted), |cp| cp.info.references())
}
