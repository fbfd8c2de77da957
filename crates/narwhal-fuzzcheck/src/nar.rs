//! NAR: parse, list, and unpack into a sandbox, then dump the tree back.

use std::fs;

use narwhal_formats::export::CheckOnly;
use narwhal_formats::nar;

/// The parser, the listing and the unpacker agree on what is a NAR; unpacking
/// writes only its destination (or nothing at all when the archive is bad);
/// and a tree unpacked from a valid NAR dumps back to the same bytes, since a
/// NAR the strict parser accepts is canonical.
pub fn check(data: &[u8]) {
    let parsed = nar::parse_to_end(&mut &data[..], &mut CheckOnly);
    if let Ok(size) = &parsed {
        assert_eq!(*size, data.len() as u64, "parse_to_end accepted a NAR but reported another size");
    }
    let listing = nar::Listing::read(&mut &data[..]);
    assert_eq!(listing.is_ok(), parsed.is_ok(), "Listing::read and parse_to_end disagree: {listing:?} vs {parsed:?}");
    if let Ok(listing) = &listing {
        assert_eq!(listing.lookup(b""), Some(&listing.root), "the empty path is not the root");
        // Non-UTF-8 names pass through into the .ls document as Nix writes them; it is an object.
        let json = listing.to_json();
        assert!(json.starts_with(b"{\"version\":1,\"root\":{") && json.ends_with(b"}}"), "malformed .ls");
    }

    // outer/ holds sandbox/ (where the unpack may write) and untouched/, which must stay empty.
    let outer = crate::temp_dir();
    let sandbox = outer.path().join("sandbox");
    let untouched = outer.path().join("untouched");
    for d in [&sandbox, &untouched] {
        if let Err(e) = fs::create_dir(d) {
            panic!("cannot create {} (not the input's fault): {e}", d.display());
        }
    }
    let dest = sandbox.join("out");
    let unpacked = nar::unpack(&mut &data[..], &dest);
    assert_eq!(crate::names_in(outer.path()), ["sandbox", "untouched"], "the unpack wrote beside its sandbox");
    assert!(crate::names_in(&untouched).is_empty(), "the unpack wrote outside its destination");
    match (&unpacked, &parsed) {
        (Ok(size), Ok(parsed_size)) => {
            assert_eq!(size, parsed_size, "unpack and parse report different NAR sizes");
            assert_eq!(crate::names_in(&sandbox), ["out"], "the unpack left something beside its destination");
            let mut dumped = Vec::new();
            match nar::dump(&dest, &mut dumped) {
                Ok(_) => assert!(dumped == data, "the unpacked tree dumps to a different NAR"),
                Err(e) => panic!("cannot dump the tree unpacked from a valid NAR: {e:?}"),
            }
        }
        (Err(e), Err(_)) => {
            assert!(crate::names_in(&sandbox).is_empty(), "a failed unpack ({e}) left files behind");
        }
        // A valid NAR whose paths would not fit under the destination: refused, as Nix's restore
        // refuses it, rather than made into a tree no program (nor `nar dump`) can open by name.
        (Err(nar::UnpackError::PathTooLong { len, .. }), Ok(_)) => {
            assert!(*len >= nar::PATH_MAX, "a path of {len} bytes refused as too long");
            assert!(crate::names_in(&sandbox).is_empty(), "a refused unpack left files behind");
        }
        (Ok(_), Err(e)) => panic!("unpack accepted a NAR the parser rejects ({e:?})"),
        (Err(e), Ok(_)) => panic!("unpack rejected a NAR the parser accepts: {e:?}"),
    }
}
