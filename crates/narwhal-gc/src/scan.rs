//! The mark's input: one listing of the cache (sizes, modification times, ETags from the listing
//! itself, no request per object), the narinfos read in parallel, and the local index that lets a
//! later run skip every narinfo whose ETag has not changed.
//!
//! Memory: the graph holds, per narinfo, its hash part (32 bytes), its references as indices
//! (4 bytes each), its NAR as an index into the table of NARs, its Deriver and a few numbers; per
//! NAR its key and two numbers. The nodes are made from the listing; each narinfo then fills its
//! own node as it is read (an index line, or a narinfo fetched in batches of [`READ_BATCH`]), and
//! its parsed form is dropped, so nothing else is held per path. The index file is read and
//! written as a stream in hash order, never held whole.
//!
//! Index file (`gc-v1/<cache>.tsv`), one line per narinfo, sorted by hash part:
//! `hash \t etag-fingerprint(hex) \t URL \t FileSize \t NarSize \t Deriver or - \t refs (comma-separated hash parts) or -`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{Hash as _, Hasher as _};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::store_path::StoreDir;
use narwhal_store::{keys, parallel, CacheWriter, Listed};

use crate::error::Error;
use crate::GcReporter;

/// Narinfos read (and held parsed) at a time.
const READ_BATCH: usize = 4096;

/// No NAR (an unreadable narinfo), or no node.
pub const NONE: u32 = u32::MAX;

/// A hash part, as the ASCII of its 32 nix32 characters.
pub type HashPart = [u8; 32];

/// One narinfo of the cache, or (`present` false) a path that a narinfo references but the cache
/// lacks.
#[derive(Debug)]
pub struct Node {
    pub hash: HashPart,
    pub present: bool,
    /// Parsed: its references and NAR are known. An unreadable narinfo is kept and reported.
    pub readable: bool,
    pub etag_fp: u64,
    pub modified_ms: i64,
    /// Size of the narinfo object.
    pub size: u64,
    /// Index into [`Scan::nars`], or [`NONE`].
    pub nar: u32,
    pub file_size: u64,
    pub nar_size: u64,
    /// The Deriver's base name (`<hash>-<name>.drv`), which names its log.
    pub deriver: Option<Box<str>>,
    pub refs: Box<[u32]>,
}

impl Node {
    /// A listed narinfo, not yet read.
    fn listed(l: ListedNarinfo) -> Self {
        Self {
            hash: l.hash,
            present: true,
            readable: false,
            etag_fp: l.etag_fp,
            modified_ms: l.modified_ms,
            size: l.size,
            nar: NONE,
            file_size: 0,
            nar_size: 0,
            deriver: None,
            refs: Box::new([]),
        }
    }
}

/// A NAR the listing showed (`present`), or one a narinfo names that the cache lacks.
#[derive(Debug)]
pub struct Nar {
    pub key: Box<str>,
    pub present: bool,
    pub size: u64,
    pub modified_ms: i64,
}

/// What one listing and the narinfos say.
#[derive(Debug, Default)]
pub struct Scan {
    pub store_dir: StoreDir,
    /// Sorted by hash; the present ones first, then the missing references.
    pub nodes: Vec<Node>,
    /// How many of `nodes` are present (the rest are missing references).
    pub present: usize,
    /// Sorted by key up to `listed_nars`; NARs named but missing after.
    pub nars: Vec<Nar>,
    listed_nars: usize,
    missing_nars: HashMap<Box<str>, u32>,
    /// Hash parts that have a `<hash>.ls` listing.
    pub listings: HashSet<HashPart>,
    /// Log base names (`log/<name>`) and their sizes.
    pub logs: HashMap<Box<str>, u64>,
    /// `pins/…` keys.
    pub pins: Vec<String>,
    /// `(referrer, missing reference)` node indices.
    pub missing_refs: Vec<(u32, u32)>,
    /// Narinfos that do not parse: key and why.
    pub unreadable: Vec<(String, String)>,
    pub list_requests: u64,
    pub narinfo_gets: u64,
    pub reused: u64,
}

/// The parts of a narinfo the mark needs.
struct Parsed {
    url: String,
    file_size: u64,
    nar_size: u64,
    deriver: Option<String>,
    refs: Vec<HashPart>,
}

fn hash_part(s: &str) -> Option<HashPart> {
    let bytes: HashPart = s.as_bytes().try_into().ok()?;
    bytes.iter().all(|b| narwhal_formats::nixbase32::ALPHABET.contains(b)).then_some(bytes)
}

/// The hash part as text.
pub fn hash_str(h: &HashPart) -> &str {
    std::str::from_utf8(h).unwrap_or("")
}

fn etag_fingerprint(l: &Listed) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    l.etag.hash(&mut h);
    l.size.hash(&mut h);
    h.finish()
}

/// The store directory the cache's `nix-cache-info` names (`/nix/store` without one).
pub fn store_dir(cache: &dyn CacheWriter) -> Result<StoreDir, Error> {
    match cache.get(keys::CACHE_INFO)? {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            narwhal_formats::cache_info::CacheInfo::parse(&text)
                .map(|i| i.store_dir)
                .map_err(|source| Error::CacheInfo { cache: cache.url().to_owned(), source })
        }
        None => Ok(StoreDir::default()),
    }
}

/// Where the index of `cache` lives under `dir`.
pub fn index_path(dir: &Path, cache_url: &str) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cache_url.hash(&mut h);
    let readable: String =
        cache_url.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(60).collect();
    dir.join("gc-v1").join(format!("{readable}-{:016x}.tsv", h.finish()))
}

/// One index line, parsed.
struct IndexLine {
    hash: HashPart,
    etag_fp: u64,
    parsed: Parsed,
}

fn parse_index_line(line: &str) -> Option<IndexLine> {
    let mut f = line.split('\t');
    let hash = hash_part(f.next()?)?;
    let etag_fp = u64::from_str_radix(f.next()?, 16).ok()?;
    let url = f.next()?.to_owned();
    narwhal_store::check_key(&url).ok()?;
    let file_size = f.next()?.parse().ok()?;
    let nar_size = f.next()?.parse().ok()?;
    let deriver = match f.next()? {
        "-" => None,
        d => Some(d.to_owned()),
    };
    let refs = match f.next()? {
        "-" => Vec::new(),
        r => r.split(',').map(hash_part).collect::<Option<Vec<_>>>()?,
    };
    Some(IndexLine { hash, etag_fp, parsed: Parsed { url, file_size, nar_size, deriver, refs } })
}

/// Reads index lines in hash order, skipping any that do not parse (the index is only a cache).
struct IndexReader {
    lines: Option<io::Lines<BufReader<File>>>,
    next: Option<IndexLine>,
}

impl IndexReader {
    fn open(path: Option<&Path>) -> Self {
        let lines = path.and_then(|p| File::open(p).ok()).map(|f| BufReader::with_capacity(1 << 16, f).lines());
        let mut r = Self { lines, next: None };
        r.advance();
        r
    }

    fn advance(&mut self) {
        self.next = None;
        let Some(lines) = &mut self.lines else { return };
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(l) = parse_index_line(&line) {
                self.next = Some(l);
                return;
            }
        }
    }

    /// The line for `hash`, when the index has one (lines before it are passed over).
    fn find(&mut self, hash: &HashPart) -> Option<IndexLine> {
        while self.next.as_ref().is_some_and(|l| l.hash < *hash) {
            self.advance();
        }
        if self.next.as_ref().is_some_and(|l| l.hash == *hash) {
            let found = self.next.take();
            self.advance();
            return found;
        }
        None
    }
}

/// A narinfo listed: hash, fingerprint of its ETag, size, modification time.
#[derive(Clone, Copy)]
struct ListedNarinfo {
    hash: HashPart,
    etag_fp: u64,
    size: u64,
    modified_ms: i64,
}

impl Scan {
    /// Lists `cache` and reads what the mark needs; with `index`, reads only narinfos that are not
    /// in it with the same ETag, and writes it back.
    pub fn run(
        cache: &dyn CacheWriter,
        index: Option<&Path>,
        jobs: usize,
        reporter: &dyn GcReporter,
    ) -> Result<Self, Error> {
        let mut scan = Self { store_dir: store_dir(cache)?, ..Self::default() };
        let mut narinfos: Vec<ListedNarinfo> = Vec::new();
        let mut listed = 0_u64;
        reporter.stage("listing the cache");
        let requests = cache.list_objects("", &mut |o| {
            listed += 1;
            if listed.is_multiple_of(10_000) {
                reporter.listed(listed);
            }
            scan.classify(o, &mut narinfos);
        })?;
        scan.list_requests = requests;
        reporter.listed(listed);
        narinfos.sort_unstable_by_key(|a| a.hash);
        narinfos.dedup_by(|a, b| a.hash == b.hash);
        scan.nars.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        scan.nars.shrink_to_fit();
        scan.listed_nars = scan.nars.len();
        // The graph's nodes straight from the listing; each narinfo then fills its own node as it
        // is read (from the index or the cache), so nothing else is kept per path.
        scan.nodes = narinfos.into_iter().map(Node::listed).collect();
        scan.present = scan.nodes.len();
        let mut missing: HashMap<HashPart, u32> = HashMap::new();

        // The narinfos the index knows unchanged fill their nodes; the others are read.
        let mut reader = IndexReader::open(index);
        let mut to_read: Vec<u32> = Vec::new();
        for i in 0..scan.present {
            match reader.find(&scan.nodes[i].hash) {
                Some(line) if line.etag_fp == scan.nodes[i].etag_fp => scan.fill(i, Ok(line.parsed), &mut missing),
                _ => to_read.push(i as u32),
            }
        }
        drop(reader);
        scan.reused = (scan.present - to_read.len()) as u64;

        reporter.stage("reading narinfos");
        reporter.reading(to_read.len());
        let gets = AtomicU64::new(0);
        let store_dir = scan.store_dir.clone();
        // In batches, so only one batch of parsed narinfos is held at a time.
        for batch in to_read.chunks(READ_BATCH) {
            let nodes = &scan.nodes;
            let read = parallel::try_map(batch, jobs, |&i| {
                let Some(n) = nodes.get(i as usize) else { return Ok(Err("not listed".to_owned())) };
                let key = keys::narinfo_of_hash(hash_str(&n.hash));
                gets.fetch_add(1, Ordering::Relaxed);
                let got = cache.get(&key);
                reporter.read_one();
                match got? {
                    // Deleted since the listing: taken as absent.
                    None => Ok(Err(String::new())),
                    Some(bytes) => Ok(parse_narinfo(&bytes, &store_dir)),
                }
            })
            .map_err(Error::Store)?;
            for (&i, parsed) in batch.iter().zip(read) {
                scan.fill(i as usize, parsed, &mut missing);
            }
        }
        scan.narinfo_gets = gets.into_inner();
        drop(to_read);
        scan.add_missing(missing);
        if let Some(path) = index {
            scan.save_index(path).map_err(|source| Error::Index { path: path.to_owned(), source })?;
        }
        Ok(scan)
    }

    fn classify(&mut self, o: Listed, narinfos: &mut Vec<ListedNarinfo>) {
        let key = o.key.as_str();
        if let Some(h) = key.strip_suffix(".narinfo").and_then(hash_part) {
            narinfos.push(ListedNarinfo {
                hash: h,
                etag_fp: etag_fingerprint(&o),
                size: o.size,
                modified_ms: o.modified_ms,
            });
        } else if key.starts_with("nar/") {
            self.nars.push(Nar {
                key: o.key.into_boxed_str(),
                present: true,
                size: o.size,
                modified_ms: o.modified_ms,
            });
        } else if let Some(h) = key.strip_suffix(".ls").and_then(hash_part) {
            self.listings.insert(h);
        } else if let Some(name) = key.strip_prefix("log/") {
            self.logs.insert(name.into(), o.size);
        } else if key.starts_with(narwhal_store::pin::PREFIX) {
            self.pins.push(o.key);
        }
    }

    /// The NAR index of `key`, adding it as missing when the listing lacks it.
    fn nar_index(&mut self, key: &str) -> u32 {
        if let Ok(i) = self.nars[..self.listed_nars].binary_search_by(|n| (*n.key).cmp(key)) {
            return i as u32;
        }
        if let Some(i) = self.missing_nars.get(key) {
            return *i;
        }
        let i = self.nars.len() as u32;
        self.nars.push(Nar { key: key.into(), present: false, size: 0, modified_ms: 0 });
        self.missing_nars.insert(key.into(), i);
        i
    }

    /// Fills node `i` from its narinfo: its NAR and references as indices (a reference the
    /// listing lacks gets a node in `missing`); an empty `Err` means the narinfo is gone.
    fn fill(&mut self, i: usize, parsed: Result<Parsed, String>, missing: &mut HashMap<HashPart, u32>) {
        let Some(hash) = self.nodes.get(i).map(|n| n.hash) else { return };
        match parsed {
            Ok(p) => {
                let nar = self.nar_index(&p.url);
                let mut refs = Vec::with_capacity(p.refs.len());
                for r in p.refs {
                    if r == hash {
                        continue;
                    }
                    if let Some(j) = self.find(&r) {
                        refs.push(j);
                    } else {
                        let next = (self.present + missing.len()) as u32;
                        let j = *missing.entry(r).or_insert(next);
                        refs.push(j);
                        self.missing_refs.push((i as u32, j));
                    }
                }
                let node = &mut self.nodes[i];
                node.readable = true;
                node.nar = nar;
                node.file_size = p.file_size;
                node.nar_size = p.nar_size;
                // Copied here, on the thread that keeps it, not where the narinfo was parsed.
                node.deriver = p.deriver.as_deref().map(Box::from);
                node.refs = refs.into_boxed_slice();
            }
            Err(why) if why.is_empty() => self.nodes[i].present = false,
            Err(why) => self.unreadable.push((keys::narinfo_of_hash(hash_str(&hash)), why)),
        }
    }

    /// Appends the nodes of the references the listing lacks, in the order they were numbered,
    /// and orders the missing references by referrer and hash whichever way the narinfos came.
    fn add_missing(&mut self, missing: HashMap<HashPart, u32>) {
        let mut phantoms: Vec<(u32, HashPart)> = missing.into_iter().map(|(h, i)| (i, h)).collect();
        phantoms.sort_unstable();
        self.nodes.reserve_exact(phantoms.len());
        for (_, hash) in phantoms {
            self.nodes.push(Node {
                present: false,
                ..Node::listed(ListedNarinfo { hash, etag_fp: 0, size: 0, modified_ms: 0 })
            });
        }
        let mut by_hash = std::mem::take(&mut self.missing_refs);
        by_hash.sort_unstable_by(|a, b| (a.0, self.name(a.1)).cmp(&(b.0, self.name(b.1))));
        self.missing_refs = by_hash;
    }

    /// The node of the narinfo `hash` (present or not).
    pub fn find(&self, hash: &HashPart) -> Option<u32> {
        self.nodes[..self.present].binary_search_by(|n| n.hash.cmp(hash)).ok().map(|i| i as u32)
    }

    /// The store path text of node `i` (its hash part; the name is not kept).
    pub fn name(&self, i: u32) -> &str {
        self.nodes.get(i as usize).map_or("", |n| hash_str(&n.hash))
    }

    fn save_index(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // A temporary file beside the index (narwhal_formats::temp), removed on drop unless persisted.
        let tmp = narwhal_formats::temp::file_for(path)?;
        let mut w = BufWriter::with_capacity(1 << 16, tmp.as_file().try_clone()?);
        for n in self.nodes[..self.present].iter().filter(|n| n.readable && n.present) {
            let url = self.nars.get(n.nar as usize).map_or("", |n| &*n.key);
            write!(w, "{}\t{:x}\t{url}\t{}\t{}\t", hash_str(&n.hash), n.etag_fp, n.file_size, n.nar_size)?;
            w.write_all(n.deriver.as_deref().unwrap_or("-").as_bytes())?;
            w.write_all(b"\t")?;
            if n.refs.is_empty() {
                w.write_all(b"-")?;
            } else {
                let mut refs: Vec<&str> = n.refs.iter().map(|r| self.name(*r)).collect();
                refs.sort_unstable();
                w.write_all(refs.join(",").as_bytes())?;
            }
            w.write_all(b"\n")?;
        }
        w.into_inner().map_err(io::IntoInnerError::into_error)?.sync_all()?;
        tmp.persist(path).map(drop).map_err(|e| e.error)
    }
}

/// What the mark needs of a narinfo; `Err(why)` when it does not parse.
fn parse_narinfo(bytes: &[u8], store_dir: &StoreDir) -> Result<Parsed, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let info = NarInfo::parse(text, store_dir).map_err(|e| e.to_string())?;
    narwhal_store::check_key(&info.url).map_err(|e| e.kind.to_string())?;
    if info.url.contains('\t') || info.url.contains('\n') {
        return Err("URL holds a tab or newline".to_owned());
    }
    let refs = info.references().iter().filter_map(|r| hash_part(r.hash_part())).collect();
    Ok(Parsed {
        url: info.url.clone(),
        file_size: info.file_size.unwrap_or(0),
        nar_size: info.nar_size,
        deriver: info.deriver.as_ref().map(|d| d.base_name().to_owned()),
        refs,
    })
}
