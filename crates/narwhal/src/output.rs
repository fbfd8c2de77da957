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
