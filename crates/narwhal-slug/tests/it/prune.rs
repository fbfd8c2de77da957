//! `prune` on its own: reports, permissions, symlinks, limits.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use narwhal_slug::prune::{Error, Removed};
use narwhal_slug::{prune, Rules, MAX_DEPTH};

use crate::{dir, file, link, listing};

fn rules(text: &str) -> Rules {
    text.parse().unwrap()
}

fn removed(report: &narwhal_slug::PruneReport) -> Vec<(PathBuf, bool, u64)> {
    report.removed.iter().map(|Removed { path, is_dir, bytes, .. }| (path.clone(), *is_dir, *bytes)).collect()
}

#[test]
fn reports_each_removed_entry_once_in_walk_order() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path();
    file(s, "store/a-x/lib/libx.a", &[0; 100]);
    file(s, "store/a-x/lib/libx.so", &[0; 10]);
    file(s, "store/a-x/share/doc/x/README", &[0; 7]);
    file(s, "store/a-x/share/doc/x/NEWS", &[0; 3]);
    link(s, "store/a-x/share/doc/x/link", "README");
    file(s, "store/a-x/share/man/x.1", &[0; 5]);
    file(s, "store/b-y.a", &[0; 1]);
    let report = prune(s, &rules("- *.a\n- share/doc/")).unwrap();
    assert_eq!(
        removed(&report),
        [
            ("store/a-x/lib/libx.a".into(), false, 100),
            ("store/a-x/share/doc".into(), true, 7 + 3 + 6),
            ("store/b-y.a".into(), false, 1),
        ]
    );
    assert_eq!(report.bytes_freed, 117);
    assert_eq!(
        listing(s).into_iter().collect::<Vec<_>>(),
        [
            "store/",
            "store/a-x/",
            "store/a-x/lib/",
            "store/a-x/lib/libx.so (10 bytes)",
            "store/a-x/share/",
            "store/a-x/share/man/",
            "store/a-x/share/man/x.1 (5 bytes)",
        ]
    );
}

#[test]
fn no_rules_remove_nothing_and_excluding_store_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path();
    file(s, "store/a-x/bin/x", b"x");
    file(s, "app.txt", b"outside the store");
    let before = listing(s);
    let report = prune(s, &Rules::default()).unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(listing(s), before);

    let report = prune(s, &rules("- /store/")).unwrap();
    assert_eq!(removed(&report), [("store".into(), true, 1)]);
    assert_eq!(listing(s).into_iter().collect::<Vec<_>>(), ["app.txt (17 bytes)"], "only store/ is pruned");
}

#[test]
fn symlinks_are_removed_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    file(&outside, "keep/me", b"precious");
    let s = &tmp.path().join("slug");
    link(s, "store/a-x/data", outside.join("keep").to_str().unwrap());
    link(s, "store/a-x/lib", "real-lib");
    file(s, "store/a-x/real-lib/libx.so", b"x");
    // A symlink to a directory is not a directory: "lib/" does not match it.
    let report = prune(s, &rules("- lib/\n- data")).unwrap();
    assert_eq!(removed(&report), [("store/a-x/data".into(), false, outside.join("keep").as_os_str().len() as u64)]);
    assert_eq!(fs::read(outside.join("keep/me")).unwrap(), b"precious");
    assert!(fs::symlink_metadata(s.join("store/a-x/lib")).unwrap().is_symlink());
}

#[test]
fn read_only_directories_are_pruned_and_keep_their_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path();
    file(s, "store/a-x/lib/libx.a", b"aaaa");
    file(s, "store/a-x/lib/libx.so", b"so");
    file(s, "store/a-x/share/doc/README", b"r");
    dir(s, "store/a-x/share/doc/empty");
    for d in ["store/a-x/share/doc/empty", "store/a-x/share/doc", "store/a-x/share", "store/a-x/lib", "store/a-x"] {
        fs::set_permissions(s.join(d), fs::Permissions::from_mode(0o555)).unwrap();
    }
    let report = prune(s, &rules("- *.a\n- doc/")).unwrap();
    assert_eq!(report.removed.len(), 2);
    for d in ["store/a-x/share", "store/a-x/lib", "store/a-x"] {
        assert_eq!(fs::metadata(s.join(d)).unwrap().permissions().mode() & 0o777, 0o555, "{d}");
    }
    assert!(s.join("store/a-x/lib/libx.so").exists());
    assert!(!s.join("store/a-x/share/doc").exists());
}

#[test]
fn missing_store_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = prune(tmp.path(), &Rules::default()).unwrap_err();
    assert!(matches!(&err, Error::Read { path, .. } if *path == tmp.path().join("store")), "{err:?}");
}

#[test]
fn too_deep_is_an_error_not_a_stack_overflow() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = "d/".repeat(MAX_DEPTH + 5);
    dir(tmp.path(), &format!("store/{deep}"));
    let err = prune(tmp.path(), &rules("- nothing-matches")).unwrap_err();
    assert!(matches!(err, Error::TooDeep { .. }), "{err:?}");
    // Removing such a tree is bounded the same way.
    let err = prune(tmp.path(), &rules("- /store/d")).unwrap_err();
    assert!(matches!(err, Error::TooDeep { .. }), "{err:?}");
}
