//! What a build and a push tell whoever runs them; the binary draws it (libraries never print).

use std::time::Duration;

use narwhal_formats::store_path::StorePath;

use crate::oci::Descriptor;

/// How a blob got to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sent {
    /// The repository had it (HEAD).
    Skipped,
    /// Mounted from another repository of the same registry (no bytes sent).
    Mounted,
    Uploaded,
}

/// Events of a build and a push, from several threads at once. Every method does nothing by default.
pub trait Reporter: Send + Sync {
    /// Layer `index` (of the closure's own layers) is being built from `nar_bytes` of NARs.
    fn layer_started(&self, _index: usize, _paths: &[StorePath], _nar_bytes: u64) {}
    /// `bytes` more of layer `index`'s NARs were read.
    fn layer_progress(&self, _index: usize, _bytes: u64) {}
    /// Layer `index` is done: built, or taken from the layer memo (`built` false).
    fn layer_done(&self, _index: usize, _layer: &Descriptor, _built: bool) {}
    /// An upload of `blob` starts.
    fn blob_started(&self, _blob: &Descriptor) {}
    /// `bytes` more of `blob` were sent.
    fn blob_progress(&self, _blob: &Descriptor, _bytes: u64) {}
    fn blob_done(&self, _blob: &Descriptor, _how: Sent) {}
    /// A request (`what`) failed with `why` and is tried again (attempt `attempt`) after `wait`.
    fn retrying(&self, _what: &str, _attempt: u32, _why: &str, _wait: Duration) {}
}

/// Reports nothing.
pub struct Quiet;

impl Reporter for Quiet {}
