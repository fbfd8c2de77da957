//! `narwhal verify --in URL [PATH…]`: every narinfo of a cache (or those given) against its
//! signatures, its NAR and its references, with a report by problem; `repair_from` fetches a
//! missing or damaged NAR again from another cache, checks it against the narinfo (FileHash,
//! FileSize, NarHash, NarSize) and stores it atomically under the narinfo's URL.

use std::collections::HashSet;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;

use serde::Serialize;

use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::signature::PublicKey;
use narwhal_formats::store_path::StoreDir;
use narwhal_store::nar_check::{measure, MeasureError};
use narwhal_store::{keys, parallel, BinaryCache, CacheWriter, StoreErrorKind};

use crate::error::Error;
use crate::GcReporter;

pub struct VerifyOptions<'a> {
    /// Keys a narinfo must be signed by (one of them); empty: signatures are not checked.
    pub trusted: Vec<PublicKey>,
    /// Also decompress each NAR and check NarSize and NarHash.
    pub contents: bool,
    pub jobs: usize,
    /// Fetch missing or damaged NARs again from this cache.
    pub repair_from: Option<&'a dyn BinaryCache>,
    /// Where a repaired NAR waits before it is stored.
    pub temp_dir: PathBuf,
    pub reporter: &'a dyn GcReporter,
}

/// What can be wrong with a path in a cache, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// A path given that has no narinfo.
    NoNarinfo,
    /// The narinfo does not parse.
    Unreadable,
    /// No signature by a trusted key.
    BadSignature,
    MissingNar,
    /// The NAR differs from what the narinfo says (the field is in the detail).
    DamagedNar,
    /// A reference whose narinfo the cache lacks.
    MissingReference,
}

impl Problem {
    pub fn describe(self) -> &'static str {
        match self {
            Self::NoNarinfo => "no narinfo",
            Self::Unreadable => "unreadable narinfo",
            Self::BadSignature => "no valid signature by a trusted key",
            Self::MissingNar => "missing NAR",
            Self::DamagedNar => "NAR does not match its narinfo",
            Self::MissingReference => "reference without a narinfo",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub problem: Problem,
    /// The store path (or the narinfo's key when it does not parse).
    pub path: String,
    pub detail: String,
    /// Fixed by the repair.
    pub repaired: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cache: String,
    pub checked: usize,
    pub signatures_checked: bool,
    pub contents_checked: bool,
    /// By problem, then path.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether anything is still wrong (repaired findings are not).
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| !f.repaired)
    }
}

/// Verifies `cache`: the narinfos of `paths` (store paths or hash parts), or all of them.
pub fn verify(cache: &dyn CacheWriter, paths: &[String], opts: &VerifyOptions<'_>) -> Result<Report, Error> {
    let store_dir = crate::scan::store_dir(cache)?;
    let (hashes, listed): (Vec<String>, Option<HashSet<String>>) = if paths.is_empty() {
        opts.reporter.stage("listing the cache");
        let mut all = Vec::new();
        cache.list_objects("", &mut |o| {
            if let Some(h) = o.key.strip_suffix(".narinfo").filter(|h| h.len() == 32 && !h.contains('/')) {
                all.push(h.to_owned());
            }
        })?;
        all.sort();
        let set = all.iter().cloned().collect();
        (all, Some(set))
    } else {
        let given = paths.iter().map(|p| hash_of(p, &store_dir)).collect::<Result<Vec<_>, _>>()?;
        (given, None)
    };
    opts.reporter.stage("verifying");
    opts.reporter.reading(hashes.len());
    let given = !paths.is_empty();
    let found = parallel::try_map(&hashes, opts.jobs, |hash| {
        let r = check_one(cache, hash, &store_dir, listed.as_ref(), given, opts);
        opts.reporter.read_one();
        r
    })?;
    let mut findings: Vec<Finding> = found.into_iter().flatten().collect();
    findings.sort_by(|a, b| (a.problem, &a.path, &a.detail).cmp(&(b.problem, &b.path, &b.detail)));
    Ok(Report {
        cache: cache.url().to_owned(),
        checked: hashes.len(),
        signatures_checked: !opts.trusted.is_empty(),
        contents_checked: opts.contents,
        findings,
    })
}

fn hash_of(given: &str, store_dir: &StoreDir) -> Result<String, Error> {
    let text = given.trim_end_matches('/');
    let hash = match store_dir.split_path(text) {
        Ok((path, _)) => path.hash_part().to_owned(),
        Err(_) => text.to_owned(),
    };
    if hash.len() == 32 && hash.bytes().all(|b| narwhal_formats::nixbase32::ALPHABET.contains(&b)) {
        Ok(hash)
    } else {
        Err(Error::Root { given: given.to_owned(), store_dir: store_dir.to_string() })
    }
}

fn check_one(
    cache: &dyn CacheWriter,
    hash: &str,
    store_dir: &StoreDir,
    listed: Option<&HashSet<String>>,
    given: bool,
    opts: &VerifyOptions<'_>,
) -> Result<Vec<Finding>, Error> {
    let key = keys::narinfo_of_hash(hash);
    let finding =
        |problem, path: &str, detail: String| Finding { problem, path: path.to_owned(), detail, repaired: false };
    let Some(bytes) = cache.get(&key)? else {
        // Listed, then deleted meanwhile: nothing to check.
        return Ok(if given { vec![finding(Problem::NoNarinfo, hash, key)] } else { Vec::new() });
    };
    let info = match std::str::from_utf8(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|t| NarInfo::parse(t, store_dir).map_err(|e| e.to_string()))
    {
        Ok(info) => info,
        Err(why) => return Ok(vec![finding(Problem::Unreadable, &key, why)]),
    };
    let path = store_dir.display(&info.path).to_string();
    let mut out = Vec::new();
    if !opts.trusted.is_empty() && info.valid_signers(&opts.trusted).is_empty() {
        let detail = if info.sigs.is_empty() {
            "unsigned".to_owned()
        } else {
            format!("{} signature(s), none valid", info.sigs.len())
        };
        out.push(finding(Problem::BadSignature, &path, detail));
    }
    for r in info.references().iter().filter(|r| **r != info.path) {
        let present = match listed {
            Some(set) => set.contains(r.hash_part()),
            None => cache.exists(&keys::narinfo(r))?,
        };
        if !present {
            out.push(finding(Problem::MissingReference, &path, store_dir.display(r).to_string()));
        }
    }
    if let Some(mut f) = check_nar(cache, &info, opts.contents)?.map(|(p, d)| finding(p, &path, d)) {
        if let Some(from) = opts.repair_from {
            f.repaired = repair(cache, from, &info, opts)?;
        }
        out.push(f);
    }
    Ok(out)
}

/// The NAR's problem, if it has one.
fn check_nar(cache: &dyn BinaryCache, info: &NarInfo, contents: bool) -> Result<Option<(Problem, String)>, Error> {
    if narwhal_store::check_key(&info.url).is_err() {
        return Ok(Some((Problem::Unreadable, format!("URL {:?} leaves the cache", info.url))));
    }
    match measure(cache, &info.url, info, contents, &mut std::io::sink()) {
        Ok(m) => Ok(m.digests().check(info).err().map(|m| (Problem::DamagedNar, format!("{}: {m}", info.url)))),
        Err(MeasureError::Store(e)) if matches!(e.kind, StoreErrorKind::NotFound) => {
            Ok(Some((Problem::MissingNar, info.url.clone())))
        }
        Err(MeasureError::Store(e)) => Err(Error::Store(e)),
        Err(MeasureError::Compression(e)) => Ok(Some((Problem::Unreadable, e.to_string()))),
        Err(e) => Ok(Some((Problem::DamagedNar, e.to_string()))),
    }
}

/// Fetches the NAR of `info` from `from` (under its URL there, else under the URL `from`'s own
/// narinfo names), checks all four fields against `info`, and stores it under `info.url`.
fn repair(
    cache: &dyn CacheWriter,
    from: &dyn BinaryCache,
    info: &NarInfo,
    opts: &VerifyOptions<'_>,
) -> Result<bool, Error> {
    let mut urls = vec![info.url.clone()];
    if let Some(bytes) = from.get(&keys::narinfo(&info.path))? {
        if let Ok(theirs) = NarInfo::parse(&String::from_utf8_lossy(&bytes), &info.store_dir) {
            if theirs.url != info.url && narwhal_store::check_key(&theirs.url).is_ok() {
                urls.push(theirs.url);
            }
        }
    }
    for url in urls {
        // Removed on drop (narwhal_formats::temp), whatever happens below.
        let tmp = narwhal_formats::temp::file_in(&opts.temp_dir, format!("narwhal-repair-{}", info.path.hash_part()))
            .map_err(|source| Error::Temp { path: opts.temp_dir.clone(), source })?;
        let temp_err = |source| Error::Temp { path: tmp.path().to_owned(), source };
        let measured = {
            let mut file = BufWriter::new(tmp.as_file().try_clone().map_err(temp_err)?);
            let m = measure(from, &url, info, true, &mut file);
            file.flush().map_err(temp_err)?;
            m
        };
        let stored = match measured {
            Ok(m) if m.digests().check(info).is_ok() => {
                cache.put_file(&info.url, tmp.path(), keys::NAR_TYPE).map(|()| true)
            }
            Err(MeasureError::Store(e)) if !matches!(e.kind, StoreErrorKind::NotFound) => Err(e),
            // Not there, or not the bytes the narinfo names: try the next URL.
            _ => Ok(false),
        };
        drop(tmp);
        if stored? {
            return Ok(true);
        }
    }
    Ok(false)
}
