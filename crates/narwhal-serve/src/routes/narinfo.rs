//! `/<hash>.narinfo`: served signed by the server's keys; stored only under
//! the commit rule (its NAR there and matching, its references there). A
//! committed narinfo is never changed, except to add signatures: another one
//! for the same path is refused (409), the same one again is a no-op.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use narwhal_formats::narinfo::{Mismatch, NarInfo};
use narwhal_formats::signature::Signature;
use narwhal_formats::store_path::StoreDir;
use narwhal_store::nar_check::{self, MeasureError};
use narwhal_store::{check_key, CacheWriter, Compression, StoreErrorKind};

use super::{blocking, hash_part, ok, stored, writer};
use crate::backend::Backend;
use crate::error::ApiError;
use crate::AppState;

const CONTENT_TYPE: &str = narwhal_store::keys::NARINFO_TYPE;

/// Held from comparing a narinfo with the committed one until it is written.
static COMMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub async fn get(State(state): State<AppState>, hash: &str) -> Result<Response, ApiError> {
    let hash = hash_part(hash)?.to_owned();
    let found = match &state.backend {
        Backend::Local(local) => {
            let local = Arc::clone(local);
            let info = blocking(move || {
                local.narinfo(&hash).map_err(|e| ApiError::backend("cannot read the Nix database", &e))
            })
            .await?;
            info.map(|mut ni| {
                sign(&state, &mut ni);
                Bytes::from(ni.to_string())
            })
        }
        backend => match backend.get(&narwhal_store::keys::narinfo_of_hash(&hash)).await? {
            Some(bytes) if state.keys.is_empty() => Some(bytes),
            Some(bytes) => Some(signed(&state, &bytes)),
            None => None,
        },
    };
    if let Some(body) = found {
        state.metrics.narinfo_hits.fetch_add(1, Ordering::Relaxed);
        Ok(ok(CONTENT_TYPE, body))
    } else {
        state.metrics.narinfo_misses.fetch_add(1, Ordering::Relaxed);
        Err(ApiError::not_found())
    }
}

fn sign(state: &AppState, ni: &mut NarInfo) {
    for key in &state.keys {
        if let Err(e) = ni.sign(key) {
            tracing::warn!(path = %ni.path.base_name(), error = %e, "cannot sign a narinfo");
        }
    }
}

/// `bytes` with the server's signatures added; a narinfo the server cannot
/// parse is passed on as stored (the client will judge it).
fn signed(state: &AppState, bytes: &Bytes) -> Bytes {
    let Some(mut ni) = std::str::from_utf8(bytes).ok().and_then(|t| NarInfo::parse(t, &state.store_dir).ok()) else {
        tracing::warn!("a stored narinfo does not parse; served unsigned");
        return bytes.clone();
    };
    sign(state, &mut ni);
    Bytes::from(ni.to_string())
}

pub async fn put(State(state): State<AppState>, hash: &str, body: Bytes) -> Result<Response, ApiError> {
    let hash = hash_part(hash)?.to_owned();
    let w = writer(&state)?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the narinfo is not UTF-8"))?;
    let ni =
        NarInfo::parse(text, &state.store_dir).map_err(|e| ApiError::bad_request(format!("invalid narinfo: {e}")))?;
    if ni.path.hash_part() != hash {
        return Err(ApiError::bad_request(format!(
            "the narinfo describes {} but was sent as {hash}.narinfo",
            ni.path.base_name()
        )));
    }
    check_key(&ni.url).map_err(|_| ApiError::bad_request("the narinfo's URL leaves the cache"))?;
    if let Some((sig, e)) = ni.sigs.iter().find_map(|s| Signature::parse(s).err().map(|e| (s, e))) {
        return Err(ApiError::bad_request(format!("invalid Sig {sig:?}: {e}; a Sig is NAME:BASE64 of 64 bytes")));
    }
    let compression: Compression =
        ni.compression().parse().map_err(|e| ApiError::bad_request(format!("invalid narinfo: {e}")))?;
    let metrics_state = Arc::clone(&state);
    let state_store_dir = state.store_dir.clone();
    blocking(move || {
        let key = narwhal_store::keys::narinfo_of_hash(&hash);
        for r in ni.references() {
            if r != &ni.path && !w.exists(&narwhal_store::keys::narinfo(r))? {
                return Err(ApiError::conflict(format!(
                    "the reference {} is not in the cache; upload the narinfos of a path's references first",
                    r.base_name()
                )));
            }
        }
        check_nar(w.as_ref(), &ni, compression)?;
        // A narinfo that lies about its NAR was refused above, as such; one that is true but
        // not the committed one is refused here. Two uploads for one path at once on this
        // server cannot both pass the comparison and then both write.
        let _commit = COMMIT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(committed) = w.get(&key)? {
            match compare_to_committed(&committed, &ni, &state_store_dir) {
                Committed::Same => return Ok(()),
                Committed::AddsSignatures | Committed::Unreadable => {}
                Committed::Differs(why) => {
                    return Err(ApiError::conflict(format!(
                    "{} already has a different narinfo here ({why}); a committed narinfo only takes more signatures",
                    ni.path.base_name()
                )))
                }
            }
        }
        w.put(&key, &body, CONTENT_TYPE)?;
        Ok(())
    })
    .await?;
    metrics_state.metrics.narinfos_committed.fetch_add(1, Ordering::Relaxed);
    Ok(stored())
}

/// How a narinfo sent compares with the one already stored for its path.
enum Committed {
    /// The same fields and signatures (in whatever order): nothing to write.
    Same,
    /// The same fields, every stored signature and more.
    AddsSignatures,
    /// The stored file is not a narinfo at all: it may be replaced.
    Unreadable,
    Differs(&'static str),
}

fn compare_to_committed(committed: &[u8], sent: &NarInfo, store_dir: &StoreDir) -> Committed {
    let Some(old) = std::str::from_utf8(committed).ok().and_then(|t| NarInfo::parse(t, store_dir).ok()) else {
        return Committed::Unreadable;
    };
    let unsigned = |ni: &NarInfo| {
        let mut ni = ni.clone();
        ni.sigs.clear();
        ni.to_string()
    };
    if unsigned(&old) != unsigned(sent) {
        return Committed::Differs("its fields differ");
    }
    if !old.sigs.iter().all(|s| sent.sigs.contains(s)) {
        return Committed::Differs("it drops signatures");
    }
    if sent.sigs.iter().all(|s| old.sigs.contains(s)) {
        Committed::Same
    } else {
        Committed::AddsSignatures
    }
}

/// Reads the stored NAR back and checks FileHash, FileSize, NarSize and NarHash.
fn check_nar(w: &dyn CacheWriter, ni: &NarInfo, compression: Compression) -> Result<(), ApiError> {
    let measured = match nar_check::measure(w, &ni.url, ni, true, &mut io::sink()) {
        Ok(m) => m,
        Err(MeasureError::Store(e)) if matches!(e.kind, StoreErrorKind::NotFound) => {
            return Err(ApiError::conflict(format!(
                "{} is not in the cache; upload the NAR before its narinfo",
                ni.url
            )))
        }
        Err(MeasureError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(ApiError::backend("cannot read a NAR back", &e)),
    };
    let mismatch = |m: Mismatch| ApiError::bad_request(format!("the narinfo's {} does not match {}", m.field, ni.url));
    measured.check_file(ni).map_err(mismatch)?;
    if let Some(e) = &measured.not_decoded {
        if matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::Other) {
            return Err(ApiError::bad_request(format!("{} does not decompress as {compression}: {e}", ni.url)));
        }
        return Err(ApiError::backend("cannot read a NAR back", e));
    }
    measured.digests().check(ni).map_err(mismatch)
}
