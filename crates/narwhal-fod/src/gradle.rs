//! Gradle's dependency cache laid out as a Maven repository.
//!
//! Gradle keeps what it downloaded under `GRADLE_USER_HOME/caches/modules-2/`:
//!
//! ```text
//! files-2.1/<group>/<module>/<version>/<sha1>/<file>   jars, poms, .module files, as downloaded
//! resources-2.1/<n>/<sha1>/maven-metadata.xml          version listings, named by their contents
//! metadata-2.<v>/…, modules-2.lock, *.bin              Gradle's own indexes and locks: left out
//! ```
//!
//! where `<sha1>` is the file's SHA-1 in hex as Java's `BigInteger.toString(16)` writes it, so
//! without leading zeros. A Maven repository holds `<group with / for .>/<module>/<version>/<file>`
//! and `<group>/<module>/maven-metadata.xml`, which Gradle (and Maven) read from a `file:`
//! repository exactly as from the server, so version ranges resolve from the captured listing.

use std::path::{Path, PathBuf};

use narwhal_formats::tree::{sorted_names, Walk};

use crate::layout::{check_out, component, is_sha1_name, kind_of, Expected, Plan, Summary};
use crate::metadata;
use crate::Error;

/// The name of the version listings taken from `resources-2.1`.
const METADATA: &str = "maven-metadata.xml";

/// Lays out the dependencies cached in `gradle_user_home` as a Maven repository in the new
/// directory `out`.
pub fn layout(gradle_user_home: &Path, out: &Path) -> Result<Summary, Error> {
    let modules = gradle_user_home.join("caches/modules-2");
    let files = modules.join("files-2.1");
    if !files.is_dir() {
        return Err(Error::NotGradleHome { path: gradle_user_home.to_path_buf() });
    }
    check_out(out, gradle_user_home)?;
    let mut plan = Plan::default();
    for (group, group_dir) in dirs(&files, &mut plan)? {
        let group = component(&group, &group_dir, "group")?;
        let group_path: PathBuf =
            group.split('.').map(|part| component(part.as_ref(), &group_dir, "group")).collect::<Result<_, _>>()?;
        for (module, module_dir) in dirs(&group_dir, &mut plan)? {
            let module = component(&module, &module_dir, "module")?;
            for (version, version_dir) in dirs(&module_dir, &mut plan)? {
                let version = component(&version, &version_dir, "version")?;
                for (sha1, sha1_dir) in dirs(&version_dir, &mut plan)? {
                    let sha1 = sha1_name(&sha1, &sha1_dir)?;
                    for name in sorted_names(&sha1_dir).map_err(|source| read(&sha1_dir, source))? {
                        let path = sha1_dir.join(&name);
                        let file = component(&name, &path, "file name")?;
                        let target = group_path.join(module).join(version).join(file);
                        plan.add(target, path, Expected::Folder(sha1.clone()));
                    }
                }
            }
        }
    }
    let resources = modules.join("resources-2.1");
    if resources.is_dir() {
        add_metadata(&resources, &mut plan)?;
    }
    // The rest of modules-2 is Gradle's own: `metadata-2.*` indexes, `modules-2.lock`.
    for name in sorted_names(&modules).map_err(|source| read(&modules, source))? {
        if name != "files-2.1" && name != "resources-2.1" {
            for entry in Walk::new(&modules.join(name)) {
                plan.left_out += u64::from(!entry?.meta.is_dir());
            }
        }
    }
    plan.write(out)
}

/// The `maven-metadata.xml` files of `resources-2.1`, placed by the coordinates they name.
fn add_metadata(resources: &Path, plan: &mut Plan) -> Result<(), Error> {
    for entry in Walk::new(resources) {
        let entry = entry?;
        if entry.meta.is_dir() {
            continue;
        }
        if entry.path.file_name().is_none_or(|n| n != METADATA) || !entry.meta.is_file() {
            // Other cached resources (and anything but a file) are not part of a repository.
            plan.left_out += 1;
            continue;
        }
        let folder = entry.path.parent().and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or_default();
        let expected = if is_sha1_name(folder) { Expected::Folder(folder.to_owned()) } else { Expected::Nothing };
        let xml = metadata::read_bounded(&entry.path)?;
        let coordinates =
            metadata::coordinates(&xml).map_err(|why| Error::Metadata { path: entry.path.clone(), why })?;
        let target = coordinates.path(METADATA);
        for part in &target {
            component(part, &entry.path, "coordinate")?;
        }
        plan.add(target, entry.path, expected);
    }
    Ok(())
}

/// The subdirectories of `dir`, by name; names starting with a dot are left out (none is Gradle's).
fn dirs(dir: &Path, plan: &mut Plan) -> Result<Vec<(std::ffi::OsString, PathBuf)>, Error> {
    let mut out = Vec::new();
    for name in sorted_names(dir).map_err(|source| read(dir, source))? {
        let path = dir.join(&name);
        if name.as_encoded_bytes().starts_with(b".") {
            plan.left_out += 1;
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(|source| read(&path, source))?;
        if !meta.is_dir() {
            return Err(Error::Unexpected { path, found: kind_of(&meta), expected: "directories at this depth" });
        }
        out.push((name, path));
    }
    Ok(out)
}

fn sha1_name(name: &std::ffi::OsStr, path: &Path) -> Result<String, Error> {
    match name.to_str() {
        Some(s) if is_sha1_name(s) => Ok(s.to_owned()),
        _ => {
            Err(Error::BadName { path: path.to_path_buf(), what: "SHA-1 folder", why: "it is not 1 to 40 hex digits" })
        }
    }
}

fn read(path: &Path, source: std::io::Error) -> Error {
    Error::Read { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use narwhal_formats::hash::{Algorithm, Encoding, Hash};

    use super::*;

    /// Puts `content` in the cache as Gradle would: under its SHA-1 without leading zeros.
    fn cache(home: &Path, coordinates: &str, name: &str, content: &[u8]) {
        let sha1 = Hash::of(Algorithm::Sha1, content).encode(Encoding::Base16);
        let dir = home.join("caches/modules-2/files-2.1").join(coordinates).join(sha1.trim_start_matches('0'));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), content).unwrap();
    }

    #[test]
    fn lays_out_files_listings_and_leaves_out_gradles_own() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        cache(&home, "org.example/lib/1.0", "lib-1.0.jar", b"jar");
        cache(&home, "org.example/lib/1.0", "lib-1.0.module", b"{}");
        cache(&home, "org.example/lib/1.0", "lib-1.0.pom", b"<project/>");
        let xml = b"<metadata><groupId>org.example</groupId><artifactId>lib</artifactId></metadata>";
        let sha1 = Hash::of(Algorithm::Sha1, xml).encode(Encoding::Base16);
        let listing = home.join("caches/modules-2/resources-2.1/1").join(&sha1);
        fs::create_dir_all(&listing).unwrap();
        fs::write(listing.join("maven-metadata.xml"), xml).unwrap();
        fs::create_dir_all(home.join("caches/modules-2/metadata-2.36")).unwrap();
        fs::write(home.join("caches/modules-2/metadata-2.36/module-metadata.bin"), "x").unwrap();
        fs::write(home.join("caches/modules-2/modules-2.lock"), "").unwrap();

        let out = tmp.path().join("out");
        let summary = layout(&home, &out).unwrap();
        assert_eq!((summary.files, summary.left_out, summary.duplicates), (4, 2, 0));
        for f in ["lib-1.0.jar", "lib-1.0.module", "lib-1.0.pom"] {
            assert!(out.join("org/example/lib/1.0").join(f).is_file(), "{f}");
        }
        assert_eq!(fs::read(out.join("org/example/lib/maven-metadata.xml")).unwrap(), xml);
    }

    #[test]
    fn a_file_where_a_folder_belongs_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        cache(&home, "org.example/lib/1.0", "lib-1.0.jar", b"jar");
        fs::write(home.join("caches/modules-2/files-2.1/org.example/stray"), "").unwrap();
        let err = layout(&home, &tmp.path().join("out")).unwrap_err();
        assert!(matches!(err, Error::Unexpected { .. }), "{err}");
        assert!(!tmp.path().join("out").exists());
    }

    #[test]
    fn out_inside_the_cache_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        cache(&home, "org.example/lib/1.0", "lib-1.0.jar", b"jar");
        let err = layout(&home, &home.join("caches/deps")).unwrap_err();
        assert!(matches!(err, Error::OutInsideSource { .. }), "{err}");
    }
}
