//! Everything a buildpack tells its user when it stops: what happened and how
//! to fix it, in one place. Both front ends (the classic buildpack and the
//! CNB) print these; the library never does.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("narwhal.toml or a NARWHAL_* config var is invalid: {why}. Fix narwhal.toml (see the buildpack's README for every key) or the config var with `heroku config:set`.")]
    Config { why: String },
    #[error("nothing to deploy: no roots and no pin. Set `pin = \"<name>\"` or `roots = [\"/nix/store/…\"]` in narwhal.toml, or `heroku config:set NARWHAL_PIN=<name>`.")]
    NothingToDeploy,
    #[error("no binary cache to deploy from. Set `substituters = [\"https://…\"]` in narwhal.toml, or `heroku config:set NARWHAL_SUBSTITUTERS=https://…` (NIX_EXTRA_BINARY_CACHE works too).")]
    NoCaches,
    #[error("nix-build failed ({status}). Its output is above; fix the build, or turn building off (build.nix = false, NIX_BUILD_ON_PUSH unset) to deploy from a cache.")]
    NixBuild { status: String },
    #[error("copying the build out of the local Nix store failed ({status}). Its output is above; check free space in the build cache.")]
    NixCopy { status: String },
    #[error("cannot run {program}")]
    Spawn {
        program: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("no trusted public keys, so no signature can be checked; give --trusted-public-key NAME:KEY (or NARWHAL_TRUSTED_PUBLIC_KEYS, or trusted-public-keys in nix.conf), or --no-verify to accept unsigned paths")]
    NoTrustedKeys,
    #[error("invalid trusted public key {key:?}")]
    InvalidKey {
        key: String,
        #[source]
        source: narwhal_formats::signature::Error,
    },
    #[error("no binary cache given; pass --from URL (or NARWHAL_SUBSTITUTERS, or substituters in nix.conf)")]
    NoSubstituters,
    #[error("an export ({export}) carries no signatures, so narwhal cannot verify it; pass --no-verify to trust it as whoever wrote it (its NAR hashes are computed and recorded in the manifest), or deploy from a signed binary cache with --from")]
    UnsignedExport { export: String },
    #[error("invalid root {root:?}: with --from-export, roots are store paths in the export")]
    ExportRoot {
        root: String,
        #[source]
        source: narwhal_formats::store_path::Error,
    },
    #[error("there is no export at {export}; store the closure there first: `narwhal export ROOT -o {export}` (the buildpack does it after building when NIX_BUILD_ON_PUSH=1)")]
    NoExport { export: String },
    #[error("cannot read the export {export}")]
    ReadExport {
        export: String,
        #[source]
        source: narwhal_store::StoreError,
    },
    #[error("cannot open the export {export}")]
    OpenExport {
        export: String,
        #[source]
        source: io::Error,
    },
    #[error("{url} is not an S3 object URL: write s3://bucket/key")]
    NotS3 { url: String },
    #[error("{url} names a bucket, not an object: add the object's key, as in s3://{bucket}/closures/app.export")]
    BucketNotObject { url: String, bucket: String },
    #[error("--runtime-root {0:?} must be an absolute, normalised path of letters, digits and / . _ - + @ , = only (such as /app): the scripts narwhal writes hold it unquoted")]
    RuntimeRoot(String),
    #[error("{} is a symlink; narwhal writes {name} itself and never through a symlink (it could point outside the app): remove it from the app", path.display())]
    Symlink { path: PathBuf, name: String },
    #[error("{} exists and is not a symlink; narwhal will not replace it (rename it in the app)", .0.display())]
    NotALink(PathBuf),
    #[error("invalid {}", file.display())]
    Slugexclude {
        file: PathBuf,
        #[source]
        source: narwhal_slug::filter::Error,
    },
    #[error("cannot prune the slug")]
    Prune(#[source] narwhal_slug::prune::Error),
    #[error("cannot check the slug")]
    Check(#[source] narwhal_slug::check::Error),
    #[error("cannot measure the slug")]
    Size(#[source] narwhal_slug::size::Error),
    /// A file or directory the buildpack reads or writes.
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Fetch(#[from] narwhal_fetch::Error),
    #[error("{0}")]
    Store(#[from] narwhal_store::StoreError),
    #[error("{0}")]
    Lock(#[from] narwhal_store::lock::LockError),
    #[error("{0}")]
    Relocate(#[from] narwhal_relocate::Error),
    #[error("{0}")]
    Push(#[from] narwhal_push::Error),
    #[error("{0}")]
    LocalStore(#[from] narwhal_localstore::LocalError),
    #[error("{0}")]
    Signature(#[from] narwhal_formats::signature::Error),
    #[error("invalid {}: {why}. Each line is `type: command`, as in `web: result/bin/server`.", file.display())]
    Procfile { file: PathBuf, why: String },
    #[error("process type {kind:?} may hold letters, digits, '.', '_' and '-' only: rename it in narwhal.toml's [processes] or the Procfile")]
    ProcessType { kind: String },
    #[error("{} exists and is not empty: package the buildpack into a new directory", .0.display())]
    PackageExists(PathBuf),
    #[error("NARWHAL_HTTP_TIMEOUT={value:?} is not a number of seconds; set it to one, such as 10")]
    HttpTimeout { value: String },
    #[error("cannot read Nix's configuration")]
    NixConf(#[from] narwhal_formats::nix_conf::Error),
    #[error("{path:?} is not a store path")]
    StorePath {
        path: String,
        #[source]
        source: narwhal_formats::store_path::Error,
    },
}

impl Error {
    /// `Error::Io` for `what` (a verb: "create", "read", "write") on `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}

// The wrapped libraries' errors print as themselves and are their own source, so the binary's hint
// and exit-code walks over the chain find them.

/// Why detect did not pass: one line naming what it looked for and how to make it pass.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NotDetected {
    #[error("no narwhal.toml in the app, and no NIX_S3_BUCKET + NIX_APP_NAME config vars (nor a default.nix or deploy.nix): this is not a narwhal app. Add a narwhal.toml naming what to deploy (see the buildpack's README).")]
    Nothing,
    #[error("found {file} but no narwhal.toml and no configuration: add a narwhal.toml (`pin = \"web\"` or `roots = [...]` with `substituters` to deploy from a cache, or `[build] nix = true` to build {file}), or set NIX_BUILD_ON_PUSH=1 to build it with nix-build on push.")]
    NixFileOnly { file: &'static str },
}
