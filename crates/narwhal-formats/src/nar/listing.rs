//! An index of a NAR's entries, and the `.ls` JSON document Nix writes
//! beside a NAR in a binary cache (`write-nar-listing`).

use std::collections::{btree_map, BTreeMap};
use std::io::{self, Read};

use super::read::{parse_to_end, Error, Visitor};

/// One entry of a NAR, without file contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingNode {
    Regular { executable: bool, size: u64, nar_offset: u64 },
    Symlink { target: Vec<u8> },
    Directory { entries: BTreeMap<Vec<u8>, ListingNode> },
}

/// The tree of a NAR's entries, with each file's size and offset in the NAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub root: ListingNode,
}

impl Listing {
    /// Reads a NAR from `r`, which must end with it (contents are skipped, not stored).
    pub fn read(r: &mut impl Read) -> Result<Self, Error> {
        let mut b = Builder { stack: Vec::new(), root: None };
        parse_to_end(r, &mut b)?;
        Ok(Self { root: b.root.expect("a parsed NAR has a root") })
    }

    /// The node at `path` (`/`-separated, leading `/` optional; empty is the root).
    /// Symlinks are not followed.
    pub fn lookup(&self, path: &[u8]) -> Option<&ListingNode> {
        let mut node = &self.root;
        for part in path.split(|&c| c == b'/').filter(|p| !p.is_empty()) {
            match node {
                ListingNode::Directory { entries } => node = entries.get(part)?,
                _ => return None,
            }
        }
        Some(node)
    }

    /// The `.ls` document exactly as Nix writes it: `{"version":1,"root":…}`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = b"{\"version\":1,\"root\":".to_vec();
        node_json(&self.root, &mut out);
        out.push(b'}');
        out
    }
}

/// A node as Nix's `listNar` prints it: keys in Nix's order, compact. Walks an explicit stack of
/// open directories, so a tree as deep as a NAR may be costs no thread stack.
pub fn node_json(node: &ListingNode, out: &mut Vec<u8>) {
    // Each open directory's remaining entries, and whether none was printed yet.
    let mut open: Vec<(btree_map::Iter<'_, Vec<u8>, ListingNode>, bool)> = Vec::new();
    node_json_start(node, out, &mut open);
    while let Some((entries, first)) = open.last_mut() {
        if let Some((name, child)) = entries.next() {
            if !*first {
                out.push(b',');
            }
            *first = false;
            json_string(name, out);
            out.push(b':');
            node_json_start(child, out, &mut open);
        } else {
            out.extend_from_slice(b"}}");
            open.pop();
        }
    }
}

/// Prints a file or symlink whole, or the start of a directory (pushed on `open` for its entries).
fn node_json_start<'a>(
    node: &'a ListingNode,
    out: &mut Vec<u8>,
    open: &mut Vec<(btree_map::Iter<'a, Vec<u8>, ListingNode>, bool)>,
) {
    match node {
        ListingNode::Regular { executable, size, nar_offset } => {
            out.extend_from_slice(b"{\"type\":\"regular\",\"size\":");
            out.extend_from_slice(size.to_string().as_bytes());
            if *executable {
                out.extend_from_slice(b",\"executable\":true");
            }
            if *nar_offset != 0 {
                out.extend_from_slice(b",\"narOffset\":");
                out.extend_from_slice(nar_offset.to_string().as_bytes());
            }
            out.push(b'}');
        }
        ListingNode::Symlink { target } => {
            out.extend_from_slice(b"{\"type\":\"symlink\",\"target\":");
            json_string(target, out);
            out.push(b'}');
        }
        ListingNode::Directory { entries } => {
            out.extend_from_slice(b"{\"type\":\"directory\",\"entries\":{");
            open.push((entries.iter(), true));
        }
    }
}

/// A JSON string as Nix's writer escapes it: quotes, backslashes and control
/// characters; other bytes, including non-UTF-8 ones, pass through unchanged.
pub fn json_string(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &c in s {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

struct Builder {
    stack: Vec<BTreeMap<Vec<u8>, ListingNode>>,
    root: Option<ListingNode>,
}

impl Builder {
    fn place(&mut self, path: &[u8], node: ListingNode) {
        match self.stack.last_mut() {
            Some(dir) => {
                let name = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
                dir.insert(name.to_vec(), node);
            }
            None => self.root = Some(node),
        }
    }
}

impl Visitor for Builder {
    fn regular(&mut self, path: &[u8], executable: bool, size: u64, offset: u64, _: &mut dyn Read) -> io::Result<()> {
        self.place(path, ListingNode::Regular { executable, size, nar_offset: offset });
        Ok(())
    }

    fn symlink(&mut self, path: &[u8], target: &[u8]) -> io::Result<()> {
        self.place(path, ListingNode::Symlink { target: target.to_vec() });
        Ok(())
    }

    fn enter_directory(&mut self, _path: &[u8]) -> io::Result<()> {
        self.stack.push(BTreeMap::new());
        Ok(())
    }

    fn leave_directory(&mut self, path: &[u8]) -> io::Result<()> {
        let entries = self.stack.pop().unwrap_or_default();
        self.place(path, ListingNode::Directory { entries });
        Ok(())
    }
}
