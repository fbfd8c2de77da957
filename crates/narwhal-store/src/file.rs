//! A cache in a local directory (`file:///dir` or `/dir`).

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::error::{StoreError, StoreErrorKind};
use crate::lock::{DirLock, LOCK_FILE};
use crate::{check_key, BinaryCache, CacheWriter, Listed};

/// The lock file that serialises conditional writes ([`CacheWriter::replace_if`]) in a directory.
const CONDITIONAL_LOCK_FILE: &str = ".narwhal-lock-conditional";
/// How long a conditional write waits for another one (which takes a listing and a rename).
const CONDITIONAL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct FileCache {
    root: PathBuf,
    url: String,
    /// Held while writing: shared with the cache's other writers.
    _lock: Option<DirLock>,
}

impl FileCache {
    /// The cache for reading.
    pub fn new(root: PathBuf, url: String) -> Self {
        Self { root, url, _lock: None }
    }

    /// The cache for writing: creates the directory and shares its lock
    /// ([`crate::lock::LOCK_FILE`]) with the other writers; when there are
    /// none, first removes what killed writers left (temporary names in the
    /// cache and in its directories, `nar/`, `pins/`, …).
    /// `wait` bounds the wait for a writer that has the directory alone.
    pub fn writer(root: PathBuf, url: String, what: &str, wait: std::time::Duration) -> Result<Self, StoreError> {
        let lock_err = |e| StoreError::new(url.clone(), StoreErrorKind::Lock(e));
        let err = |e: io::Error| StoreError::new(url.clone(), StoreErrorKind::Io(e));
        std::fs::create_dir_all(&root).map_err(err)?;
        let mut dirs = vec![root.clone()];
        for entry in std::fs::read_dir(&root).map_err(err)?.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !entry.file_name().as_encoded_bytes().starts_with(b".") {
                dirs.push(entry.path());
            }
        }
        let dirs: Vec<&std::path::Path> = dirs.iter().map(PathBuf::as_path).collect();
        let lock = DirLock::shared(&root, LOCK_FILE, &dirs, wait, what, &|_| {}).map_err(lock_err)?;
        Ok(Self { root, url, _lock: Some(lock) })
    }

    fn err(&self, key: &str, kind: StoreErrorKind) -> StoreError {
        StoreError::new(format!("{}/{key}", self.url), kind)
    }

    fn io(&self, key: &str, e: io::Error) -> StoreError {
        if e.kind() == io::ErrorKind::NotFound {
            self.err(key, StoreErrorKind::NotFound)
        } else {
            self.err(key, StoreErrorKind::Io(e))
        }
    }
}

impl BinaryCache for FileCache {
    fn url(&self) -> &str {
        &self.url
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key).map_err(|_| self.err(key, StoreErrorKind::InvalidKey))?;
        match std::fs::read(self.root.join(key)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(key, e)),
        }
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        check_key(key).map_err(|_| self.err(key, StoreErrorKind::InvalidKey))?;
        let f = File::open(self.root.join(key)).map_err(|e| self.io(key, e))?;
        Ok(Box::new(f))
    }
}

impl FileCache {
    fn target(&self, key: &str) -> Result<std::path::PathBuf, StoreError> {
        check_key(key).map_err(|_| self.err(key, StoreErrorKind::InvalidKey))?;
        let path = self.root.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io(key, e))?;
        }
        Ok(path)
    }
}

impl CacheWriter for FileCache {
    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        check_key(key).map_err(|_| self.err(key, StoreErrorKind::InvalidKey))?;
        Ok(self.root.join(key).exists())
    }

    fn put(&self, key: &str, data: &[u8], _content_type: &str) -> Result<(), StoreError> {
        let path = self.target(key)?;
        narwhal_formats::temp::write_atomic(&path, data, 0o666, true).map_err(|e| self.io(key, e))
    }

    fn put_file(&self, key: &str, file: &std::path::Path, _content_type: &str) -> Result<(), StoreError> {
        let path = self.target(key)?;
        let dir = path.parent().unwrap_or(self.root.as_path());
        let copied =
            (|| {
                // On the same file system (a push's temporary files live in the cache), a link, not a copy.
                let tmp = narwhal_formats::temp::make_in(dir, path.file_name().unwrap_or_default(), |tmp| {
                    match std::fs::hard_link(file, tmp) {
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => copy_new(file, tmp),
                        linked => linked,
                    }
                })?
                .into_temp_path();
                File::open(&tmp)?.sync_all()?;
                tmp.persist(&path).map_err(|e| e.error)
            })();
        copied.map_err(|e| self.io(key, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dir = prefix.trim_end_matches('/');
        check_key(dir).map_err(|_| self.err(prefix, StoreErrorKind::InvalidKey))?;
        let entries = match std::fs::read_dir(self.root.join(dir)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(prefix, e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io(prefix, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Temporary files of writes in progress start with '.'.
            if !name.starts_with('.') && entry.file_type().is_ok_and(|t| t.is_file()) {
                keys.push(format!("{dir}/{name}"));
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key).map_err(|_| self.err(key, StoreErrorKind::InvalidKey))?;
        match std::fs::remove_file(self.root.join(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(key, e)),
        }
    }

    fn list_objects(&self, prefix: &str, each: &mut dyn FnMut(Listed)) -> Result<u64, StoreError> {
        use std::os::unix::fs::MetadataExt as _;
        let mut requests = 0;
        // An explicit stack of directories (key prefix, path): no recursion.
        let mut todo = vec![(String::new(), self.root.clone())];
        while let Some((base, dir)) = todo.pop() {
            requests += 1;
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(&base, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io(&base, e))?;
                let Ok(name) = entry.file_name().into_string() else { continue };
                // Temporary names and the lock file start with '.'.
                if name.starts_with('.') {
                    continue;
                }
                let key = format!("{base}{name}");
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    let sub = format!("{key}/");
                    if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                        todo.push((sub, entry.path()));
                    }
                } else if meta.is_file() && key.starts_with(prefix) {
                    let modified_ms = meta.mtime().saturating_mul(1000) + meta.mtime_nsec() / 1_000_000;
                    let etag = format!("{}-{}.{}-{}", meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino());
                    each(Listed { key, size: meta.len(), modified_ms, etag });
                }
            }
        }
        Ok(requests)
    }

    fn put_new(&self, key: &str, data: &[u8], _content_type: &str) -> Result<bool, StoreError> {
        let path = self.target(key)?;
        // Without overwriting, the rename into place fails when the name exists, also when it
        // appeared meanwhile: the atomic create-if-absent of a directory.
        match narwhal_formats::temp::write_atomic(&path, data, 0o666, false) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.io(key, e)),
        }
    }

    fn replace_if(&self, key: &str, data: &[u8], content_type: &str, etag: &str) -> Result<bool, StoreError> {
        // The check and the write under one exclusive lock of their own (not the writers' shared
        // one), so two conditional writers with the same ETag cannot both pass the check.
        let lock_err = |e| self.err(key, StoreErrorKind::Lock(e));
        let _held = DirLock::exclusive(
            &self.root,
            CONDITIONAL_LOCK_FILE,
            &[],
            CONDITIONAL_WAIT,
            "a conditional write",
            &|_| {},
        )
        .map_err(lock_err)?;
        let mut current = None;
        self.list_objects(key, &mut |o| {
            if o.key == key {
                current = Some(o.etag);
            }
        })?;
        if current.as_deref() != Some(etag) {
            return Ok(false);
        }
        self.put(key, data, content_type).map(|()| true)
    }
}

/// Copies `from` to the new file `to` (never an existing one); nothing is left at `to` on error.
fn copy_new(from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(to)?;
    io::copy(&mut source, &mut out).map(drop).inspect_err(|_| {
        let _ = std::fs::remove_file(to);
    })
}
