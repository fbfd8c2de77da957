//! The walk a slug uses (`narwhal_formats::tree`) and the sizes it counts.

use std::fs::Metadata;

pub(crate) use narwhal_formats::tree::{sorted_names, Walk, WalkError};

/// The depth a NAR may hold (see there for why), so a slug walks what was deployed into it.
pub const MAX_DEPTH: usize = narwhal_formats::tree::MAX_DEPTH;

/// Bytes an entry contributes to a slug's apparent size: a file its length, a
/// symlink the length of its target, anything else nothing.
pub(crate) fn apparent_len(meta: &Metadata) -> u64 {
    if meta.is_file() || meta.is_symlink() {
        meta.len()
    } else {
        0
    }
}
