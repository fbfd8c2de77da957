//! NAR, the Nix ARchive: a canonical serialisation of a file system object.
//!
//! Grammar (every token is a [wire string](crate::wire)):
//!
//! ```text
//! nar       = "nix-archive-1" node
//! node      = "(" "type" ( regular | symlink | directory ) ")"
//! regular   = "regular" [ "executable" "" ] "contents" <contents>
//! symlink   = "symlink" "target" <target>
//! directory = "directory" { "entry" "(" "name" <name> "node" node ")" }
//! ```
//!
//! Directory entries are strictly increasing by bytes. A NAR records only
//! contents, the executable bit and symlink targets: no owners, times or
//! other permissions. The same tree always gives the same bytes, which is
//! why a NAR's sha256 identifies a store path's contents.
//!
//! [`dump`] writes a NAR from the file system, [`Writer`] from anything,
//! [`parse`] reads one strictly and reports [`Event`]s to a [`Visitor`],
//! [`unpack`] restores one into a directory, [`Listing`] indexes one.

mod cat;
mod dump;
mod listing;
mod read;
mod unpack;
mod write;

pub use cat::{cat, CatError};
pub use dump::{dump, dump_to_hash, DumpError};
pub use listing::{json_string, node_json as listing_node_json, Listing, ListingNode};
pub use read::{parse, parse_to_end, Error, ErrorKind, Visitor};
pub use unpack::{copy_through, unpack, unpack_pending, Pending, UnpackError, UnpackHook, Verbatim, PATH_MAX};
pub use write::{DirectoryWriter, Finished, NodeWriter, Writer};

/// First token of every NAR.
pub const MAGIC: &[u8] = b"nix-archive-1";
/// Longest entry name (Linux's `NAME_MAX`).
pub const MAX_NAME_LEN: u64 = 255;
/// Longest symlink target (Linux's `PATH_MAX` less the NUL).
pub const MAX_TARGET_LEN: u64 = 4095;
/// Deepest nesting of directories accepted, written and walked. Nix itself has no limit but its
/// paths: Linux's PATH_MAX of 4096 bytes allows 2048 levels of one-letter names below `/`. Half
/// of that is far beyond any real store path (Nix's own tests go to 300) and keeps the open
/// directories of an unpack (one descriptor per level) within reach of the descriptor limit.
/// Every walk over a tree is iterative, so this is a limit on the input, not on a thread's stack.
pub const MAX_DEPTH: usize = 1024;
/// Longest keyword token; anything longer is rejected before it is read.
pub const MAX_TOKEN_LEN: u64 = 16;

pub(crate) const OPEN: &[u8] = b"(";
pub(crate) const CLOSE: &[u8] = b")";
pub(crate) const TYPE: &[u8] = b"type";
pub(crate) const REGULAR: &[u8] = b"regular";
pub(crate) const EXECUTABLE: &[u8] = b"executable";
pub(crate) const CONTENTS: &[u8] = b"contents";
pub(crate) const SYMLINK: &[u8] = b"symlink";
pub(crate) const TARGET: &[u8] = b"target";
pub(crate) const DIRECTORY: &[u8] = b"directory";
pub(crate) const ENTRY: &[u8] = b"entry";
pub(crate) const NAME: &[u8] = b"name";
pub(crate) const NODE: &[u8] = b"node";

/// Why a directory entry name is invalid, if it is.
pub fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("is empty")
    } else if name == b"." || name == b".." {
        Err("is '.' or '..'")
    } else if name.contains(&b'/') {
        Err("contains '/'")
    } else if name.contains(&0) {
        Err("contains NUL")
    } else if name.len() as u64 > MAX_NAME_LEN {
        Err("is longer than 255 bytes")
    } else {
        Ok(())
    }
}
