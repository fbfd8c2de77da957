//! Deploying from a `nix-store --export` stream instead of a binary cache,
//! as the older Heroku Nix buildpack stored closures.
//!
//! The stream is read once, in order. Each NAR goes through the same three
//! threads as a download (unpacking with relocation under a temporary name,
//! NarHash and relocated hash); the store path it belongs to comes after the
//! NAR, so the tree is named only then. An export carries no signatures and
//! no expected hashes: the hashes are computed and recorded in the manifest,
//! and trust comes from whoever could write the file. Nothing is renamed to
//! its final name until the whole stream has been read and the closure is
//! complete (every reference is in the stream or already in the destination).

use std::collections::BTreeSet;
use std::io::{self, Read};

use narwhal_formats::export::{CheckOnly, ExportReader, ExportedPath};
use narwhal_formats::nar::{ErrorKind, UnpackError};
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_formats::tee::{Progress, Tee};

use crate::error::Error;
use crate::fetch::{
    commit_trees, is_present, open_destination, reconcile, scan_all, unpack_relocated, Done, FetchOptions, Summary,
};
use crate::manifest::ManifestEntry;
use crate::report::Source;

/// What [`fetch_export`] put in place.
#[derive(Debug)]
pub struct ExportFetched {
    pub summary: Summary,
    /// Every path of the stream, in its order.
    pub paths: Vec<StorePath>,
    /// The roots asked for, or else the stream's last path (its top when it
    /// was written as `nix-store --export $(nix-store -qR ROOT)`).
    pub roots: Vec<StorePath>,
}

/// Unpacks every path of the export `input` (named `what` in messages) into
/// `opts.dest`, relocated. `roots`, when given, must be in the stream or
/// already in the destination. `len` is the stream's size when known, for progress.
pub fn fetch_export(
    input: &mut (dyn Read + Send),
    what: &str,
    len: Option<u64>,
    store_dir: &StoreDir,
    roots: &[StorePath],
    opts: &FetchOptions<'_>,
) -> Result<ExportFetched, Error> {
    let (mut manifest, _lock) = open_destination(opts, store_dir.as_str())?;
    opts.reporter.reading_export(what, len);
    let mut counted = Tee::new(input, Progress::new(|n| opts.reporter.progress(n)));
    let read = read_stream(&mut counted, what, store_dir, &manifest, opts)?;
    let present: BTreeSet<&str> = manifest.paths.keys().map(String::as_str).collect();
    let roots = check_closure(&read.paths, &present, roots, what, store_dir)?;

    let mut done = read.staged;
    scan_all(&mut done, opts);
    let (done, reconciled) = reconcile(done, &opts.dest);
    let mut summary = Summary {
        paths: read.paths.len(),
        downloaded: done.len(),
        present: read.present,
        downloaded_bytes: counted.out().written(),
        unpacked_bytes: read.unpacked_bytes,
        ..Summary::default()
    };
    let mut trees = Vec::new();
    for mut d in done {
        trees.extend(d.tree.take().map(|t| (t, opts.dest.join(&d.base))));
        summary.warnings.extend(d.entry.warnings.iter().cloned());
        manifest.paths.insert(d.base, d.entry);
    }
    commit_trees(&manifest, trees, opts)?;
    reconciled?;
    Ok(ExportFetched { summary, paths: read.paths.into_iter().map(|p| p.path).collect(), roots })
}

/// The stream read to its end: trees under temporary names.
struct Stream {
    staged: Vec<Done>,
    paths: Vec<ExportedPath>,
    present: usize,
    unpacked_bytes: u64,
}

fn read_stream(
    input: &mut (dyn Read + Send),
    what: &str,
    store_dir: &StoreDir,
    manifest: &crate::manifest::Manifest,
    opts: &FetchOptions<'_>,
) -> Result<Stream, Error> {
    let mut reader = ExportReader::new(io::BufReader::with_capacity(256 * 1024, input), store_dir.clone());
    let mut read = Stream { staged: Vec::new(), paths: Vec::new(), present: 0, unpacked_bytes: 0 };
    for index in 0.. {
        let placeholder = opts.dest.join(format!(".narwhal-export-{}-{index}", std::process::id()));
        let run = unpack_relocated(&placeholder, &opts.relocation, |feed| {
            let r = reader.next_path_copying(&mut CheckOnly, feed);
            if matches!(r, Ok(Some(_))) {
                feed.finish().map_err(narwhal_formats::export::Error::Io)?;
            }
            r
        });
        let (tree, exported) = match (run.tree, run.produced) {
            (_, Ok(None)) => break,
            (Ok(tree), Ok(Some(exported))) => (tree, exported),
            // The unpacking side failed first (a local error, or the NAR's own fault).
            (Err(source), _) if !is_truncated(&source) => {
                return Err(Error::ExportUnpack { what: what.to_owned(), index, source })
            }
            (_, Err(source)) => return Err(Error::Export { what: what.to_owned(), source }),
            (Err(source), Ok(Some(_))) => return Err(Error::ExportUnpack { what: what.to_owned(), index, source }),
        };
        let base = exported.path.base_name().to_owned();
        if let Some(earlier) = read.paths.iter().find(|p| p.path == exported.path) {
            if earlier.nar_hash != exported.nar_hash {
                return Err(Error::Conflict {
                    path: opts.dest.join(&base),
                    what: "NarHash (it appears twice in the export)",
                    existing: earlier.nar_hash.to_string(),
                    wanted: exported.nar_hash.to_string(),
                });
            }
            continue;
        }
        if is_present(&opts.dest, manifest, &base, exported.nar_hash)? {
            read.present += 1;
            opts.reporter.finished(&exported.path, Source::Present);
        } else {
            read.unpacked_bytes += run.nar_size;
            opts.reporter.finished(&exported.path, Source::Download);
            let done = Done {
                base,
                tree: Some(tree),
                entry: ManifestEntry {
                    nar_hash: run.nar_hash.to_string(),
                    nar_size: run.nar_size,
                    relocated_nar_hash: run.relocated.to_string(),
                    references: exported.references.iter().map(ToString::to_string).collect(),
                    warnings: Vec::new(),
                },
                source: Source::Download,
                read_bytes: 0,
                compressed: run.compressed,
                warnings: run.warnings,
            };
            read.staged.push(done);
        }
        read.paths.push(exported);
    }
    Ok(read)
}

/// Checks that every reference of the export's `paths` is in the stream or in `present` (base
/// names already at the destination), and picks the roots: `roots`, each of which must be there,
/// or else the stream's last path, which must be its top. Fetch and images check exports with it.
pub fn check_closure(
    paths: &[ExportedPath],
    present: &BTreeSet<&str>,
    roots: &[StorePath],
    what: &str,
    store_dir: &StoreDir,
) -> Result<Vec<StorePath>, Error> {
    let Some(last) = paths.last() else {
        return Err(Error::EmptyExport { what: what.to_owned() });
    };
    let have: BTreeSet<&str> = paths.iter().map(|p| p.path.base_name()).chain(present.iter().copied()).collect();
    for p in paths {
        if let Some(r) = p.references.iter().find(|r| !have.contains(r.base_name())) {
            return Err(Error::ExportIncomplete {
                what: what.to_owned(),
                path: store_dir.display(&p.path).to_string(),
                reference: store_dir.display(r).to_string(),
            });
        }
    }
    if let Some(r) = roots.iter().find(|r| !have.contains(r.base_name())) {
        return Err(Error::NotInExport { what: what.to_owned(), root: store_dir.display(r).to_string() });
    }
    if !roots.is_empty() {
        return Ok(roots.to_vec());
    }
    // In `nix-store -qR` order the top comes last; a last path something else needs is not the top.
    if let Some(user) = paths.iter().find(|p| p.path != last.path && p.references.contains(&last.path)) {
        return Err(Error::LastNotTop {
            what: what.to_owned(),
            last: store_dir.display(&last.path).to_string(),
            user: store_dir.display(&user.path).to_string(),
        });
    }
    Ok(vec![last.path.clone()])
}

fn is_truncated(e: &UnpackError) -> bool {
    matches!(e, UnpackError::Nar(n) if matches!(n.kind, ErrorKind::Truncated))
}
