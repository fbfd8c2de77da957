//! Writing results: standard output for data, atomic files for everything kept.

use std::io::{self, BufWriter};

/// Standard output, locked and buffered for bulk data.
pub fn stdout() -> BufWriter<io::StdoutLock<'static>> {
    // As large as the NAR writer's read buffer: full reads then bypass this buffer instead of being copied.
    BufWriter::with_capacity(64 * 1024, io::stdout().lock())
}

pub use narwhal_store::file::write_atomic;
