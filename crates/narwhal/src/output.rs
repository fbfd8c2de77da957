//! Writing results: standard output for data, atomic files for everything kept.

use std::io::{self, BufWriter, Write as _};

/// Standard output, locked and buffered for bulk data.
pub fn stdout() -> BufWriter<io::StdoutLock<'static>> {
    // As large as the NAR writer's read buffer: full reads then bypass this buffer instead of being copied.
    BufWriter::with_capacity(64 * 1024, io::stdout().lock())
}

/// Files the binary keeps (keys, narinfos, launchers) are written as every
/// crate writes them: [`narwhal_formats::temp::write_atomic`].
pub use narwhal_formats::temp::write_atomic;

/// One line on standard error (progress, warnings); a closed stderr is not an error.
pub fn eprintln_line(s: &str) {
    let _ = writeln!(io::stderr().lock(), "{s}");
}

/// One line on standard error (a closed stderr is ignored: nothing better can be done).
pub fn eprint_line(s: &str) {
    let _ = writeln!(io::stderr().lock(), "{s}");
}

/// Prints `value` on standard output as one line of JSON: the `--json` output of every command
/// (the conventions are in the README, "JSON output"), an object with `"version": 1`.
pub fn print_json(value: &impl serde::Serialize) -> io::Result<()> {
    let mut value = serde_json::to_value(value)?;
    if let Some(object) = value.as_object_mut() {
        object.entry("version").or_insert(serde_json::json!(1));
    }
    let mut out = stdout();
    serde_json::to_writer(&mut out, &value)?;
    writeln!(out)?;
    out.flush()
}
