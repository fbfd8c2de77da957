//! A cache in a local directory (`file:///dir` or `/dir`).

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::error::{StoreError, StoreErrorKind};
use crate::{check_key, BinaryCache};

pub struct FileCache {
    root: PathBuf,
    url: String,
}

impl FileCache {
    pub fn new(root: PathBuf, url: String) -> Self {
        Self { root, url }
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
