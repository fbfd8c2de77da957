//! The machine's Nix store as a binary cache, read-only (what nix-serve and
//! harmonia do): narinfos from `db.sqlite`, NARs dumped on the fly, listings
//! computed from the dump, build logs from `/nix/var/log/nix/drvs`.
//!
//! Every method blocks (SQLite, the file system); the routes call them on
//! tokio's blocking pool. Nothing here writes to the store or its database.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use narwhal_formats::hash::Encoding;
use narwhal_formats::nar;
use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::pipe;
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_localstore::{LocalError, LocalStore, PathInfo};

use crate::backend::CHUNK;

/// Where Nix keeps build logs.
pub const DEFAULT_LOG_DIR: &str = "/nix/var/log/nix/drvs";

pub struct Local {
    store: Mutex<LocalStore>,
    store_dir: StoreDir,
    log_dir: PathBuf,
}

impl Local {
    pub fn open(db: &Path, store_dir: StoreDir, real_dir: PathBuf, log_dir: PathBuf) -> Result<Self, LocalError> {
        let store = LocalStore::open(db, store_dir.clone(), real_dir)?;
        Ok(Self { store: Mutex::new(store), store_dir, log_dir })
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    fn info(&self, hash: &str) -> Result<Option<(PathInfo, PathBuf)>, LocalError> {
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(path) = store.path_from_hash_part(hash)? else { return Ok(None) };
        let real = store.real_path(&path);
        Ok(store.path_info(&path)?.map(|info| (info, real)))
    }

    /// The narinfo of the path whose hash part is `hash`, unsigned by the server.
    pub fn narinfo(&self, hash: &str) -> Result<Option<NarInfo>, LocalError> {
        let Some((info, _)) = self.info(hash)? else { return Ok(None) };
        let url = format!("nar/{hash}-{}.nar", info.nar_hash.encode(Encoding::Nix32));
        let mut ni = NarInfo::new(self.store_dir.clone(), info.path, url, info.nar_hash, info.nar_size);
        ni.references = Some(info.references);
        ni.deriver = info.deriver;
        ni.sigs = info.sigs;
        ni.ca = info.ca;
        Ok(Some(ni))
    }

    /// Where the files of `hash` are and its NAR size, when `nar_hash` (nix32,
    /// from a `nar/<hash>-<narhash>.nar` URL) is absent or still current.
    pub fn nar(&self, hash: &str, nar_hash: Option<&str>) -> Result<Option<(StorePath, PathBuf, u64)>, LocalError> {
        let Some((info, real)) = self.info(hash)? else { return Ok(None) };
        if nar_hash.is_some_and(|h| h != info.nar_hash.encode(Encoding::Nix32)) {
            return Ok(None);
        }
        Ok(Some((info.path, real, info.nar_size)))
    }

    /// The `.ls` document of `hash`.
    pub fn listing(&self, hash: &str) -> Result<Option<Vec<u8>>, io::Error> {
        let Some((_, real, _)) = self.nar(hash, None).map_err(io::Error::other)? else { return Ok(None) };
        let (mut reader, writer) = io::pipe()?;
        let dumper = std::thread::spawn(move || nar::dump(&real, writer).map_err(io::Error::other));
        let listing = nar::Listing::read(&mut reader).map_err(io::Error::other);
        drop(reader);
        let dumped = dumper.join().map_err(|_| io::Error::other("the NAR dump panicked"))?;
        dumped?;
        Ok(Some(listing?.to_json()))
    }

    /// The build log of the derivation `drv` (a store path base name), decompressed.
    pub fn log(&self, drv: &StorePath) -> Option<Box<dyn Read + Send>> {
        let base = drv.base_name();
        let dir = self.log_dir.join(&base[..2]);
        if let Ok(f) = std::fs::File::open(dir.join(format!("{}.bz2", &base[2..]))) {
            return narwhal_store::Compression::Bzip2.decoder(f).ok();
        }
        std::fs::File::open(dir.join(&base[2..])).ok().map(|f| Box::new(f) as Box<dyn Read + Send>)
    }
}

/// A feed ([`narwhal_formats::pipe`]) of [`CHUNK`]s into a response body's
/// channel, from a thread of the blocking pool: each chunk goes out without a
/// copy and its buffer comes back once hyper has sent it. A closed channel
/// (the client left) makes writes fail.
pub fn body_feed(tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>) -> pipe::Feed {
    pipe::to(CHUNK, move |chunk| tx.blocking_send(Ok(Bytes::from_owner(chunk))).is_ok())
}
