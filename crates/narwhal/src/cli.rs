//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The most paths (or server threads) worked on at once: each costs a few threads and MiB.
const MAX_JOBS: u64 = 256;

/// A count between `min` and `max`, checked by clap (which names the range in its error).
fn counted(min: u64, max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(min..=max)
}

/// Ship Nix closures to machines that cannot run Nix.
#[derive(Debug, Parser)]
#[command(
    name = "narwhal",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Exit status: 0 success; 1 the command failed (its input or environment: the error line says \
                  why); 2 the command line is wrong; 3 verification failed (a signature or a hash did not \
                  match: nothing unverified was used); 70 internal error (a bug: please report it)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
    Fetch(FetchArgs),
    /// Assemble a Heroku-style slug: fetch relocated into APP_DIR/store, `result` links,
    /// `.profile.d/narwhal.sh`, `.slugexclude` pruning, checks and a size report.
    Slug(SlugArgs),
    /// Copy the closures of store paths from the local Nix store to a cache, signed and compressed.
    ///
    /// Skips what the cache has; uploads each NAR, then its narinfo, and a narinfo
    /// only after the narinfos of all its references. Works as a Nix
    /// post-build-hook: with no PATH, it pushes $OUT_PATHS.
    Push(PushArgs),
    /// List the paths of the closures of store paths that a cache lacks.
    Missing {
        /// Store paths in the local Nix store.
        #[arg(required = true)]
        paths: Vec<String>,
        /// The cache to ask.
        #[arg(long = "in")]
        cache: String,
    },
    /// Point NAME (and NAME@REV) at a store path already in the cache.
    Pin {
        name: String,
        store_path: String,
        /// The cache to write the pin into.
        #[arg(long)]
        to: String,
        /// Also pin this revision (a git commit), as `pins/NAME@REV`.
        #[arg(long)]
        rev: Option<String>,
        /// Keep only the N most recent revision pins of NAME (older ones are deleted; their paths are not).
        #[arg(long, value_parser = counted(1, 100_000))]
        keep: Option<usize>,
    },
    /// Write the closures of store paths to standard output in `nix-store --export` format.
    Export {
        #[arg(required = true)]
        paths: Vec<String>,
        /// Write to this S3 object (`s3://bucket/key`, with the cache URL's parameters) instead of stdout.
        #[arg(long, short = 'o')]
        output: Option<String>,
    },
    /// Put the paths of a `nix-store --export` file into a cache, signed and compressed.
    Import {
        /// Export file, `-` for standard input, or an S3 object (`s3://bucket/key`).
        file: PathBuf,
        #[command(flatten)]
        dest: DestArgs,
    },
    /// List the pins in a cache: name, revision, store path, time.
    Pins {
        /// The cache (file:///dir, /dir, s3://bucket).
        #[arg(long)]
        from: String,
        /// Only the pins of this name.
        name: Option<String>,
    },
    /// Build an OCI image of closures, from binary caches or the local Nix store: no Docker, no Nix.
    ///
    /// Layers are tars written straight from the NARs (no unpacking), reproducible byte for byte;
    /// each root and each path of at least 1 MiB gets a layer of its own, smaller paths share a few
    /// (chosen by store path hash, so unchanged paths keep their layers' digests across versions).
    /// Example: `narwhal image ./result --entrypoint bin/server --port 5000 --to oci:/tmp/app:latest`.
    Image(Box<ImageArgs>),
    /// Serve a binary cache over HTTP: a directory, an S3 bucket, or this machine's Nix store.
    ///
    /// Answers Nix's and narwhal's requests (nix-cache-info, narinfos signed with
    /// --key-file, NARs with byte ranges, listings, logs, pins). With push tokens it
    /// takes PUTs from `nix copy --to http://…` and `narwhal push`, storing a narinfo
    /// only once its NAR is there and matches it. Logs a line per request on stderr
    /// (NARWHAL_LOG=warn to quiet it); stops gracefully on SIGINT or SIGTERM.
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
    Gc(GcArgs),
    /// Check a cache (signatures, NARs, references), or a deployed directory against its manifest.
    ///
    /// `verify --in URL [PATH...]` checks every narinfo (or those of PATHs); `--repair --from URL`
    /// fetches missing or damaged NARs again. `verify DIR` checks each path of a fetched tree, a
    /// slug or a CNB workspace against the relocated NAR hash in its manifest. Exit status 3 when
    /// anything is wrong.
    Verify(VerifyArgs),
    /// The buildpack phases (bin/detect, bin/compile and bin/release call these).
    #[command(subcommand, hide = true)]
    Buildpack(BuildpackCommand),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Store paths to push with their closures; defaults to $OUT_PATHS (space-separated) for post-build-hooks.
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
    /// NAR compression.
    #[arg(long, value_parser = ["zstd", "xz", "none"])]
    pub compression: Option<String>,
    /// Compression level (zstd 1-22, default 3; xz 0-9, default 6).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=22))]
    pub level: Option<u32>,
}

#[derive(Debug, Clone, Args)]
#[allow(clippy::struct_excessive_bools)] // independent switches
pub struct ImageArgs {
    /// Store paths to put in the image with their closures; the first is the root of --entrypoint.
    /// With --from-export they may be left out: the export's last path is the root.
    #[arg(required_unless_present = "from_export")]
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
    #[arg(long)]
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
    Detect { build_dir: PathBuf },
    /// Heroku's `bin/compile BUILD_DIR CACHE_DIR ENV_DIR`.
    Compile { build_dir: PathBuf, cache_dir: PathBuf, env_dir: PathBuf },
    /// Heroku's `bin/release BUILD_DIR`.
    Release { build_dir: PathBuf },
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
    /// Store paths, `pin:<name>[@<revision>]`, or Hydra job URLs; the first becomes `result`.
    #[arg(required_unless_present = "from_export")]
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
    /// Store paths (`/nix/store/<hash>-<name>`), `pin:<name>[@<revision>]`, or Hydra job URLs.
    #[arg(required_unless_present = "from_export")]
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
}

/// Where closures come from, and how far to trust them.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Binary cache URL (file:///dir, /dir, http(s)://…); repeat or separate with spaces. Tried by priority.
    #[arg(long = "from", env = "NARWHAL_SUBSTITUTERS", value_delimiter = ' ', required_unless_present = "from_export")]
    pub from: Vec<String>,
    /// Deploy from a `nix-store --export` stream instead of caches (--from is then not used): a file,
    /// `-` for standard input, or `s3://bucket/key`. Exports carry no signatures, so this needs --no-verify;
    /// without roots, the export's last path is the root.
    #[arg(long, value_name = "FILE|s3://BUCKET/KEY")]
    pub from_export: Option<String>,
    /// Environment for opening an `s3://` export, before the process's (the buildpack's config vars).
    #[arg(skip)]
    pub s3_env: Vec<(String, String)>,
    /// Trusted public key (`name:base64`), as in nix.conf's trusted-public-keys; repeat or separate with spaces.
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
    Dump {
        /// File, directory or symlink to serialise.
        path: PathBuf,
    },
    /// Unpack a NAR into DIR, which must not exist yet (like `nix-store --restore`).
    ///
    /// The archive is checked strictly and unpacked under a temporary name
    /// beside DIR; DIR appears only once everything is in place.
    Unpack {
        /// NAR file, or `-` for standard input.
        nar: PathBuf,
        /// Destination; must not exist.
        dir: PathBuf,
    },
    /// List the entries of a NAR (like `nix nar ls`).
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
    Path {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        format: HashFormat,
    },
    /// Hash the contents of each FILE (like `nix hash file`).
    File {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        format: HashFormat,
    },
    /// Print a hash in another encoding.
    Convert {
        /// `sha256-…`, `sha256:…`, or a bare digest with --type.
        #[arg(required = true)]
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
    Public {
        /// Secret key file.
        secret: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum NarinfoCommand {
    /// Add a signature to narinfo files, in place.
    Sign {
        /// Secret key file (`name:base64`).
        #[arg(long, env = "NARWHAL_SECRET_KEY_FILE")]
        key_file: PathBuf,
        /// Store directory of the paths they describe.
        #[arg(long, default_value = "/nix/store")]
        store_dir: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check that each narinfo parses and carries a valid signature by a trusted key.
    Verify {
        /// A trusted public key (`name:base64`); repeat for several.
        #[arg(long = "trusted-public-key", required = true)]
        keys: Vec<String>,
        /// Store directory of the paths they describe.
        #[arg(long, default_value = "/nix/store")]
        store_dir: String,
        #[arg(required = true)]
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
    Maven {
        /// Maven's local repository (default ~/.m2/repository).
        m2_repo: PathBuf,
        /// The repository to create (it must not exist).
        out: PathBuf,
    },
    /// Report what in DIR would make a fixed-output derivation fail (store path references,
    /// special files) or its hash drift (timestamps, host names, volatile files, permissions).
    ///
    /// Exits 1 when something would make it fail.
    Check { dir: PathBuf },
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
