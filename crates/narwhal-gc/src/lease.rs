//! One GC at a time per cache: a lease object (`gc/lease.json`) with an expiry, created with a
//! conditional write (`If-None-Match: *` on S3, an exclusive link in a directory) and renewed or
//! taken over only if it is still the object read (`If-Match`). A lease whose holder is gone is
//! taken over once it expires, or at once when it names a process of this machine that is dead.
//! After writing, the holder reads the lease back and checks its token, so a server that ignores
//! the condition still leaves only one holder in all but a race of the same instant.

use narwhal_store::gc_window::{hostname, LeaseRecord as Body};
use narwhal_store::{keys, CacheWriter};

use crate::error::Error;
use crate::now_ms;

/// The lease, held until [`Lease::release`] (or until it expires, for a killed holder).
pub struct Lease<'a> {
    cache: &'a dyn CacheWriter,
    body: Body,
    etag: String,
    ttl_ms: i64,
}

fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest % 3600 / 60, rest % 60)
}

impl<'a> Lease<'a> {
    /// Takes the lease of `cache` for `ttl_ms`, or says who holds it.
    pub fn acquire(cache: &'a dyn CacheWriter, ttl_ms: i64) -> Result<Self, Error> {
        let now = now_ms();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let token = format!("{:x}-{now:x}-{nanos:x}", std::process::id());
        let body =
            Body { host: hostname(), pid: std::process::id(), token, acquired_ms: now, expires_ms: now + ttl_ms };
        let data = serde_json::to_vec(&body).unwrap_or_default();
        let created = cache.put_new(keys::GC_LEASE, &data, keys::JSON_TYPE)?;
        if !created {
            let (current, etag) = read(cache)?;
            let stale = match &current {
                None => true,
                Some(b) => b.is_stale(now),
            };
            let taken = match (&current, etag) {
                (_, None) => cache.put_new(keys::GC_LEASE, &data, keys::JSON_TYPE)?,
                (_, Some(etag)) if stale => cache.replace_if(keys::GC_LEASE, &data, keys::JSON_TYPE, &etag)?,
                _ => false,
            };
            if !taken {
                return Err(refused(cache, current));
            }
        }
        // Read back: the token must be ours.
        let (current, etag) = read(cache)?;
        match (current, etag) {
            (Some(b), Some(etag)) if b.token == body.token => Ok(Self { cache, body, etag, ttl_ms }),
            (current, _) => Err(refused(cache, current)),
        }
    }

    /// Extends the lease by its time to live from now.
    pub fn renew(&mut self) -> Result<(), Error> {
        let mut body = self.body.clone();
        body.expires_ms = now_ms() + self.ttl_ms;
        let data = serde_json::to_vec(&body).unwrap_or_default();
        if !self.cache.replace_if(keys::GC_LEASE, &data, keys::JSON_TYPE, &self.etag)? {
            let (current, _) = read(self.cache)?;
            return Err(Error::LeaseLost {
                cache: self.cache.url().to_owned(),
                owner: current.map_or_else(|| "nobody (it was deleted)".to_owned(), |b| b.owner()),
            });
        }
        let (_, etag) = read(self.cache)?;
        self.etag = etag.unwrap_or_default();
        self.body = body;
        Ok(())
    }

    /// Renews the lease when less than half its time to live is left.
    pub fn keep(&mut self) -> Result<(), Error> {
        if self.body.expires_ms - now_ms() < self.ttl_ms / 2 {
            self.renew()?;
        }
        Ok(())
    }

    /// Gives the lease up (when it is still ours).
    pub fn release(self) -> Result<(), Error> {
        if let (Some(b), _) = read(self.cache)? {
            if b.token == self.body.token {
                self.cache.delete(keys::GC_LEASE)?;
            }
        }
        Ok(())
    }
}

fn refused(cache: &dyn CacheWriter, current: Option<Body>) -> Error {
    let (owner, until) = current.map_or_else(
        || ("an unknown holder".to_owned(), "unknown".to_owned()),
        |b| (b.owner(), format_ms(b.expires_ms)),
    );
    Error::Leased { cache: cache.url().to_owned(), owner, until }
}

/// The lease as stored (`None` when absent or unreadable) and its ETag (`None` when absent).
fn read(cache: &dyn CacheWriter) -> Result<(Option<Body>, Option<String>), Error> {
    let mut etag = None;
    cache.list_objects(keys::GC_LEASE, &mut |o| {
        if o.key == keys::GC_LEASE {
            etag = Some(o.etag);
        }
    })?;
    let body = cache.get(keys::GC_LEASE)?.and_then(|b| serde_json::from_slice(&b).ok());
    Ok((body, etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_dates() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_ms(1_796_220_000_000), "2026-12-02 14:00:00 UTC");
    }
}
