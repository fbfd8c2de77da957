//! The one closure walk, for every job that follows references through a cache or a store:
//! fetch (narinfos from the substituters, signatures checked), `push --from` (narinfos from the
//! source cache), and next images, GC and verify.
//!
//! Breadth first: each layer of paths not seen yet is looked up in parallel ([`parallel`]), the
//! references of what was found make the next layer, and the whole closure is then ordered
//! references first ([`references_first`]), which refuses a cycle.

use std::collections::{BTreeMap, BTreeSet};

use narwhal_formats::store_path::{references_first, Cycle, StorePath};

use crate::parallel;

/// The closure of `roots`: `lookup` gives each path's record (a narinfo, a path info), and
/// `references` the paths that record names. Looks up `jobs` paths at once; the first failed
/// lookup (in layer order) is the error. Self-references are followed no further.
pub fn walk<T: Send, E: Send + From<Cycle>>(
    roots: &[StorePath],
    jobs: usize,
    lookup: impl Fn(&StorePath) -> Result<T, E> + Sync,
    references: impl Fn(&T) -> &[StorePath],
) -> Result<Vec<T>, E> {
    let mut found: BTreeMap<StorePath, T> = BTreeMap::new();
    let mut layer: Vec<StorePath> = roots.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    while !layer.is_empty() {
        let records = parallel::try_map(&layer, jobs, &lookup)?;
        let mut next = BTreeSet::new();
        for (path, record) in layer.into_iter().zip(records) {
            next.extend(references(&record).iter().filter(|r| **r != path).cloned());
            found.insert(path, record);
        }
        layer = next.into_iter().filter(|p| !found.contains_key(p)).collect();
    }
    Ok(references_first(found, references)?)
}
