//! The `nix-store --export` format, both ways, against real Nix.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use narwhal_formats::export::{ExportReader, ExportWriter};
use narwhal_formats::nar::{self, Listing};
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_testkit::{closure, fixture, nix, run, run_text, tempdir};

fn store_path(p: &Path) -> StorePath {
    StoreDir::default().parse_path(p.to_str().unwrap()).unwrap()
}

fn references(p: &Path) -> Vec<StorePath> {
    run_text(nix("nix-store").args(["-q", "--references"]).arg(p)).lines().map(|l| store_path(Path::new(l))).collect()
}

fn deriver(p: &Path) -> Option<StorePath> {
    let d = run_text(nix("nix-store").args(["-q", "--deriver"]).arg(p));
    (d != "unknown-deriver").then(|| store_path(Path::new(&d)))
}

/// The closure with every path after its references.
fn sorted_closure(root: &Path) -> Vec<PathBuf> {
    let mut todo = closure(root);
    let mut done: Vec<PathBuf> = Vec::new();
    while !todo.is_empty() {
        let i = todo
            .iter()
            .position(|p| references(p).iter().all(|r| *r == store_path(p) || done.iter().any(|d| store_path(d) == *r)))
            .expect("closure has a cycle");
        done.push(todo.remove(i));
    }
    done
}

#[test]
fn nix_store_import_accepts_narwhal_export() {
    let tmp = tempdir();
    let app = fixture("app");
    let paths = sorted_closure(&app);
    let file = tmp.path().join("closure.export");
    let mut w = ExportWriter::new(std::fs::File::create(&file).unwrap(), StoreDir::default());
    for p in &paths {
        w.add(&store_path(p), &references(p), deriver(p).as_ref(), |out| {
            nar::dump(p, out).map(|_| ()).map_err(std::io::Error::other)
        })
        .unwrap();
    }
    w.finish().unwrap();

    let root = tmp.path().join("root");
    let imported =
        run_text(nix("nix-store").arg("--store").arg(&root).arg("--import").stdin(std::fs::File::open(&file).unwrap()));
    let imported: Vec<&str> = imported.lines().collect();
    assert_eq!(imported, paths.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>());
    for p in &paths {
        let q = |flag: &str, store: Option<&Path>| {
            let mut c = nix("nix-store");
            if let Some(s) = store {
                c.arg("--store").arg(s);
            }
            run_text(c.args(["-q", flag]).arg(p))
        };
        for flag in ["--hash", "--references", "--deriver", "--size"] {
            assert_eq!(q(flag, Some(&root)), q(flag, None), "{} {flag}", p.display());
        }
    }
}

#[test]
fn narwhal_reads_nix_store_export() {
    let tmp = tempdir();
    let app = fixture("app");
    let file = tmp.path().join("nix.export");
    let bytes = run(nix("nix-store").arg("--export").args(closure(&app)));
    std::fs::write(&file, bytes).unwrap();

    let mut r = ExportReader::new(BufReader::new(std::fs::File::open(&file).unwrap()), StoreDir::default());
    let mut seen = Vec::new();
    loop {
        let mut listing = ListingCollector::default();
        let Some(entry) = r.next_path(&mut listing).unwrap() else { break };
        let full = Path::new("/nix/store").join(entry.path.base_name());
        assert_eq!(format!("{}", entry.nar_hash), run_text(nix("nix-store").args(["-q", "--hash"]).arg(&full)));
        assert_eq!(entry.nar_size.to_string(), run_text(nix("nix-store").args(["-q", "--size"]).arg(&full)));
        let mut refs = entry.references.clone();
        refs.sort();
        assert_eq!(refs, references(&full));
        assert_eq!(entry.deriver, deriver(&full));
        // The NAR inside is the path's own.
        let own = Listing::read(&mut narwhal_testkit::nix_dump(&full).as_slice()).unwrap();
        assert_eq!(listing.files, count_files(&own.root));
        seen.push(full);
    }
    let mut expected = closure(&app);
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected);
}

#[derive(Default)]
struct ListingCollector {
    files: usize,
}

impl nar::Visitor for ListingCollector {
    fn regular(&mut self, _: &[u8], _: bool, _: u64, _: u64, _: &mut dyn std::io::Read) -> std::io::Result<()> {
        self.files += 1;
        Ok(())
    }
    fn symlink(&mut self, _: &[u8], _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn enter_directory(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

fn count_files(node: &nar::ListingNode) -> usize {
    match node {
        nar::ListingNode::Regular { .. } => 1,
        nar::ListingNode::Symlink { .. } => 0,
        nar::ListingNode::Directory { entries } => entries.values().map(count_files).sum(),
    }
}
