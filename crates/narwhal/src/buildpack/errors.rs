//! Everything the buildpack tells a user when it stops: what happened and
//! how to fix it, in one place.

use std::fmt;

#[derive(Debug)]
pub enum BuildpackError {
    Config { why: String },
    NothingToDeploy,
    NoCaches,
    NixBuild { status: String },
    NixCopy { status: String },
}

impl fmt::Display for BuildpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config { why } => write!(
                f,
                "narwhal.toml or a NARWHAL_* config var is invalid: {why}. Fix narwhal.toml (see the buildpack's README for every key) or the config var with `heroku config:set`."
            ),
            Self::NothingToDeploy => f.write_str(
                "nothing to deploy: no roots and no pin. Set `pin = \"<name>\"` or `roots = [\"/nix/store/…\"]` in narwhal.toml, or `heroku config:set NARWHAL_PIN=<name>`.",
            ),
            Self::NoCaches => f.write_str(
                "no binary cache to deploy from. Set `substituters = [\"https://…\"]` in narwhal.toml, or `heroku config:set NARWHAL_SUBSTITUTERS=https://…` (NIX_EXTRA_BINARY_CACHE works too).",
            ),
            Self::NixBuild { status } => write!(
                f,
                "nix-build failed ({status}). Its output is above; fix the build, or turn building off (build.nix = false, NIX_BUILD_ON_PUSH unset) to deploy from a cache."
            ),
            Self::NixCopy { status } => write!(
                f,
                "copying the build out of the local Nix store failed ({status}). Its output is above; check free space in the build cache."
            ),
        }
    }
}

impl std::error::Error for BuildpackError {}
