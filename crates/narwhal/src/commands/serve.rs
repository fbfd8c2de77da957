//! `narwhal serve`: config file and flags into a `narwhal_serve::State`, then the server.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use narwhal_serve::backend::{store_dir_of, Backend};
use narwhal_serve::config::{self, Config, ConfigError};
use narwhal_serve::local::{Local, DEFAULT_LOG_DIR};
use narwhal_serve::{metrics::Metrics, State, Tokens};
use narwhal_store::{file::FileCache, CacheUrl, CacheWriter, Location};

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(path) => {
            let (cfg, warnings) = Config::load(path)?;
            for w in warnings {
                crate::output::eprint_line(&format!("warning: {w}"));
            }
            cfg
        }
        None => Config::default(),
    };
    if args.store.is_some() {
        cfg.store = args.store;
    }
    if args.listen.is_some() {
        cfg.listen = args.listen;
    }
    cfg.key_files.extend(args.key_files);
    cfg.push_token_files.extend(args.push_token_files);
    cfg.read_token_files.extend(args.read_token_files);
    init_logging();

    let store = cfg.store.clone().ok_or(ConfigError::NoStore)?;
    let (backend, store_dir) = open_backend(&store, &cfg)?;
    let state = Arc::new(State {
        backend,
        store_dir,
        keys: config::read_keys(&cfg.key_files)?,
        tokens: Tokens::new(&config::read_tokens(&cfg.push_token_files)?, &config::read_tokens(&cfg.read_token_files)?),
        metrics: Metrics::default(),
        priority: cfg.priority.unwrap_or(config::DEFAULT_PRIORITY),
        temp_dir: cfg.temp_dir.clone().unwrap_or_else(std::env::temp_dir),
        max_upload_bytes: cfg.max_upload_bytes.unwrap_or(config::DEFAULT_MAX_UPLOAD),
    });
    let listen = cfg.listen.unwrap_or_else(|| config::DEFAULT_LISTEN.parse().expect("a valid default address"));

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.jobs {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime.enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr().context("cannot read the listening address")?;
        #[allow(clippy::print_stderr)]
        {
            eprintln!("narwhal serve: serving {store} on http://{addr}");
        }
        narwhal_serve::serve(listener, state, shutdown_signal()).await.context("the server failed")
    })
}

/// Opens the cache to serve and finds its store directory.
fn open_backend(store: &str, cfg: &Config) -> anyhow::Result<(Backend, narwhal_formats::store_path::StoreDir)> {
    if store == "local" {
        let db = cfg.local_db.clone().unwrap_or_else(|| PathBuf::from(narwhal_localstore::DEFAULT_DB));
        let store_dir = narwhal_formats::store_path::StoreDir::default();
        let real = PathBuf::from(store_dir.as_str());
        let local = Local::open(&db, store_dir.clone(), real, PathBuf::from(DEFAULT_LOG_DIR))?;
        return Ok((Backend::Local(Arc::new(local)), store_dir));
    }
    let url = CacheUrl::parse(store)?;
    let writer: Arc<dyn CacheWriter> = match &url.location {
        Location::File(dir) => {
            if !dir.is_dir() {
                anyhow::bail!("the cache directory {} does not exist; create it, or push to it first", dir.display());
            }
            if cfg.push_token_files.is_empty() {
                Arc::new(FileCache::new(dir.clone(), url.to_string()))
            } else {
                // Writes share the directory's lock with pushes, so none sweeps an upload in progress.
                Arc::new(FileCache::writer(
                    dir.clone(),
                    url.to_string(),
                    "narwhal serve",
                    crate::settings::store()?.lock_wait,
                )?)
            }
        }
        Location::S3 { .. } => Arc::from(narwhal_store::open_writer(&url, &crate::settings::store()?)?),
        Location::Http(_) => anyhow::bail!("narwhal serve serves a directory, an S3 bucket or `local`, not {store}"),
    };
    let info = writer.get(narwhal_store::keys::CACHE_INFO).with_context(|| format!("cannot read the cache {store}"))?;
    let store_dir = store_dir_of(info.as_deref()).map_err(|e| anyhow::anyhow!("{store}: {e}"))?;
    let backend = match &url.location {
        Location::File(dir) => {
            Backend::dir(dir.clone(), writer).with_context(|| format!("cannot open the cache directory {store}"))?
        }
        _ => Backend::Remote(writer),
    };
    Ok((backend, store_dir))
}

/// Request logs on stderr; `NARWHAL_LOG` sets the level (error, warn, info, debug, trace; default info).
fn init_logging() {
    let level = std::env::var("NARWHAL_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
