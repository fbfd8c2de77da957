//! `narwhal nar dump|unpack|ls|cat`.

use std::io::Write as _;

use anyhow::{bail, Context as _};
use narwhal_formats::nar::{self, Listing, ListingNode};

use super::open_input;
use crate::cli::NarCommand;
use crate::output::stdout;

pub fn run(cmd: NarCommand) -> anyhow::Result<()> {
    match cmd {
        NarCommand::Dump { path } => {
            refuse_special(&path)?;
            let mut out = stdout();
            if let Err(e) = nar::dump(&path, &mut out) {
                // What is still buffered (all of a small tree's NAR) never reaches standard output.
                drop(out.into_parts());
                return Err(e.into());
            }
            out.flush().context("cannot write to standard output")?;
        }
        NarCommand::Unpack { nar: input, dir } => {
            super::check_parent(&dir)?;
            let mut r = open_input(&input)?;
            nar::unpack(&mut r, &dir).with_context(|| format!("cannot unpack {}", input.display()))?;
        }
        NarCommand::Ls { nar: input, path, recursive, long, json } => {
            let mut r = open_input(&input)?;
            let listing = Listing::read(&mut r).with_context(|| format!("cannot list {}", input.display()))?;
            let node =
                listing.lookup(path.as_bytes()).with_context(|| format!("{path:?} is not in {}", input.display()))?;
            let mut out = stdout();
            if json {
                // Byte for byte what a cache serves: no trailing newline.
                if path.trim_matches('/').is_empty() {
                    out.write_all(&listing.to_json())?;
                } else {
                    let mut buf = Vec::new();
                    nar::listing_node_json(node, &mut buf);
                    out.write_all(&buf)?;
                }
            } else {
                let base = if matches!(node, ListingNode::Directory { .. }) {
                    b".".to_vec()
                } else {
                    path.rsplit('/').next().unwrap_or_default().as_bytes().to_vec()
                };
                list(&mut out, node, &base, recursive, long, false)?;
            }
            out.flush()?;
        }
        NarCommand::Cat { nar: input, path } => {
            let mut r = open_input(&input)?;
            let mut out = stdout();
            match nar::cat(&mut r, &path, &mut out) {
                Ok(_) => out.flush()?,
                Err(nar::CatError::NotFound(p)) => bail!("{p:?} is not in {}", input.display()),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", input.display())),
            }
        }
    }
    Ok(())
}

/// Prints like `nix nar ls`: a directory's entries as `./name`, recursing with -R.
fn list(
    out: &mut impl std::io::Write,
    node: &ListingNode,
    rel: &[u8],
    recursive: bool,
    long: bool,
    show_dir: bool,
) -> std::io::Result<()> {
    match node {
        ListingNode::Directory { entries } if !show_dir => {
            for (name, child) in entries {
                let mut p = rel.to_vec();
                p.push(b'/');
                p.extend_from_slice(name);
                list(out, child, &p, recursive, long, true)?;
            }
            Ok(())
        }
        _ => {
            if long {
                let (kind, size) = match node {
                    ListingNode::Regular { executable: true, size, .. } => ("-r-xr-xr-x", *size),
                    ListingNode::Regular { size, .. } => ("-r--r--r--", *size),
                    ListingNode::Symlink { .. } => ("lrwxrwxrwx", 0),
                    ListingNode::Directory { .. } => ("dr-xr-xr-x", 0),
                };
                write!(out, "{kind} {size:>20} ")?;
            }
            out.write_all(rel)?;
            if let (true, ListingNode::Symlink { target }) = (long, node) {
                out.write_all(b" -> ")?;
                out.write_all(target)?;
            }
            out.write_all(b"\n")?;
            if recursive && matches!(node, ListingNode::Directory { .. }) {
                list(out, node, rel, recursive, long, false)?;
            }
            Ok(())
        }
    }
}

/// Refuses a path a NAR cannot hold (a device, FIFO or socket) before any byte is written.
fn refuse_special(path: &std::path::Path) -> anyhow::Result<()> {
    let meta = path.symlink_metadata().with_context(|| format!("cannot read {}", path.display()))?;
    let t = meta.file_type();
    if t.is_file() || t.is_dir() || t.is_symlink() {
        return Ok(());
    }
    let kind = narwhal_formats::tree::kind(t);
    bail!("{} is a {kind}, which a NAR cannot hold (only files, directories and symlinks)", path.display())
}
