//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Ship Nix closures to machines that cannot run Nix.
#[derive(Debug, Parser)]
#[command(name = "narwhal", version, about, propagate_version = true, max_term_width = 100)]
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
