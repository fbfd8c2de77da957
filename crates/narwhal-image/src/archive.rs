//! Images as one file: `oci-archive:` (an OCI image layout in a tar, as skopeo and podman write it)
//! and `docker-archive:` (what `docker save` writes and `docker load` reads).
//!
//! ```text
//! oci-archive    = tar( oci-layout index.json blobs/sha256/<hex>… )
//! docker-archive = tar( <config hex>.json  <layer hex>/layer.tar…  manifest.json  repositories )
//! manifest.json  = [{"Config": "<config hex>.json", "RepoTags": ["NAME:TAG"], "Layers": ["<hex>/layer.tar", …]}]
//! repositories   = {"NAME": {"TAG": "<top layer hex>"}}
//! ```
//!
//! Both are written with [`TarWriter`] (fixed modes, owners and mtime, entries in one order), so
//! the same image gives the same archive, byte for byte. The archive goes to a temporary name
//! beside the final one (`narwhal_formats::temp`) and is renamed there only when complete, so
//! FILE is the old file or the whole new one.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::oci::Layout;
use crate::tar::TarWriter;
use crate::{Built, Error};

/// Writes the OCI layout in `layout_dir` as a tar at `dest`.
pub fn write_oci_archive(layout_dir: &Path, dest: &Path) -> Result<(), Error> {
    write_atomically(dest, |tar| {
        for name in ["oci-layout", "index.json"] {
            add_file(tar, name.as_bytes(), &layout_dir.join(name))?;
        }
        tar.directory(b"blobs")?;
        tar.directory(b"blobs/sha256")?;
        let blobs = layout_dir.join("blobs/sha256");
        let mut names: Vec<_> = fs::read_dir(&blobs)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?
            .into_iter()
            .filter(|n| !n.to_string_lossy().starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let inner = format!("blobs/sha256/{}", name.to_string_lossy());
            add_file(tar, inner.as_bytes(), &blobs.join(&name))?;
        }
        Ok(())
    })
}

/// Writes the image `built` (its blobs in `layout`, layers uncompressed as `docker save` writes
/// them) as a `docker load` archive at `dest`, tagged `NAME:TAG` when `repo_tag` is given.
pub fn write_docker_archive(
    layout: &Layout,
    built: &Built,
    repo_tag: Option<(&str, &str)>,
    dest: &Path,
) -> Result<(), Error> {
    let hex = |digest: &str| digest.trim_start_matches("sha256:").to_owned();
    let config_name = format!("{}.json", hex(&built.config.digest));
    let layer_names: Vec<String> = built.layers.iter().map(|l| format!("{}/layer.tar", hex(&l.digest))).collect();
    let mut entry = serde_json::Map::new();
    entry.insert("Config".to_owned(), config_name.clone().into());
    let tags: Vec<serde_json::Value> =
        repo_tag.iter().map(|(name, tag)| serde_json::Value::from(format!("{name}:{tag}"))).collect();
    entry.insert("RepoTags".to_owned(), tags.into());
    entry.insert("Layers".to_owned(), layer_names.clone().into());
    let manifest = serde_json::to_vec(&[serde_json::Value::Object(entry)]).map_err(invalid)?;
    let mut repositories: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
    if let (Some((name, tag)), Some(top)) = (repo_tag, built.layers.last()) {
        repositories.entry(name).or_default().insert(tag, hex(&top.digest));
    }
    let repositories = serde_json::to_vec(&repositories).map_err(invalid)?;
    write_atomically(dest, |tar| {
        add_file(tar, config_name.as_bytes(), &layout.blob_path(&built.config.digest))?;
        let mut written = std::collections::BTreeSet::new();
        for (layer, name) in built.layers.iter().zip(&layer_names) {
            // A layer twice in one image (a base's empty layers) is stored once.
            if written.insert(name.clone()) {
                tar.directory(hex(&layer.digest).as_bytes())?;
                add_file(tar, name.as_bytes(), &layout.blob_path(&layer.digest))?;
            }
        }
        tar.file(b"manifest.json", false, manifest.len() as u64, &mut &manifest[..])?;
        tar.file(b"repositories", false, repositories.len() as u64, &mut &repositories[..])
    })
}

fn invalid(e: serde_json::Error) -> Error {
    Error::Layer { path: "the archive's manifest".to_owned(), source: io::Error::other(e) }
}

fn add_file(tar: &mut TarWriter<BufWriter<File>>, name: &[u8], path: &Path) -> io::Result<()> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    tar.file(name, false, size, &mut file)
}

/// Runs `fill` on a tar writing to a temporary file beside `dest`, then renames it to `dest`; on
/// any error the temporary file is removed and `dest` is untouched.
fn write_atomically(
    dest: &Path,
    fill: impl FnOnce(&mut TarWriter<BufWriter<File>>) -> io::Result<()>,
) -> Result<(), Error> {
    let err = |source| Error::Io { what: "cannot write the image archive", path: dest.to_owned(), source };
    // A temporary file beside `dest` (narwhal_formats::temp), removed on drop unless persisted.
    let tmp = narwhal_formats::temp::file_for(dest).map_err(err)?;
    let result = (|| {
        let file = tmp.as_file().try_clone()?;
        let mut tar = TarWriter::new(BufWriter::with_capacity(1 << 20, file));
        fill(&mut tar)?;
        let mut out = tar.finish()?;
        out.flush()?;
        out.get_ref().sync_all()?;
        tmp.persist(dest).map_err(|e| e.error)?;
        Ok(())
    })();
    result.map_err(err)?;
    Ok(())
}
