//! `/nar/<file>`: NARs as the cache stores them (byte ranges on the directory
//! backend), or dumped on the fly from the local store; uploads streamed to a
//! temporary file, then stored whole.
//!
//! Uploads are content-addressed, as Nix names them: `nar/<FileHash>.nar<ext>`,
//! the FileHash being the nix32 sha256 of the file as sent. It is computed while
//! the body streams in; a body that does not hash to its name is refused, and a
//! NAR already stored is never written again (its bytes are those of its name).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use narwhal_formats::hash::{Algorithm, Encoding, Hasher};
use tokio::io::AsyncWriteExt as _;

use super::{blocking, hash_part, stored, writer};
use crate::backend::{channel_body, Backend, RangeRequest};
use crate::error::ApiError;
use crate::local;
use crate::AppState;

const CONTENT_TYPE: &str = narwhal_store::keys::NAR_TYPE;
const EXTENSIONS: [&str; 7] = ["", ".xz", ".zst", ".bz2", ".br", ".lzma", ".lz4"];

/// Checks a NAR file name: `<nix32 or hex>[-<nix32>].nar[.<compression>]`.
fn check_name(file: &str) -> Result<(), ApiError> {
    let ok = file.len() <= 200
        && EXTENSIONS.iter().any(|ext| {
            file.strip_suffix(ext).and_then(|f| f.strip_suffix(".nar")).is_some_and(|stem| {
                !stem.is_empty()
                    && stem.split('-').count() <= 2
                    && stem
                        .split('-')
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()))
            })
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid NAR name: expected <hash>.nar[.xz|.zst|.bz2|.br]"))
    }
}

pub async fn get(
    State(state): State<AppState>,
    Path(file): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_name(&file)?;
    let head = method == Method::HEAD;
    if let Backend::Local(_) = state.backend {
        return local(&state, &file, head).await;
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(RangeRequest::parse);
    let object = match state.backend.open(&format!("nar/{file}"), range, head).await? {
        None => return Err(ApiError::not_found()),
        Some(Err(unsatisfiable)) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{}", unsatisfiable.0))],
            )
                .into_response())
        }
        Some(Ok(o)) => o,
    };
    let mut response = Response::new(object.body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Some(len) = object.len {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let sent = match object.range {
            Some(r) => {
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                let h = response.headers_mut();
                h.insert(header::CONTENT_RANGE, header_value(&format!("bytes {}-{}/{len}", r.start, r.end)));
                r.end - r.start + 1
            }
            None => len,
        };
        response.headers_mut().insert(header::CONTENT_LENGTH, header_value(&sent.to_string()));
        if !head {
            state.metrics.nar_bytes_sent.fetch_add(sent, Ordering::Relaxed);
        }
    }
    Ok(response)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `nar/<hash>.nar` or `nar/<hash>-<narhash>.nar` (nix-serve's form), dumped from the local store.
async fn local(state: &AppState, file: &str, head: bool) -> Result<Response, ApiError> {
    let Backend::Local(local) = &state.backend else { return Err(ApiError::not_found()) };
    let stem = file.strip_suffix(".nar").ok_or_else(ApiError::not_found)?;
    let (hash, nar_hash) = match stem.split_once('-') {
        Some((h, n)) => (h, Some(n.to_owned())),
        None => (stem, None),
    };
    let hash = hash_part(hash)?.to_owned();
    let lookup = Arc::clone(local);
    let found = blocking(move || {
        lookup.nar(&hash, nar_hash.as_deref()).map_err(|e| ApiError::backend("cannot read the Nix database", &e))
    })
    .await?;
    let Some((path, real, nar_size)) = found else { return Err(ApiError::not_found()) };
    let body = if head {
        Body::empty()
    } else {
        state.metrics.nar_bytes_sent.fetch_add(nar_size, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(4);
        tokio::task::spawn_blocking(move || {
            // A closed channel (the client left) stops the dump.
            let mut w = local::body_feed(tx.clone());
            let dumped = narwhal_formats::nar::dump(&real, &mut w)
                .and_then(|n| w.finish().map(|()| n).map_err(narwhal_formats::nar::DumpError::Write));
            let failure = match dumped {
                Ok(n) if n == nar_size => return,
                Ok(n) => format!(
                    "{} changed on disk: its NAR is {n} bytes, the Nix database says {nar_size}",
                    path.base_name()
                ),
                Err(e) => format!("cannot dump {}: {e}", path.base_name()),
            };
            if !tx.is_closed() {
                tracing::error!("{failure}");
                // Breaks the response off, so the client sees a failed download, not a short NAR.
                let _ = tx.blocking_send(Err(io::Error::other(failure)));
            }
        });
        channel_body(rx)
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            (header::CONTENT_LENGTH, header_value(&nar_size.to_string())),
        ],
        body,
    )
        .into_response())
}

/// The FileHash (nix32 sha256) an upload's name promises: `<52 nix32>.nar<ext>`.
fn promised_hash(file: &str) -> Result<&str, ApiError> {
    let stem = EXTENSIONS.iter().find_map(|ext| file.strip_suffix(ext).and_then(|f| f.strip_suffix(".nar")));
    match stem {
        Some(h) if h.len() == 52 && h.bytes().all(|b| narwhal_formats::nixbase32::ALPHABET.contains(&b)) => Ok(h),
        _ => Err(ApiError::bad_request(
            "a NAR is stored under its FileHash: nar/<nix32 sha256 of the file>.nar[.xz|.zst|.bz2|.br], as Nix names it",
        )),
    }
}

pub async fn put(State(state): State<AppState>, Path(file): Path<String>, body: Body) -> Result<Response, ApiError> {
    check_name(&file)?;
    let promised = promised_hash(&file)?.to_owned();
    let w = writer(&state)?;
    // Removed when dropped, whatever happens to the upload ([`narwhal_formats::temp`]).
    let (out, temp) = narwhal_formats::temp::file_in(&state.temp_dir, format!("narwhal-upload-{file}"))
        .map_err(|e| ApiError::backend("cannot create a temporary file for an upload", &e))?
        .into_parts();
    let mut out = tokio::fs::File::from_std(out);
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    let mut hasher = Hasher::new(Algorithm::Sha256);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("the upload was cut off"))?;
        hasher.update(&chunk);
        total += chunk.len() as u64;
        if total > state.max_upload_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the NAR is larger than this server accepts ({} bytes)", state.max_upload_bytes),
            ));
        }
        out.write_all(&chunk).await.map_err(|e| ApiError::backend("cannot write an upload to disk", &e))?;
    }
    out.flush().await.map_err(|e| ApiError::backend("cannot write an upload to disk", &e))?;
    drop(out);
    state.metrics.bytes_received.fetch_add(total, Ordering::Relaxed);
    let actual = hasher.finish().encode(Encoding::Nix32);
    if actual != promised {
        return Err(ApiError::bad_request(format!(
            "the NAR's FileHash is sha256:{actual}, not the sha256:{promised} its name gives; send it as nar/{actual}.nar<ext>"
        )));
    }
    let key = format!("nar/{file}");
    blocking(move || {
        // Same name, same bytes: what is stored stays as it is.
        if !w.exists(&key)? {
            w.put_file(&key, &temp, CONTENT_TYPE)?;
        }
        drop(temp);
        Ok(())
    })
    .await?;
    Ok(stored())
}

#[cfg(test)]
mod tests {
    use super::{check_name, promised_hash};

    #[test]
    fn names() {
        for ok in [
            "1a2b3c.nar.xz",
            "0g5rqcyp5ljl5z0w1n4afdh13ajpvdpd3mpj61ykfdbqrn4zgds6.nar.zst",
            "abc.nar",
            "0ph8b4yb6qljcb2slbqisd9mz9mn2g2q-1bqm4cm7c6dcp2jfcj3rs79xy6sl8gk6q3hyf3l4y2vx3dqlfzsf.nar",
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["../x.nar", "x.nar.gz2", ".nar", "a-b-c.nar", "A.nar", "x.tar", "a--b.nar", "a/b.nar", "x.nar\0"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let h = "0g5rqcyp5ljl5z0w1n4afdh13ajpvdpd3mpj61ykfdbqrn4zgds6";
        assert_eq!(promised_hash(&format!("{h}.nar.xz")).ok(), Some(h));
        assert_eq!(promised_hash(&format!("{h}.nar")).ok(), Some(h));
        for bad in
            ["abc.nar", "0ph8b4yb6qljcb2slbqisd9mz9mn2g2q-1bqm4cm7c6dcp2jfcj3rs79xy6sl8gk6q3hyf3l4y2vx3dqlfzsf.nar"]
        {
            assert!(promised_hash(bad).is_err(), "{bad}");
        }
        assert!(promised_hash(&format!("{}e.nar", &h[1..])).is_err(), "e is not nix32");
    }
}
