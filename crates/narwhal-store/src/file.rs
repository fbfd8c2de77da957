//! A cache in a local directory (`file:///dir` or `/dir`).

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::error::{StoreError, StoreErrorKind};
use crate::lock::{DirLock, LOCK_FILE};
use crate::{check_key, BinaryCache, CacheWriter};

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

    /// A temporary name in the same directory as `path`, so the rename is atomic.
    fn temp_for(&self, key: &str, path: &std::path::Path) -> Result<std::path::PathBuf, StoreError> {
        narwhal_formats::temp::sibling(path).ok_or_else(|| self.err(key, StoreErrorKind::InvalidKey))
    }
}

impl CacheWriter for FileCache {
    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        check_key(key).map_err(|_| self.err(key, StoreErrorKind::InvalidKey))?;
        Ok(self.root.join(key).exists())
    }

    fn put(&self, key: &str, data: &[u8], _content_type: &str) -> Result<(), StoreError> {
        use std::io::Write as _;
        let path = self.target(key)?;
        let tmp = self.temp_for(key, &path)?;
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io(key, e)
        })
    }

    fn put_file(&self, key: &str, file: &std::path::Path, _content_type: &str) -> Result<(), StoreError> {
        let path = self.target(key)?;
        let tmp = self.temp_for(key, &path)?;
        let copied = (|| {
            // On the same file system (a push's temporary files live in the cache), a link, not a copy.
            if std::fs::hard_link(file, &tmp).is_err() {
                std::fs::copy(file, &tmp)?;
            }
            File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        copied.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io(key, e)
        })
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
}
