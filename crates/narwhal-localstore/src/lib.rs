//! The machine's Nix store, read-only and without the daemon: its own crate, so the deploy path
//! (fetch) never compiles SQLite.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use narwhal_formats::hash::Hash;
use narwhal_formats::store_path::{references_first, StoreDir, StorePath};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use thiserror::Error;

/// Why the local Nix store could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LocalError {
    #[error("cannot open the Nix database {path} read-only")]
    OpenDb {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot query the Nix database {path}")]
    Query {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0} is not a valid path in the local Nix store")]
    NotValid(String),
    #[error("the Nix database's references")]
    Cycle(#[from] narwhal_formats::store_path::Cycle),
    #[error("the Nix database has an invalid {what} for {path}: {value:?}")]
    Corrupt { path: String, what: &'static str, value: String },
}

impl LocalError {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::OpenDb { .. } => {
                Some("is Nix installed here? narwhal reads /nix/var/nix/db/db.sqlite; pass --store-db for another")
            }
            Self::NotValid(_) => Some("build or substitute the path first (nix-build, nix copy --from)"),
            _ => None,
        }
    }
}

type Error = LocalError;

/// Where Nix keeps its database.
pub const DEFAULT_DB: &str = "/nix/var/nix/db/db.sqlite";

/// What the store knows about one valid path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub path: StorePath,
    pub nar_hash: Hash,
    pub nar_size: u64,
    /// Sorted.
    pub references: Vec<StorePath>,
    pub deriver: Option<StorePath>,
    pub sigs: Vec<String>,
    pub ca: Option<String>,
}

pub struct LocalStore {
    store_dir: StoreDir,
    /// Where the store's files are read from (the store dir itself, unless the store is elsewhere).
    real_dir: PathBuf,
    db_path: PathBuf,
    db: Connection,
}

impl LocalStore {
    /// Opens `db` read-only; files are read from `real_dir`.
    pub fn open(db: &Path, store_dir: StoreDir, real_dir: PathBuf) -> Result<Self, Error> {
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|source| Error::OpenDb { path: db.to_owned(), source })?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|source| Error::OpenDb { path: db.to_owned(), source })?;
        Ok(Self { store_dir, real_dir, db_path: db.to_owned(), db: conn })
    }

    /// The default store: `/nix/store`, its database in `/nix/var/nix/db`.
    pub fn open_default() -> Result<Self, Error> {
        Self::open(Path::new(DEFAULT_DB), StoreDir::default(), PathBuf::from("/nix/store"))
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    /// Where the files of `path` are.
    pub fn real_path(&self, path: &StorePath) -> PathBuf {
        self.real_dir.join(path.base_name())
    }

    fn query_err(&self, source: rusqlite::Error) -> Error {
        Error::Query { path: self.db_path.clone(), source }
    }

    /// The metadata of `path`, or `None` if it is not valid.
    pub fn path_info(&self, path: &StorePath) -> Result<Option<PathInfo>, Error> {
        let full = self.store_dir.display(path).to_string();
        let row = self
            .db
            .query_row("SELECT id, hash, narSize, deriver, sigs, ca FROM ValidPaths WHERE path = ?1", [&full], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .optional()
            .map_err(|e| self.query_err(e))?;
        let Some((id, hash, nar_size, deriver, sigs, ca)) = row else { return Ok(None) };
        let corrupt = |what: &'static str, value: String| Error::Corrupt { path: full.clone(), what, value };
        let nar_hash = Hash::parse_prefixed(&hash).map_err(|_| corrupt("hash", hash.clone()))?;
        let nar_size =
            nar_size.and_then(|n| u64::try_from(n).ok()).ok_or_else(|| corrupt("narSize", format!("{nar_size:?}")))?;
        let deriver = match deriver.filter(|d| !d.is_empty()) {
            Some(d) => Some(self.store_dir.parse_path(&d).map_err(|_| corrupt("deriver", d.clone()))?),
            None => None,
        };
        let mut stmt = self
            .db
            .prepare_cached("SELECT v.path FROM Refs r JOIN ValidPaths v ON r.reference = v.id WHERE r.referrer = ?1")
            .map_err(|e| self.query_err(e))?;
        let refs: Vec<String> = stmt
            .query_map([id], |r| r.get::<_, String>(0))
            .map_err(|e| self.query_err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.query_err(e))?;
        let mut references = refs
            .into_iter()
            .map(|r| self.store_dir.parse_path(&r).map_err(|_| corrupt("reference", r.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        references.sort();
        let sigs = sigs.map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
        Ok(Some(PathInfo {
            path: path.clone(),
            nar_hash,
            nar_size,
            references,
            deriver,
            sigs,
            ca: ca.filter(|c| !c.is_empty()),
        }))
    }

    /// The valid path whose hash part is `hash` (Nix's `queryPathFromHashPart`).
    pub fn path_from_hash_part(&self, hash: &str) -> Result<Option<StorePath>, Error> {
        let prefix = format!("{}/{hash}", self.store_dir.as_str());
        let mut stmt = self
            .db
            .prepare_cached("SELECT path FROM ValidPaths WHERE path >= ?1 ORDER BY path LIMIT 1")
            .map_err(|e| self.query_err(e))?;
        let found: Option<String> =
            stmt.query_row([&prefix], |r| r.get(0)).optional().map_err(|e| self.query_err(e))?;
        Ok(found
            .filter(|p| p.strip_prefix(&prefix).is_some_and(|rest| rest.starts_with('-')))
            .and_then(|p| self.store_dir.parse_path(&p).ok()))
    }

    /// The closure of `roots`, references first.
    pub fn closure(&self, roots: &[StorePath]) -> Result<Vec<PathInfo>, Error> {
        let mut infos: BTreeMap<StorePath, PathInfo> = BTreeMap::new();
        let mut todo: Vec<StorePath> = roots.to_vec();
        while let Some(p) = todo.pop() {
            if infos.contains_key(&p) {
                continue;
            }
            let info = self.path_info(&p)?.ok_or_else(|| Error::NotValid(self.store_dir.display(&p).to_string()))?;
            todo.extend(info.references.iter().filter(|r| !infos.contains_key(*r)).cloned());
            infos.insert(p, info);
        }
        Ok(references_first(infos, |i| &i.references)?)
    }
}
