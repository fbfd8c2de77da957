//! `narwhal gc`: mark from one listing, publish the candidates, and sweep what is still
//! unreachable one grace period later. See the crate documentation for the rules.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use narwhal_store::gc_window::{GcWindow, VERSION};
use narwhal_store::pin::Pin;
use narwhal_store::{keys, parallel, CacheWriter};

use crate::duration::millis;
use crate::error::Error;
use crate::lease::Lease;
use crate::scan::{hash_str, Scan, NONE};
use crate::{now_ms, GcReporter};
use narwhal_store::gc_window::hostname;

/// Which part of a collection to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Mark and publish the candidates.
    One,
    /// Delete the candidates of a published window that are still unreachable.
    Two,
    /// Both, waiting one grace period in between.
    Both,
}

pub struct GcOptions<'a> {
    /// Narinfos written more recently are roots.
    pub keep_since: Duration,
    /// Everything written more recently is a root, and phase 2 comes at least this long after phase 1.
    pub grace: Duration,
    /// A NAR no narinfo names goes only this long after it was first found so.
    pub nar_delay: Duration,
    /// Keep only this many newest revision pins of each name (`pins/NAME@REV`).
    pub keep_revisions: Option<usize>,
    /// Keep revision pins younger than this (with `keep_revisions`: either keeps a pin).
    pub keep_days: Option<Duration>,
    /// More roots: store paths or hash parts.
    pub roots: Vec<String>,
    pub phase: Phase,
    pub dry_run: bool,
    pub jobs: usize,
    /// Where the local index of narinfos lives (none: every narinfo is read).
    pub index_dir: Option<PathBuf>,
    /// How long the lease lasts without renewal.
    pub lease: Duration,
    pub reporter: &'a dyn GcReporter,
}

/// Why paths are kept.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Roots {
    pub pins: usize,
    pub recent: usize,
    pub grace: usize,
    pub given: usize,
    /// Written after the mark of the window being swept (phase 2).
    pub since_mark: usize,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Scanned {
    pub narinfos: usize,
    pub nars: usize,
    pub list_requests: u64,
    pub narinfo_gets: u64,
    pub narinfos_reused: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Deleted {
    /// Superseded revision pins (the keep rules).
    pub pins: Vec<String>,
    /// In the order deleted: referrers first.
    pub narinfos: Vec<String>,
    pub listings: Vec<String>,
    pub logs: Vec<String>,
    pub nars: Vec<String>,
    /// Incomplete multipart uploads aborted (S3).
    pub uploads: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MissingReference {
    pub path: String,
    pub referenced_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub key: String,
    pub reason: String,
}

/// What one pin keeps.
#[derive(Debug, Clone, Serialize)]
pub struct PinUse {
    pub key: String,
    pub path: String,
    pub paths: usize,
    pub bytes: u64,
    /// Kept by this pin alone: what would go if it were deleted.
    pub only_this_paths: usize,
    pub only_this_bytes: u64,
}

/// The outcome, also printed by `--json` (see README).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub cache: String,
    pub dry_run: bool,
    /// The phases run: `[1]`, `[2]` or `[1, 2]`.
    pub phases: Vec<u8>,
    pub mark_ms: i64,
    pub scanned: Scanned,
    pub roots: Roots,
    pub reachable: usize,
    pub missing_references: Vec<MissingReference>,
    pub unreadable: Vec<Unreadable>,
    pub candidate_narinfos: usize,
    pub candidate_nars: usize,
    pub deleted: Deleted,
    pub bytes_freed: u64,
    /// NARs no narinfo names that wait for `--nar-delay`.
    pub nars_awaiting_delay: usize,
    pub pins: Vec<PinUse>,
}

/// The NARs found unreferenced, and since when (Unix ms): `gc/orphans.json`.
type Orphans = BTreeMap<String, i64>;

fn read_orphans(cache: &dyn CacheWriter) -> Result<Orphans, Error> {
    Ok(cache.get(keys::GC_ORPHANS)?.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default())
}

/// The roots and what they reach.
struct Mark {
    reachable: Vec<bool>,
    roots: Roots,
    /// Node of each pin kept, with its key.
    pins: Vec<(String, Pin, u32)>,
}

/// What phase 2 deletes, in order.
#[derive(Debug, Default)]
struct Plan {
    waves: Vec<Vec<u32>>,
    listings: Vec<String>,
    logs: Vec<String>,
    nars: Vec<u32>,
    orphans: Orphans,
    bytes: u64,
}

/// Runs the collection `opts` asks for on `cache`.
pub fn gc(cache: &dyn CacheWriter, opts: &GcOptions<'_>) -> Result<Summary, Error> {
    let mut summary = Summary { cache: cache.url().to_owned(), dry_run: opts.dry_run, ..Summary::default() };
    let mut lease = if opts.dry_run { None } else { Some(Lease::acquire(cache, millis(opts.lease).max(60_000))?) };
    let result = run(cache, opts, &mut summary, lease.as_mut());
    if let Some(lease) = lease {
        // Released after a failure too; a killed GC's lease expires or is taken over.
        let released = lease.release();
        result?;
        released?;
    } else {
        result?;
    }
    Ok(summary)
}

fn run(
    cache: &dyn CacheWriter,
    opts: &GcOptions<'_>,
    summary: &mut Summary,
    mut lease: Option<&mut Lease<'_>>,
) -> Result<(), Error> {
    let index = opts.index_dir.as_ref().map(|d| crate::scan::index_path(d, cache.url()));
    let grace = millis(opts.grace);
    if opts.phase != Phase::Two {
        summary.phases.push(1);
        let now = now_ms();
        let scan = Scan::run(cache, index.as_deref(), opts.jobs, opts.reporter)?;
        let superseded = superseded_pins(cache, &scan, opts, now)?;
        let mark = mark(cache, &scan, opts, now, None, &superseded)?;
        report_scan(summary, &scan, &mark);
        summary.mark_ms = now;
        let (narinfos, nars) = candidates(&scan, &mark, now - grace);
        summary.candidate_narinfos = narinfos.len();
        summary.candidate_nars = nars.len();
        let window = GcWindow {
            version: VERSION,
            mark_ms: now,
            not_before_ms: now + grace,
            phase: 1,
            owner: format!("{}:{}", hostname(), std::process::id()),
            narinfos: narinfos.iter().map(|i| hash_str(&scan.nodes[*i as usize].hash).to_owned()).collect(),
            nars: nars.iter().map(|i| scan.nars[*i as usize].key.to_string()).collect(),
        };
        if opts.dry_run {
            summary.deleted.pins = superseded;
            let plan = plan(&scan, &mark, &window, now, opts, &read_orphans(cache)?);
            fill_deleted(summary, &scan, &plan);
            summary.pins = pin_uses(&scan, &mark, opts, now);
            return Ok(());
        }
        for key in &superseded {
            cache.delete(key)?;
        }
        summary.deleted.pins = superseded;
        opts.reporter.stage("publishing the candidates");
        cache.put(keys::GC_PENDING, &window.to_json(), keys::JSON_TYPE)?;
        if opts.phase == Phase::One {
            return Ok(());
        }
    }
    summary.phases.push(2);
    let Some(mut window) = GcWindow::read(cache)? else {
        return Err(Error::NoWindow { cache: cache.url().to_owned() });
    };
    wait_until(window.not_before_ms, opts.reporter, &mut lease)?;
    if let Some(l) = lease.as_deref_mut() {
        l.renew()?;
    }
    window.phase = 2;
    // Its own name, so a push that saw the window of a GC that died deleting can tell this run.
    window.owner = format!("{}:{}", hostname(), std::process::id());
    cache.put(keys::GC_PENDING, &window.to_json(), keys::JSON_TYPE)?;
    let now = now_ms();
    let scan = Scan::run(cache, index.as_deref(), opts.jobs, opts.reporter)?;
    let mark = mark(cache, &scan, opts, now, Some(window.mark_ms), &[])?;
    report_scan(summary, &scan, &mark);
    summary.mark_ms = window.mark_ms;
    if summary.candidate_narinfos == 0 {
        summary.candidate_narinfos = window.narinfos.len();
        summary.candidate_nars = window.nars.len();
    }
    let plan = plan(&scan, &mark, &window, now, opts, &read_orphans(cache)?);
    sweep(cache, &scan, &plan, opts, &mut lease)?;
    fill_deleted(summary, &scan, &plan);
    summary.deleted.uploads = cache.abort_uploads(now - grace)?;
    cache.put(keys::GC_ORPHANS, &serde_json::to_vec(&plan.orphans).unwrap_or_default(), keys::JSON_TYPE)?;
    cache.delete(keys::GC_PENDING)?;
    Ok(())
}

/// Sleeps until `until_ms`, keeping the lease.
fn wait_until(until_ms: i64, reporter: &dyn GcReporter, lease: &mut Option<&mut Lease<'_>>) -> Result<(), Error> {
    let mut told = false;
    loop {
        let left = until_ms - now_ms();
        if left <= 0 {
            return Ok(());
        }
        if !told {
            reporter.waiting(until_ms);
            told = true;
        }
        if let Some(l) = lease.as_deref_mut() {
            l.keep()?;
        }
        std::thread::sleep(Duration::from_millis(u64::try_from(left.min(10_000)).unwrap_or(0)));
    }
}

fn report_scan(summary: &mut Summary, scan: &Scan, mark: &Mark) {
    summary.scanned = Scanned {
        narinfos: scan.present,
        nars: scan.nars.iter().filter(|n| n.present).count(),
        list_requests: summary.scanned.list_requests + scan.list_requests,
        narinfo_gets: summary.scanned.narinfo_gets + scan.narinfo_gets,
        narinfos_reused: summary.scanned.narinfos_reused + scan.reused,
    };
    summary.roots = mark.roots.clone();
    summary.reachable = mark.reachable.iter().zip(&scan.nodes).filter(|(r, n)| **r && n.present).count();
    summary.missing_references = scan
        .missing_refs
        .iter()
        .map(|(by, r)| MissingReference {
            path: scan.store_dir.to_string() + "/" + scan.name(*r),
            referenced_by: keys::narinfo_of_hash(scan.name(*by)),
        })
        .collect();
    summary.unreadable =
        scan.unreadable.iter().map(|(key, reason)| Unreadable { key: key.clone(), reason: reason.clone() }).collect();
}

/// The revision pins the keep rules drop.
fn superseded_pins(cache: &dyn CacheWriter, scan: &Scan, opts: &GcOptions<'_>, now: i64) -> Result<Vec<String>, Error> {
    if opts.keep_revisions.is_none() && opts.keep_days.is_none() {
        return Ok(Vec::new());
    }
    let mut by_name: BTreeMap<String, Vec<(String, Pin)>> = BTreeMap::new();
    for (key, pin) in read_pins(cache, scan)? {
        if pin.revision.is_some() && key.contains('@') {
            by_name.entry(pin.name.clone()).or_default().push((key, pin));
        }
    }
    let mut dropped = Vec::new();
    for (_, mut revs) in by_name {
        revs.sort_by(|a, b| b.1.created.cmp(&a.1.created).then_with(|| b.0.cmp(&a.0)));
        for (i, (key, pin)) in revs.into_iter().enumerate() {
            let by_count = opts.keep_revisions.is_some_and(|k| i < k.max(1));
            let by_age = opts
                .keep_days
                .is_some_and(|d| i64::try_from(pin.created).unwrap_or(0).saturating_mul(1000) > now - millis(d));
            if !by_count && !by_age {
                dropped.push(key);
            }
        }
    }
    dropped.sort();
    Ok(dropped)
}

fn read_pins(cache: &dyn CacheWriter, scan: &Scan) -> Result<Vec<(String, Pin)>, Error> {
    let mut out = Vec::new();
    for key in &scan.pins {
        let Some(bytes) = cache.get(key)? else { continue };
        let pin = Pin::parse(&String::from_utf8_lossy(&bytes), &scan.store_dir)
            .map_err(|source| narwhal_store::pin::PinsError::Invalid { key: key.clone(), source })?;
        out.push((key.clone(), pin));
    }
    Ok(out)
}

/// Marks from the roots. In phase 2 (`since_mark`), whatever was written after the mark is a root too.
fn mark(
    cache: &dyn CacheWriter,
    scan: &Scan,
    opts: &GcOptions<'_>,
    now: i64,
    since_mark: Option<i64>,
    dropped_pins: &[String],
) -> Result<Mark, Error> {
    let mut roots = Roots::default();
    let mut stack: Vec<u32> = Vec::new();
    let mut pins = Vec::new();
    for (key, pin) in read_pins(cache, scan)? {
        if dropped_pins.contains(&key) {
            continue;
        }
        let hash: Option<[u8; 32]> = pin.path.hash_part().as_bytes().try_into().ok();
        if let Some(i) = hash.and_then(|h| scan.find(&h)) {
            roots.pins += 1;
            stack.push(i);
            pins.push((key, pin, i));
        }
    }
    for given in &opts.roots {
        let text = given.trim_end_matches('/');
        let hash_text = match scan.store_dir.split_path(text) {
            Ok((path, _)) => path.hash_part().to_owned(),
            Err(_) => text.to_owned(),
        };
        let bad = || Error::Root { given: given.clone(), store_dir: scan.store_dir.to_string() };
        let hash: [u8; 32] = hash_text.as_bytes().try_into().map_err(|_| bad())?;
        // A root the cache lacks keeps nothing.
        if let Some(i) = scan.find(&hash) {
            roots.given += 1;
            stack.push(i);
        }
    }
    let (recent, young) = (now - millis(opts.keep_since), now - millis(opts.grace));
    for (i, n) in scan.nodes[..scan.present].iter().enumerate() {
        if !n.present {
            continue;
        }
        let root = if n.modified_ms > young {
            roots.grace += 1;
            true
        } else if n.modified_ms > recent {
            roots.recent += 1;
            true
        } else if since_mark.is_some_and(|m| n.modified_ms >= m) {
            roots.since_mark += 1;
            true
        } else {
            // An unreadable narinfo names no NAR or references the mark could follow: kept.
            !n.readable
        };
        if root {
            stack.push(i as u32);
        }
    }
    let mut reachable = vec![false; scan.nodes.len()];
    while let Some(i) = stack.pop() {
        let Some(seen) = reachable.get_mut(i as usize) else { continue };
        if *seen {
            continue;
        }
        *seen = true;
        stack.extend(scan.nodes[i as usize].refs.iter().filter(|r| !reachable[**r as usize]));
    }
    Ok(Mark { reachable, roots, pins })
}

/// The unreachable narinfos, and the NARs older than `old_ms` that no reachable narinfo names.
fn candidates(scan: &Scan, mark: &Mark, old_ms: i64) -> (Vec<u32>, Vec<u32>) {
    let narinfos: Vec<u32> = (0..scan.present as u32)
        .filter(|&i| {
            let n = &scan.nodes[i as usize];
            n.present && n.readable && !mark.reachable[i as usize]
        })
        .collect();
    let mut named = vec![false; scan.nars.len()];
    for (i, n) in scan.nodes[..scan.present].iter().enumerate() {
        if n.present && mark.reachable[i] && n.nar != NONE {
            named[n.nar as usize] = true;
        }
    }
    let nars = (0..scan.nars.len() as u32)
        .filter(|&i| {
            let n = &scan.nars[i as usize];
            n.present && !named[i as usize] && n.modified_ms < old_ms
        })
        .collect();
    (narinfos, nars)
}

/// What phase 2 deletes given `window`: its narinfos still unreachable and older than its mark,
/// referrers first; their listings and logs; the NARs of the window that no remaining narinfo
/// names, older than the mark, unreferenced for `--nar-delay`.
fn plan(scan: &Scan, mark: &Mark, window: &GcWindow, now: i64, opts: &GcOptions<'_>, orphans: &Orphans) -> Plan {
    let mut doomed = vec![false; scan.nodes.len()];
    let mut set = Vec::new();
    for (i, n) in scan.nodes[..scan.present].iter().enumerate() {
        if n.present
            && n.readable
            && !mark.reachable[i]
            && n.modified_ms < window.mark_ms
            && window.narinfos.contains(hash_str(&n.hash))
        {
            doomed[i] = true;
            set.push(i as u32);
        }
    }
    // Referrers first: a narinfo goes once every doomed narinfo naming it has gone.
    let mut referrers = vec![0_u32; scan.nodes.len()];
    for &i in &set {
        for &r in &*scan.nodes[i as usize].refs {
            if doomed[r as usize] {
                referrers[r as usize] += 1;
            }
        }
    }
    let mut plan = Plan::default();
    let mut wave: Vec<u32> = set.iter().copied().filter(|&i| referrers[i as usize] == 0).collect();
    let mut gone = vec![false; scan.nodes.len()];
    while !wave.is_empty() {
        let mut next = Vec::new();
        for &i in &wave {
            gone[i as usize] = true;
            for &r in &*scan.nodes[i as usize].refs {
                if doomed[r as usize] {
                    referrers[r as usize] -= 1;
                    if referrers[r as usize] == 0 {
                        next.push(r);
                    }
                }
            }
        }
        plan.waves.push(std::mem::replace(&mut wave, next));
    }
    let mut named = vec![false; scan.nars.len()];
    let mut derivers: HashSet<&str> = HashSet::new();
    for (i, n) in scan.nodes[..scan.present].iter().enumerate() {
        if n.present && !gone[i] {
            if n.nar != NONE {
                named[n.nar as usize] = true;
            }
            if let Some(d) = &n.deriver {
                derivers.insert(&**d);
            }
        }
    }
    let mut logs = BTreeSet::new();
    for i in plan.waves.iter().flatten() {
        let n = &scan.nodes[*i as usize];
        plan.bytes += n.size;
        if scan.listings.contains(&n.hash) {
            plan.listings.push(format!("{}.ls", hash_str(&n.hash)));
        }
        if let Some(d) = n.deriver.as_deref().filter(|d| !derivers.contains(d)) {
            if let Some(size) = scan.logs.get(d) {
                if logs.insert(format!("log/{d}")) {
                    plan.bytes += size;
                }
            }
        }
    }
    plan.logs = logs.into_iter().collect();
    let delay = millis(opts.nar_delay);
    for (i, nar) in scan.nars.iter().enumerate() {
        if !nar.present || named[i] {
            continue;
        }
        let since = orphans.get(&*nar.key).copied().unwrap_or(now);
        if window.nars.contains(&*nar.key) && nar.modified_ms < window.mark_ms && since.saturating_add(delay) <= now {
            plan.nars.push(i as u32);
            plan.bytes += nar.size;
        } else {
            plan.orphans.insert(nar.key.to_string(), since);
        }
    }
    plan
}

/// Deletes what `plan` says, wave by wave, in parallel within a wave.
fn sweep(
    cache: &dyn CacheWriter,
    scan: &Scan,
    plan: &Plan,
    opts: &GcOptions<'_>,
    lease: &mut Option<&mut Lease<'_>>,
) -> Result<(), Error> {
    let total =
        plan.waves.iter().map(Vec::len).sum::<usize>() + plan.listings.len() + plan.logs.len() + plan.nars.len();
    opts.reporter.stage("deleting");
    opts.reporter.deleting(total);
    let delete = |key: &String| {
        let r = cache.delete(key);
        opts.reporter.deleted_one();
        r
    };
    for wave in &plan.waves {
        if let Some(l) = lease.as_deref_mut() {
            l.keep()?;
        }
        let keys: Vec<String> = wave.iter().map(|i| keys::narinfo_of_hash(scan.name(*i))).collect();
        parallel::try_map(&keys, opts.jobs, delete)?;
    }
    parallel::try_map(&plan.listings, opts.jobs, delete)?;
    parallel::try_map(&plan.logs, opts.jobs, delete)?;
    let nars: Vec<String> = plan.nars.iter().map(|i| scan.nars[*i as usize].key.to_string()).collect();
    parallel::try_map(&nars, opts.jobs, delete)?;
    Ok(())
}

fn fill_deleted(summary: &mut Summary, scan: &Scan, plan: &Plan) {
    summary.deleted.narinfos = plan.waves.iter().flatten().map(|i| keys::narinfo_of_hash(scan.name(*i))).collect();
    summary.deleted.listings.clone_from(&plan.listings);
    summary.deleted.logs.clone_from(&plan.logs);
    summary.deleted.nars = plan.nars.iter().map(|i| scan.nars[*i as usize].key.to_string()).collect();
    summary.bytes_freed = plan.bytes;
    summary.nars_awaiting_delay = plan.orphans.len();
}

/// What each pin keeps, and what it alone keeps.
fn pin_uses(scan: &Scan, mark: &Mark, opts: &GcOptions<'_>, now: i64) -> Vec<PinUse> {
    let weight = |i: usize| {
        let n = &scan.nodes[i];
        n.size + scan.nars.get(n.nar as usize).map_or(0, |nar| nar.size)
    };
    let closure = |starts: &[u32]| {
        let mut seen = vec![false; scan.nodes.len()];
        let mut stack = starts.to_vec();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i as usize], true) {
                continue;
            }
            stack.extend(scan.nodes[i as usize].refs.iter().filter(|r| !seen[**r as usize]));
        }
        seen
    };
    // Every root but the pins, then each pin's share.
    let (recent, young) = (now - millis(opts.keep_since), now - millis(opts.grace));
    let others: Vec<u32> = (0..scan.present as u32)
        .filter(|&i| {
            let n = &scan.nodes[i as usize];
            n.present && (n.modified_ms > recent.min(young) || !n.readable)
        })
        .collect();
    let mut uses = Vec::new();
    for (k, (key, pin, node)) in mark.pins.iter().enumerate() {
        let own = closure(&[*node]);
        let mut rest: Vec<u32> = others.clone();
        rest.extend(mark.pins.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, p)| p.2));
        let without = closure(&rest);
        let (mut paths, mut bytes, mut only_paths, mut only_bytes) = (0, 0, 0, 0);
        for i in (0..scan.present).filter(|i| own[*i] && scan.nodes[*i].present) {
            paths += 1;
            bytes += weight(i);
            if !without[i] {
                only_paths += 1;
                only_bytes += weight(i);
            }
        }
        uses.push(PinUse {
            key: key.clone(),
            path: pin.store_dir.display(&pin.path).to_string(),
            paths,
            bytes,
            only_this_paths: only_paths,
            only_this_bytes: only_bytes,
        });
    }
    uses
}
