//! Writes a synthetic cache for `scripts/bench-gc`: COUNT signed narinfos, each with a small NAR
//! of its own and up to five references to earlier paths, straight through the store's writer
//! (no Nix needed).
//!
//!     synth_cache URL COUNT SECRET_KEY_FILE

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use narwhal_formats::hash::{Algorithm, Hash};
use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::signature::SecretKey;
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_store::{keys, parallel, CacheUrl};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, count, key] = args.as_slice() else {
        eprintln!("usage: synth_cache URL COUNT SECRET_KEY_FILE");
        std::process::exit(2);
    };
    let count: usize = count.parse().unwrap();
    let key = SecretKey::parse(std::fs::read_to_string(key).unwrap().trim()).unwrap();
    // The AWS variables from this process's environment, as the binary passes them.
    let vars = narwhal_store::settings::S3_VARS.iter().filter_map(|&n| Some((n.to_owned(), std::env::var(n).ok()?)));
    let settings = narwhal_store::Settings { vars: vars.collect(), ..narwhal_store::Settings::default() };
    let cache = narwhal_store::open_writer(&CacheUrl::parse(url).unwrap(), &settings).unwrap();
    let store_dir = StoreDir::default();
    cache.put(keys::CACHE_INFO, keys::cache_info_for(&store_dir).as_bytes(), keys::CACHE_INFO_TYPE).unwrap();
    let path = |i: usize| {
        let digest = Hash::of(Algorithm::Sha256, format!("synthetic-{i}").as_bytes());
        StorePath::from_parts(digest.digest()[..20].try_into().unwrap(), &format!("synthetic-path-{i}")).unwrap()
    };
    let items: Vec<usize> = (0..count).collect();
    let started = std::time::Instant::now();
    parallel::try_map(&items, 32, |&i| {
        let nar = format!("synthetic NAR {i}").into_bytes();
        let file_hash = Hash::of(Algorithm::Sha256, &nar);
        let url = keys::nar(&file_hash, "");
        cache.put(&url, &nar, keys::NAR_TYPE)?;
        let mut info =
            NarInfo::new(store_dir.clone(), path(i), url, Hash::of(Algorithm::Sha256, &nar), nar.len() as u64);
        info.compression = Some("none".to_owned());
        info.file_hash = Some(file_hash);
        info.file_size = Some(nar.len() as u64);
        let mut refs: Vec<StorePath> = (1..=5).filter(|d| i >= d * 7).map(|d| path(i - d * 7)).collect();
        refs.sort();
        info.references = Some(refs);
        info.deriver = Some(StorePath::from_parts(&[7; 20], &format!("synthetic-path-{i}.drv")).unwrap());
        info.sign(&key).unwrap();
        cache.put(&keys::narinfo(&info.path), info.to_string().as_bytes(), keys::NARINFO_TYPE)
    })
    .unwrap();
    eprintln!("wrote {count} narinfos and NARs to {url} in {:.1} s", started.elapsed().as_secs_f64());
}
