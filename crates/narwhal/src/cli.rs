//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The most paths (or server threads) worked on at once: each costs a few threads and MiB.
const MAX_JOBS: u64 = 256;

/// A count between `min` and `max`, checked by clap (which names the range in its error).
fn counted(min: u64, max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(min..=max)
}

/// `narwhal --version`: the version and the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("NARWHAL_COMMIT"), ")");

/// Deploy Nix closures where Nix cannot run, and serve the binary caches they come from.
///
/// narwhal fetches store paths from binary caches (checking every signature and hash) into any
/// directory, rewriting /nix/store to a path of the same length, so programs built by Nix run on
/// machines without Nix (a Heroku dyno, a container, a CI runner). It also pushes closures to caches,
/// serves caches over HTTP, and builds OCI images, all without Nix or Docker. With no --from,
/// --trusted-public-key or --key-file, it reads them from Nix's own nix.conf.
#[derive(Debug, Parser)]
#[command(
    name = "narwhal",
    version = VERSION,
    propagate_version = true,
    max_term_width = 100,
    after_help = concat!(
        "Examples:\n",
        "  narwhal fetch /nix/store/…-app --from https://cache.example.org --to /srv/app --prefix /srv/store\n",
        "  narwhal push ./result --to s3://my-cache --key-file cache.sec\n",
        "  narwhal serve --store /srv/cache --listen 0.0.0.0:5000\n\n",
        "Exit status: 0 success; 1 the command failed (its input or environment: the error line says why); 2 the \
         command line is wrong; 3 verification failed (a signature or a hash did not match: nothing unverified \
         was used); 70 internal error (a bug: please report it)."
    )
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Say where settings came from (which nix.conf file and line) and more of what is done.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    /// Do not read Nix's configuration (nix.conf, NIX_CONFIG) for caches, keys and netrc files.
    #[arg(long, global = true, env = "NARWHAL_NO_NIX_CONF", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_nix_conf: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with NAR archives (Nix ARchives).
    #[command(subcommand)]
    Nar(NarCommand),
    /// Compute and convert hashes as Nix prints them.
    #[command(subcommand)]
    Hash(HashCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Sign and verify narinfo files.
    #[command(subcommand)]
    Narinfo(NarinfoCommand),
    /// Realise the closure of store paths, pins or Hydra jobs from binary caches into a directory.
    ///
    /// Every narinfo's signature is checked against the trusted keys, every NAR
    /// against its FileHash, NarHash and NarSize; with --prefix, the store
    /// directory is rewritten to PREFIX (same length) in files and symlinks.
    #[command(after_help = "Examples:\n  \
        narwhal fetch ./result --to /srv/app/store --prefix /srv/app/s    (caches and keys from nix.conf)\n  \
        narwhal fetch pin:web@$GIT_SHA --from https://cache.example.org \\\n    \
        --trusted-public-key cache.example.org-1:BASE64 --to /srv/app/store")]
    Fetch(FetchArgs),
    /// Assemble a Heroku-style slug: fetch relocated into APP_DIR/store, `result` links,
    /// `.profile.d/narwhal.sh`, `.slugexclude` pruning, checks and a size report.
    #[command(after_help = "Example:\n  narwhal slug pin:web --from s3://my-cache --app-dir \"$BUILD_DIR\"")]
    Slug(SlugArgs),
    /// Copy the closures of store paths from the local Nix store to a cache, signed and compressed.
    ///
    /// Skips what the cache has; uploads each NAR, then its narinfo, and a narinfo
    /// only after the narinfos of all its references. Works as a Nix
    /// post-build-hook: with no PATH, it pushes $OUT_PATHS.
    #[command(after_help = "Examples:\n  \
        narwhal push ./result --to 's3://my-cache?region=eu-west-1' --key-file cache.sec\n  \
        narwhal push ./result --to https://cache.example.org --token-file push.token\n  \
        narwhal push /nix/store/…-app --from https://cache.nixos.org --to file:///srv/cache")]
    Push(PushArgs),
    /// List the paths of the closures of store paths that a cache lacks.
    #[command(after_help = "Example:\n  narwhal missing ./result --in s3://my-cache")]
    Missing {
        /// Store paths in the local Nix store, or links to them (./result).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// The cache to ask (file:///dir, /dir, s3://bucket, http(s)://host/path).
        #[arg(long = "in", value_name = "URL")]
        cache: String,
        /// Print a JSON document instead of one path a line.
        #[arg(long)]
        json: bool,
    },
    /// Point NAME (and NAME@REV) at a store path already in the cache.
    #[command(
        after_help = "Example:\n  narwhal pin web ./result --to s3://my-cache --rev \"$(git rev-parse HEAD)\" --keep 20"
    )]
    Pin {
        /// The pin's name (letters, digits, `.`, `_`, `-`), as deploys name it: `pin:NAME`.
        #[arg(value_parser = pin_name)]
        name: String,
        /// The store path to point at (it must be in the cache), or a link to it (./result).
        #[arg(value_name = "STORE_PATH")]
        store_path: String,
        /// The cache to write the pin into.
        #[arg(long, value_name = "URL")]
        to: String,
        /// File holding the Bearer token for an http(s):// cache (else $NARWHAL_PUSH_TOKEN, else netrc credentials).
        #[arg(long, env = "NARWHAL_PUSH_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// Also pin this revision (a git commit), as `pins/NAME@REV`.
        #[arg(long, value_parser = pin_revision)]
        rev: Option<String>,
        /// Keep only the N most recent revision pins of NAME (older ones are deleted; their paths are not).
        #[arg(long, value_parser = counted(1, 100_000))]
        keep: Option<usize>,
    },
    /// Write the closures of store paths to standard output in `nix-store --export` format.
    #[command(after_help = "Examples:\n  narwhal export ./result > closure.export\n  \
        narwhal export ./result -o 's3://my-bucket/closures/app.export?region=eu-west-1'")]
    Export {
        /// Store paths in the local Nix store, or links to them (./result); their closures are written.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Write to this S3 object (`s3://bucket/key`, with the cache URL's parameters) instead of stdout.
        #[arg(long, short = 'o')]
        output: Option<String>,
    },
    /// Put the paths of a `nix-store --export` file into a cache, signed and compressed.
    #[command(after_help = "Example:\n  narwhal import closure.export --to file:///srv/cache --key-file cache.sec")]
    Import {
        /// Export file, `-` for standard input, or an S3 object (`s3://bucket/key`).
        file: PathBuf,
        #[command(flatten)]
        dest: DestArgs,
        /// Print a JSON summary on stdout (the shape is in the README, "JSON output").
        #[arg(long)]
        json: bool,
    },
    /// List the pins in a cache: name, revision, store path, time.
    #[command(after_help = "Example:\n  narwhal pins --from s3://my-cache web")]
    Pins {
        /// The cache (file:///dir, /dir, s3://bucket).
        #[arg(long, value_name = "URL")]
        from: String,
        /// Only the pins of this name.
        #[arg(value_parser = pin_name)]
        name: Option<String>,
        /// Print a JSON document instead of tab-separated lines.
        #[arg(long)]
        json: bool,
    },
    /// Show how big the store paths in a directory are (a fetch's --to, or an app's store/).
    #[command(after_help = "Example:\n  narwhal size /srv/app/store --json")]
    Size {
        /// The directory holding the store paths (`<hash>-<name>` entries).
        dir: PathBuf,
        /// Print a JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Build an OCI image of closures, from binary caches or the local Nix store: no Docker, no Nix.
    ///
    /// Layers are tars written straight from the NARs (no unpacking), reproducible byte for byte;
    /// each root and each path of at least 1 MiB gets a layer of its own, smaller paths share a few
    /// (chosen by store path hash, so unchanged paths keep their layers' digests across versions).
    #[command(after_help = "Examples:\n  \
        narwhal image ./result --entrypoint bin/server --port 5000 --to oci:/tmp/app:latest\n  \
        narwhal image ./result --entrypoint bin/server --format v2s2 --creds \"_:$(heroku auth:token)\" \\\n    \
        --to docker://registry.heroku.com/APP/web")]
    Image(Box<ImageArgs>),
    /// Serve a binary cache over HTTP: a directory, an S3 bucket, or this machine's Nix store.
    ///
    /// Answers Nix's and narwhal's requests (nix-cache-info, narinfos signed with
    /// --key-file, NARs with byte ranges, listings, logs, pins). With push tokens it
    /// takes PUTs from `nix copy --to http://…` and `narwhal push`, storing a narinfo
    /// only once its NAR is there and matches it. Logs a line per request on stderr
    /// (NARWHAL_LOG=warn to quiet it); stops gracefully on SIGINT or SIGTERM.
    #[command(after_help = "Examples:\n  \
        narwhal serve --store /srv/cache --key-file cache.sec --listen 0.0.0.0:5000\n  \
        narwhal serve --store local --push-token-file /etc/narwhal/push-tokens")]
    Serve(ServeArgs),
    /// Capture a build tool's dependencies for a fixed-output derivation and print its outputHash.
    ///
    /// Lays a cache filled by one build with network out as a deterministic offline repository
    /// (OUT, created whole) and prints the recursive NAR hash Nix will compute for it: no fake
    /// hash, no failed build to copy the hash from.
    #[command(subcommand)]
    Fod(FodCommand),
    /// Delete what no pin, recent push or given path needs from a directory or S3 cache, never
    /// breaking a closure, while pushes go on.
    ///
    /// Phase 1 marks (pins after --keep/--keep-days, narinfos younger than --keep-since, PATHs,
    /// everything younger than --grace) and publishes the candidates in gc/pending.json, which
    /// `narwhal push` honours; phase 2, one grace period later, deletes those still unreachable:
    /// narinfos referrers first, their listings and logs, then NARs no narinfo names once
    /// --nar-delay has passed. Without --phase, one run does both, waiting in between.
    #[command(after_help = "Examples:\n  narwhal gc --in s3://nixcache?region=eu-west-1 --keep 10 --dry-run\n  \
        narwhal gc --in /srv/cache --phase 1    # then, one grace period later: --phase 2")]
    Gc(GcArgs),
    /// Check a cache (signatures, NARs, references), or a deployed directory against its manifest.
    ///
    /// `verify --in URL [PATH...]` checks every narinfo (or those of PATHs); `--repair --from URL`
    /// fetches missing or damaged NARs again. `verify DIR` checks each path of a fetched tree, a
    /// slug or a CNB workspace against the relocated NAR hash in its manifest. Exit status 3 when
    /// anything is wrong.
    #[command(
        after_help = "Examples:\n  narwhal verify --in s3://nixcache --trusted-public-key \"$(cat cache.pub)\" --contents\n  \
        narwhal verify --in /srv/cache --repair --from https://cache.example.org\n  narwhal verify ./app/store"
    )]
    Verify(VerifyArgs),
    /// Print a shell completion script: `source <(narwhal completions bash)`.
    #[command(after_help = "Examples:\n  narwhal completions bash > /etc/bash_completion.d/narwhal\n  \
        narwhal completions zsh > \"${fpath[1]}/_narwhal\"\n  \
        narwhal completions fish > ~/.config/fish/completions/narwhal.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `narwhal man | man -l -`.
    #[command(after_help = "Example:\n  narwhal man > /usr/local/share/man/man1/narwhal.1")]
    Man,
    /// The buildpack phases (bin/detect, bin/compile and bin/release call these).
    #[command(subcommand, hide = true)]
    Buildpack(BuildpackCommand),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Store paths (or links to them, ./result) to push with their closures; defaults to $OUT_PATHS
    /// (space-separated) for post-build-hooks.
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
    #[command(flatten)]
    pub dest: DestArgs,
    /// Copy from this cache (file://, http(s)://, s3://) instead of the local Nix store; NARs keep their
    /// compression unless --compression (or ?compression=) asks for another.
    #[arg(long)]
    pub from: Option<String>,
    /// Paths compressed and uploaded at once.
    #[arg(long, short = 'j', value_parser = counted(1, MAX_JOBS))]
    pub jobs: Option<usize>,
    /// The Nix database to read (read-only).
    #[arg(long, default_value = narwhal_push::DEFAULT_DB)]
    pub store_db: PathBuf,
    /// Print a JSON summary on stdout (the shape is in the README, "JSON output").
    #[arg(long)]
    pub json: bool,
    /// Plain lines instead of a progress bar on a terminal.
    #[arg(long, env = "NARWHAL_NO_PROGRESS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_progress: bool,
}

/// A cache to write to.
#[derive(Debug, Args)]
pub struct DestArgs {
    /// Destination cache (file:///dir, /dir, s3://bucket, http(s)://host/path), with Nix's `compression` and `secret-key` parameters.
    #[arg(long, env = "NARWHAL_PUSH_TO")]
    pub to: String,
    /// File holding the Bearer token for an http(s):// cache (else $NARWHAL_PUSH_TOKEN, else netrc credentials).
    #[arg(long, env = "NARWHAL_PUSH_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Secret key to sign narinfos with (`name:base64`, as from `narwhal key generate`).
    #[arg(long, env = "NARWHAL_SECRET_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// NAR compression [default: the URL's ?compression=, else zstd].
    #[arg(long, value_parser = ["zstd", "xz", "none"])]
    pub compression: Option<String>,
    /// Compression level: zstd 1-22 (default 3), xz 0-9 (default 6); none takes no level.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=22))]
    pub level: Option<u32>,
}

#[derive(Debug, Clone, Args)]
#[allow(clippy::struct_excessive_bools)] // independent switches
pub struct ImageArgs {
    /// Store paths (or links to them, ./result) to put in the image with their closures; the first is
    /// the root of --entrypoint. With --from-export they may be left out: the export's last path is
    /// the root.
    #[arg(required_unless_present = "from_export", value_name = "ROOT")]
    pub roots: Vec<String>,
    /// Where the image goes: `oci:DIR[:TAG]` (an OCI image layout; created, or a tag added to it),
    /// `oci-archive:FILE[:TAG]` (that layout in a tar), `docker-archive:FILE[:[NAME:]TAG]` (what
    /// `docker load` reads; uncompressed layers) or `docker://HOST/REPO[:TAG]` (a registry: blobs
    /// it lacks, then the manifest).
    /// Required here or as `to` in narwhal.toml's `[image]` table.
    #[arg(long)]
    pub to: Option<String>,
    /// Registry credentials, `USER:PASSWORD` (else $NARWHAL_REGISTRY_CREDS, else the registry's entry in
    /// $REGISTRY_AUTH_FILE or ~/.docker/config.json).
    #[arg(long, env = "NARWHAL_REGISTRY_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    /// Speak plain HTTP to a registry that is not on loopback.
    #[arg(long)]
    pub insecure: bool,
    /// Binary caches to read the closure from (signatures checked); without one, the local Nix store.
    #[arg(long = "from", value_delimiter = ' ')]
    pub from: Vec<String>,
    /// Trusted public key (`name:base64`) for --from caches; repeat or separate with spaces.
    #[arg(long = "trusted-public-key", env = "NARWHAL_TRUSTED_PUBLIC_KEYS", value_delimiter = ' ')]
    pub trusted_public_keys: Vec<String>,
    /// Accept paths from --from caches without a valid signature (NAR hashes are still checked).
    #[arg(long)]
    pub no_verify: bool,
    /// Read the closure from a `nix-store --export` stream (a file, or `-` for standard input)
    /// instead of caches or the local store. Exports carry no signatures, so this needs --no-verify.
    #[arg(long, value_name = "FILE|-", conflicts_with = "from")]
    pub from_export: Option<String>,
    /// The image this one replaces (`oci:DIR[:TAG]` or `docker://HOST/REPO[:TAG]`): its layers that
    /// still hold only paths of this closure are kept as they were, so they keep their digests.
    /// Default: the image the destination's tag names now, when there is one.
    #[arg(long, value_name = "IMAGE")]
    pub previous: Option<String>,
    /// A base image whose layers go first, for a shell or CA certificates from elsewhere
    /// (`oci:DIR[:TAG]` or `docker://HOST/REPO[:TAG]`). Its Env (PATH after the roots' bin),
    /// ports and labels are kept; its Entrypoint, Cmd and WorkingDir when this image sets none.
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
    /// The program to run: relative to the first root (`bin/server`) or an absolute path in the closure.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Arguments (the image's Cmd); repeat for several.
    #[arg(long, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
    /// An environment variable, `NAME=VALUE`; repeat for several. PATH starts with the roots' bin.
    #[arg(long)]
    pub env: Vec<String>,
    /// The user the image runs as (non-root by default, as Heroku and most platforms run images)
    /// [default: 65534:65534].
    #[arg(long)]
    pub user: Option<String>,
    /// The working directory.
    #[arg(long)]
    pub workdir: Option<String>,
    /// A label, `KEY=VALUE`; repeat for several.
    #[arg(long)]
    pub label: Vec<String>,
    /// A port the image listens on, `PORT[/tcp|/udp]`; repeat for several.
    #[arg(long)]
    pub port: Vec<String>,
    /// The most layers, 1 to 125 (overlay mounts stop near 127) [default: 70].
    #[arg(long, value_parser = counted(1, narwhal_image::MAX_LAYERS as u64))]
    pub max_layers: Option<usize>,
    /// Layer compression (gzip is what every registry and client takes) [default: gzip].
    #[arg(long, value_parser = ["gzip", "zstd", "none"])]
    pub compression: Option<String>,
    /// Manifest format: `oci`, or `v2s2` (Docker's schema 2, which Heroku's registry requires)
    /// [default: oci].
    #[arg(long, value_parser = ["oci", "v2s2"])]
    pub format: Option<String>,
    /// The image's architecture (GOARCH names: amd64, arm64, …) [default: amd64].
    #[arg(long, value_parser = ["amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64"])]
    pub arch: Option<String>,
    /// The source revision, as the `org.opencontainers.image.revision` label.
    #[arg(long)]
    pub rev: Option<String>,
    /// The source repository URL, as the `org.opencontainers.image.source` label.
    #[arg(long = "source")]
    pub source_url: Option<String>,
    /// The image's creation time (RFC 3339); fixed by default, so that builds are reproducible.
    #[arg(long, default_value = "1970-01-01T00:00:01Z")]
    pub created: String,
    /// Layers built at once.
    #[arg(long, short = 'j', value_parser = counted(1, MAX_JOBS))]
    pub jobs: Option<usize>,
    /// The Nix database to read (read-only), without --from.
    #[arg(long, default_value = narwhal_push::DEFAULT_DB)]
    pub store_db: PathBuf,
    /// Print one JSON object on stdout (the manifest digest, each layer and what was sent) instead
    /// of the digest alone.
    #[arg(long)]
    pub json: bool,
    /// The narwhal.toml whose `[image]` table gives defaults for these flags [default:
    /// ./narwhal.toml when there is one].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Plain lines instead of progress bars on a terminal.
    #[arg(long, env = "NARWHAL_NO_PROGRESS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The cache: a directory (`/srv/cache`, `file:///srv/cache`), `s3://bucket[/prefix]?…`, or `local`.
    #[arg(long)]
    pub store: Option<String>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Secret key that signs every narinfo served; repeat for several.
    #[arg(long = "key-file")]
    pub key_files: Vec<PathBuf>,
    /// File of push tokens (one a line); without one, writes are refused. Repeat for several.
    #[arg(long = "push-token-file")]
    pub push_token_files: Vec<PathBuf>,
    /// File of read tokens; with one, reads need a read or a push token.
    #[arg(long = "read-token-file")]
    pub read_token_files: Vec<PathBuf>,
    /// TOML config file; flags given here override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Worker threads [default: the number of cores].
    #[arg(long, short = 'j', value_parser = counted(1, MAX_JOBS))]
    pub jobs: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum BuildpackCommand {
    /// Heroku's `bin/detect BUILD_DIR`.
    Detect {
        /// The app's source.
        build_dir: PathBuf,
    },
    /// Heroku's `bin/compile BUILD_DIR CACHE_DIR ENV_DIR`.
    Compile {
        /// The app's source, which becomes the slug.
        build_dir: PathBuf,
        /// Kept between builds (narwhal keeps downloaded NARs there).
        cache_dir: PathBuf,
        /// One file per config var.
        env_dir: PathBuf,
    },
    /// Heroku's `bin/release BUILD_DIR`.
    Release {
        /// The compiled app.
        build_dir: PathBuf,
    },
    /// Write the Cloud Native Buildpack into DIR: buildpack.toml, bin/narwhal (this binary) and
    /// bin/detect, bin/build linking to it.
    ///
    /// Example: `narwhal buildpack package-cnb ./cnb --image docker://registry.example.com/narwhal:0.1.0`
    PackageCnb {
        /// A new directory for the buildpack.
        dir: PathBuf,
        /// Also write it as a buildpack image (what `pack` and Fir's `project.toml` name).
        #[arg(long, value_name = "oci:DIR[:TAG]|docker://HOST/REPO[:TAG]")]
        image: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SlugArgs {
    /// Store paths (or links to them), `pin:<name>[@<revision>]`, or Hydra job URLs; the first becomes `result`.
    #[arg(required_unless_present = "from_export", value_name = "ROOT")]
    pub roots: Vec<String>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// The app directory that becomes the slug (Heroku's BUILD_DIR).
    #[arg(long)]
    pub app_dir: PathBuf,
    /// Where APP_DIR is at run time.
    #[arg(long, default_value = "/app")]
    pub runtime_root: String,
    /// Store prefix at run time; defaults to RUNTIME_ROOT/store (`/app/store`: 10 bytes, like /nix/store).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Pad a shorter prefix with '/'.
    #[arg(long)]
    pub pad: bool,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Store paths (`/nix/store/<hash>-<name>`, or links to them such as ./result),
    /// `pin:<name>[@<revision>]`, or Hydra job URLs.
    #[arg(required_unless_present = "from_export", value_name = "ROOT")]
    pub roots: Vec<String>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Directory to put the store paths in, as `<dir>/<hash>-<name>`.
    #[arg(long)]
    pub to: PathBuf,
    /// Rewrite the store directory to PREFIX (no longer than the store directory).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Pad a shorter PREFIX with '/' to the store directory's length.
    #[arg(long, requires = "prefix")]
    pub pad: bool,
    /// Print a JSON summary on stdout (the shape is in the README, "JSON output").
    #[arg(long)]
    pub json: bool,
}

/// Where closures come from, and how far to trust them.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Binary cache URL (file:///dir, /dir, http(s)://…); repeat or separate with spaces. Tried by priority.
    /// Without one, nix.conf's substituters.
    #[arg(long = "from", env = "NARWHAL_SUBSTITUTERS", value_delimiter = ' ')]
    pub from: Vec<String>,
    /// Deploy from a `nix-store --export` stream instead of caches (--from is then not used): a file,
    /// `-` for standard input, or `s3://bucket/key`. Exports carry no signatures, so this needs --no-verify;
    /// without roots, the export's last path is the root.
    #[arg(long, value_name = "FILE|s3://BUCKET/KEY")]
    pub from_export: Option<String>,
    /// Environment for opening an `s3://` export, before the process's (the buildpack's config vars).
    #[arg(skip)]
    pub s3_env: Vec<(String, String)>,
    /// Trusted public key (`name:base64`); repeat or separate with spaces. Without one, nix.conf's
    /// trusted-public-keys.
    #[arg(long = "trusted-public-key", env = "NARWHAL_TRUSTED_PUBLIC_KEYS", value_delimiter = ' ')]
    pub trusted_public_keys: Vec<String>,
    /// Accept paths without a valid signature by a trusted key (NAR hashes are still checked).
    #[arg(long)]
    pub no_verify: bool,
    /// Keep downloaded NARs here, keyed by hash, and reuse them on later runs.
    #[arg(long, env = "NARWHAL_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// After a successful fetch, remove the NARs in --cache-dir that this closure does not use.
    #[arg(long, requires = "cache_dir")]
    pub prune_cache: bool,
    /// Paths downloaded and unpacked at once.
    #[arg(long, short = 'j', env = "NARWHAL_JOBS", value_parser = counted(1, MAX_JOBS))]
    pub jobs: Option<usize>,
    /// Seconds to wait for a revision's pin that is not in the cache yet.
    #[arg(long, env = "NARWHAL_WAIT", default_value_t = 0)]
    pub wait: u64,
    /// Never draw progress bars.
    #[arg(long, env = "NARWHAL_NO_PROGRESS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum NarCommand {
    /// Write the NAR of PATH to standard output (like `nix-store --dump`).
    #[command(after_help = "Example:\n  narwhal nar dump ./result > app.nar")]
    Dump {
        /// File, directory or symlink to serialise.
        path: PathBuf,
    },
    /// Unpack a NAR into DIR, which must not exist yet (like `nix-store --restore`).
    ///
    /// The archive is checked strictly and unpacked under a temporary name
    /// beside DIR; DIR appears only once everything is in place.
    #[command(after_help = "Example:\n  narwhal nar unpack app.nar ./app")]
    Unpack {
        /// NAR file, or `-` for standard input.
        nar: PathBuf,
        /// Destination; must not exist.
        dir: PathBuf,
    },
    /// List the entries of a NAR (like `nix nar ls`).
    #[command(after_help = "Example:\n  narwhal nar ls app.nar /bin -l")]
    Ls {
        /// NAR file, or `-` for standard input.
        nar: PathBuf,
        /// Path inside the archive.
        #[arg(default_value = "/")]
        path: String,
        /// List directories recursively.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Show type, permissions and size.
        #[arg(short, long)]
        long: bool,
        /// Print the `.ls` document a binary cache serves beside the NAR (no trailing newline).
        #[arg(long, conflicts_with_all = ["long", "recursive"])]
        json: bool,
    },
    /// Print the contents of a regular file inside a NAR (like `nix nar cat`).
    #[command(after_help = "Example:\n  narwhal nar cat app.nar /bin/hello > hello")]
    Cat {
        /// NAR file, or `-` for standard input.
        nar: PathBuf,
        /// Path of the file inside the archive, such as `/bin/hello`.
        path: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HashAlgo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // mirrors `nix hash`'s flags
pub struct HashFormat {
    /// Hash algorithm.
    #[arg(long = "type", value_enum, default_value = "sha256")]
    pub algo: HashAlgo,
    /// Print the digest in nix32 (Nix's base-32).
    #[arg(long, alias = "nix32", group = "format")]
    pub base32: bool,
    /// Print the digest in base16 (hex).
    #[arg(long, group = "format")]
    pub base16: bool,
    /// Print the digest in base64.
    #[arg(long, group = "format")]
    pub base64: bool,
    /// Print the hash in SRI form (the default).
    #[arg(long, group = "format")]
    pub sri: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Encoding {
    Sri,
    Nix32,
    Base16,
    Base64,
}

#[derive(Debug, Subcommand)]
pub enum HashCommand {
    /// Hash the NAR serialisation of each PATH (like `nix hash path`).
    #[command(after_help = "Example:\n  narwhal hash path ./src --base32")]
    Path {
        /// Files, directories or symlinks; each is hashed as `nix-store --dump` would serialise it.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        format: HashFormat,
    },
    /// Hash the contents of each FILE (like `nix hash file`).
    #[command(after_help = "Example:\n  narwhal hash file source.tar.gz --type sha512")]
    File {
        /// Regular files; their contents are hashed as they are.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        format: HashFormat,
    },
    /// Print a hash in another encoding.
    #[command(
        after_help = "Example:\n  narwhal hash convert sha256-LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564= --to nix32"
    )]
    Convert {
        /// `sha256-…`, `sha256:…`, or a bare digest with --type.
        #[arg(required = true, value_name = "HASH")]
        hashes: Vec<String>,
        /// Target encoding.
        #[arg(long, value_enum, default_value = "sri")]
        to: Encoding,
        /// Algorithm of bare digests.
        #[arg(long = "type", value_enum)]
        algo: Option<HashAlgo>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an ed25519 key pair in Nix's format (like `nix-store --generate-binary-cache-key`).
    #[command(
        after_help = "Example:\n  narwhal key generate cache.example.org-1 --secret cache.sec --public cache.pub"
    )]
    Generate {
        /// Key name, conventionally the cache's host name and a number: `cache.example.org-1`.
        name: String,
        /// Where to write the secret key (created with mode 0600).
        #[arg(long)]
        secret: PathBuf,
        /// Where to write the public key.
        #[arg(long)]
        public: PathBuf,
    },
    /// Print the public key of a secret key file.
    #[command(after_help = "Example:\n  narwhal key public cache.sec")]
    Public {
        /// Secret key file.
        secret: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum NarinfoCommand {
    /// Add a signature to narinfo files, in place.
    #[command(after_help = "Example:\n  narwhal narinfo sign --key-file cache.sec /srv/cache/*.narinfo")]
    Sign {
        /// Secret key file (`name:base64`).
        #[arg(long, env = "NARWHAL_SECRET_KEY_FILE")]
        key_file: PathBuf,
        /// Store directory of the paths they describe.
        #[arg(long, default_value = "/nix/store")]
        store_dir: String,
        /// The narinfo files, each rewritten atomically with the new signature.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Check that each narinfo parses and carries a valid signature by a trusted key.
    #[command(
        after_help = "Example:\n  narwhal narinfo verify --trusted-public-key \"$(cat cache.pub)\" /srv/cache/*.narinfo"
    )]
    Verify {
        /// A trusted public key (`name:base64`); repeat for several.
        #[arg(long = "trusted-public-key", required = true)]
        keys: Vec<String>,
        /// Store directory of the paths they describe.
        #[arg(long, default_value = "/nix/store")]
        store_dir: String,
        /// The narinfo files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum FodCommand {
    /// Lay out Gradle's cache (GRADLE_USER_HOME/caches/modules-2) as a Maven repository in OUT.
    ///
    /// Jars, poms, .module files and cached maven-metadata.xml listings, each checked against the
    /// SHA-1 Gradle recorded; Gradle's locks and indexes are left out. Prints OUT's outputHash and
    /// the attributes to paste into the fixed-output derivation.
    #[command(after_help = "Example:\n  narwhal fod gradle ./gradle-home ./deps --init-script ./narwhal.gradle")]
    Gradle {
        /// The Gradle user home the capturing build used (`gradle -g DIR`; default ~/.gradle).
        gradle_user_home: PathBuf,
        /// The repository to create (it must not exist).
        out: PathBuf,
        /// Also write an init script that pins every repository of the offline build to
        /// $NARWHAL_FOD_REPO (set it to the derivation's path): `gradle --offline --init-script FILE`.
        #[arg(long)]
        init_script: Option<PathBuf>,
    },
    /// Lay out Maven's local repository in OUT without its records of the capture.
    ///
    /// Drops _remote.repositories, *.lastUpdated and resolver-status.properties; cached listings
    /// become maven-metadata-local.xml. Build offline with `mvn -o -Dmaven.repo.local=OUT`.
    #[command(after_help = "Example:\n  narwhal fod maven ./m2 ./deps")]
    Maven {
        /// Maven's local repository (default ~/.m2/repository).
        m2_repo: PathBuf,
        /// The repository to create (it must not exist).
        out: PathBuf,
    },
    /// Report what in DIR would make a fixed-output derivation fail (store path references,
    /// special files) or its hash drift (timestamps, host names, volatile files, permissions).
    ///
    /// Exits 3 when something would make it fail.
    #[command(after_help = "Example:\n  narwhal fod check ./deps")]
    Check {
        /// The tree to check, such as a captured repository.
        dir: PathBuf,
    },
}

/// A duration as `30d`, `6h`, `90m` or `0s`.
fn duration(text: &str) -> Result<std::time::Duration, String> {
    narwhal_gc::duration::parse(text)
}

#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)]
pub struct GcArgs {
    /// More roots: store paths (or hash parts) kept with their closures.
    pub paths: Vec<String>,
    /// The cache: file:///dir, /dir or s3://bucket[/prefix] (for `narwhal serve`, what it serves).
    #[arg(long = "in")]
    pub cache: String,
    /// Narinfos written more recently than this are roots.
    #[arg(long, default_value = "30d", value_parser = duration)]
    pub keep_since: std::time::Duration,
    /// Everything written more recently is kept (pushes in flight); phase 2 comes this long after phase 1.
    #[arg(long, default_value = "6h", value_parser = duration)]
    pub grace: std::time::Duration,
    /// A NAR no narinfo names is deleted only this long after (Nix caches narinfos for 30 days).
    #[arg(long, default_value = "30d", value_parser = duration)]
    pub nar_delay: std::time::Duration,
    /// Keep only the N newest revision pins (NAME@REV) of each name; the others are deleted first.
    #[arg(long, value_parser = counted(1, 100_000))]
    pub keep: Option<usize>,
    /// Keep revision pins created within this many days (with --keep, either rule keeps a pin).
    #[arg(long, value_parser = counted(0, 36_500))]
    pub keep_days: Option<usize>,
    /// Run only phase 1 (publish the candidates) or phase 2 (delete them, waiting for the grace period).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub phase: Option<u8>,
    /// Delete nothing: list what would go, the bytes freed, and what each pin keeps.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Requests at once.
    #[arg(long, short = 'j', value_parser = counted(1, MAX_JOBS))]
    pub jobs: Option<usize>,
    /// Keep the index of narinfos here (default $XDG_CACHE_HOME/narwhal, else ~/.cache/narwhal).
    #[arg(long, env = "NARWHAL_GC_INDEX")]
    pub index_dir: Option<PathBuf>,
    /// Read every narinfo, keeping no index.
    #[arg(long)]
    pub no_index: bool,
    /// How long the lease lasts unless renewed (a GC killed holds the cache this long at most).
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub lease: std::time::Duration,
    /// Never draw progress bars.
    #[arg(long, env = "NARWHAL_NO_PROGRESS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)]
pub struct VerifyArgs {
    /// With --in: store paths (or hash parts) to check, else every narinfo. Without: one deployed directory.
    pub targets: Vec<String>,
    /// The cache to check (file:///dir, /dir, s3://bucket, http(s)://… with PATHs).
    #[arg(long = "in")]
    pub cache: Option<String>,
    /// Trusted public key (`name:base64`); without one, signatures are not checked.
    #[arg(long = "trusted-public-key", env = "NARWHAL_TRUSTED_PUBLIC_KEYS", value_delimiter = ' ')]
    pub trusted_public_keys: Vec<String>,
    /// Also decompress each NAR and check NarSize and NarHash.
    #[arg(long, requires = "cache")]
    pub contents: bool,
    /// Fetch missing or damaged NARs again from --from, checked against the narinfo.
    #[arg(long, requires = "from")]
    pub repair: bool,
    /// The cache to repair from.
    #[arg(long, requires = "repair")]
    pub from: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Paths checked at once.
    #[arg(long, short = 'j', value_parser = counted(1, MAX_JOBS))]
    pub jobs: Option<usize>,
    /// Never draw progress bars.
    #[arg(long, env = "NARWHAL_NO_PROGRESS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_progress: bool,
}

/// A pin name, checked as the cache checks it.
fn pin_name(s: &str) -> Result<String, String> {
    narwhal_store::pin::check_name(s).map(|()| s.to_owned()).map_err(|e| e.to_string())
}

/// A pin revision, checked as the cache checks it.
fn pin_revision(s: &str) -> Result<String, String> {
    narwhal_store::pin::check_revision(s).map(|()| s.to_owned()).map_err(|e| e.to_string())
}

impl DestArgs {
    /// Refuses a `--level` that `--compression` (else the URL's `?compression=`, else zstd) does
    /// not take, as clap refuses any other bad value.
    pub fn check(&self) -> Result<(), clap::Error> {
        let Some(level) = self.level else { return Ok(()) };
        let from_url =
            narwhal_store::CacheUrl::parse(&self.to).ok().and_then(|u| u.param("compression").map(str::to_owned));
        let compression = match self.compression.clone().or(from_url).as_deref() {
            Some("xz") => narwhal_push::PushCompression::Xz,
            Some("none") => narwhal_push::PushCompression::None,
            _ => narwhal_push::PushCompression::Zstd,
        };
        compression.check_level(Some(level)).map_err(|e| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value '{level}' for '--level <LEVEL>': {e}\n"),
            )
        })
    }
}

impl Cli {
    /// The checks clap cannot express, reported as clap reports its own (exit status 2).
    pub fn check(&self) -> Result<(), clap::Error> {
        match &self.command {
            Command::Push(args) => args.dest.check(),
            Command::Import { dest, .. } => dest.check(),
            _ => Ok(()),
        }
    }
}
