//! `nix-store --export` streams.

use narwhal_formats::export::{CheckOnly, ExportReader, ExportWriter, ExportedPath};
use narwhal_formats::hash::{Algorithm, Hash};
use narwhal_formats::store_path::StoreDir;

/// Every path read carries the hash and size of the NAR bytes it was read
/// from; a stream read to its end, written again, reads back as the same
/// paths (references sorted and deduplicated, as the writer keeps them).
pub fn check(data: &[u8]) {
    let dir = StoreDir::default();
    let Some(paths) = read_all(data, &dir) else { return };
    let mut writer = ExportWriter::new(Vec::new(), dir.clone());
    for (p, nar) in &paths {
        let written = writer.add(&p.path, &p.references, p.deriver.as_ref(), |w| {
            w.extend_from_slice(nar);
            Ok(())
        });
        if let Err(e) = written {
            panic!("writing to memory failed: {e}");
        }
    }
    let rewritten = match writer.finish() {
        Ok(out) => out,
        Err(e) => panic!("writing to memory failed: {e}"),
    };
    let Some(again) = read_all(&rewritten, &dir) else {
        panic!("an export written from a valid one does not read back")
    };
    assert_eq!(again.len(), paths.len());
    for ((a, nar_a), (b, nar_b)) in again.iter().zip(&paths) {
        let mut refs = b.references.clone();
        refs.sort();
        refs.dedup();
        let expected = ExportedPath { references: refs, ..b.clone() };
        assert_eq!(a, &expected, "a path changed when written again");
        assert!(nar_a == nar_b, "a NAR changed when written again");
    }
}

/// The paths of a whole stream with their NARs' bytes, `None` when the stream is invalid.
fn read_all(data: &[u8], dir: &StoreDir) -> Option<Vec<(ExportedPath, Vec<u8>)>> {
    let mut reader = ExportReader::new(data, dir.clone());
    let mut paths = Vec::new();
    loop {
        let mut raw = Vec::new();
        match reader.next_path_copying(&mut CheckOnly, &mut raw) {
            Ok(Some(p)) => {
                assert_eq!(p.nar_size, raw.len() as u64, "nar_size differs from the NAR's bytes");
                assert_eq!(p.nar_hash, Hash::of(Algorithm::Sha256, &raw), "nar_hash differs from the NAR's bytes");
                paths.push((p, raw));
            }
            Ok(None) => break,
            Err(_) => return None,
        }
    }
    assert!(matches!(reader.next_path(&mut CheckOnly), Ok(None)), "a finished reader read on");
    Some(paths)
}
