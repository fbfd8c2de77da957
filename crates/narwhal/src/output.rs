//! Writing results: standard output for data, atomic files for everything kept.

use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Standard output, locked and buffered for bulk data.
pub fn stdout() -> BufWriter<io::StdoutLock<'static>> {
    // As large as the NAR writer's read buffer: full reads then bypass this buffer instead of being copied.
    BufWriter::with_capacity(64 * 1024, io::stdout().lock())
}

/// Writes `contents` to `path` through a temporary file and a rename, so
/// `path` never holds a partial file. With `overwrite` false an existing
/// `path` is an error.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> io::Result<()> {
    if !overwrite && fs::symlink_metadata(path).is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} already exists", path.display())));
    }
    let tmp = narwhal_formats::temp::sibling(path)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a file name", path.display())))?;
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// One line on standard error (a closed stderr is ignored: nothing better can be done).
pub fn eprint_line(s: &str) {
    let _ = writeln!(io::stderr().lock(), "{s}");
}

/// Prints `value` on standard output as one line of JSON: the `--json` output of every command
/// (the conventions are in the README, "JSON output").
pub fn print_json(value: &serde_json::Value) -> io::Result<()> {
    let mut out = stdout();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()
}
