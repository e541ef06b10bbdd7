//! `chaperone up`, `chaperone init` and `chaperone server`: running a server.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use chaperone_core::Clock;
use chaperone_crypto::UnsealKey;
use chaperone_crypto::shamir;
use chaperone_crypto::token::ApiToken;
use chaperone_server::{AppState, ServeOptions, Settings, SystemClock, TlsCertificate};
use chaperone_store::{DatabaseUrl, SealConfig, Store, StoreError};

use crate::config::{Config, Layers, LogFormat};

/// `chaperone up`.
#[derive(clap::Args, Debug)]
pub(crate) struct UpArgs {
    /// Data directory: database, unseal key and admin token.
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "CHAPERONE_LISTEN", default_value = "127.0.0.1:8420")]
    listen: SocketAddr,
    /// Serve HTTPS with a self-signed certificate for localhost, made in the data directory
    /// on first use (tls.crt, tls.key); its fingerprint is printed.
    #[arg(long)]
    tls: bool,
}

/// `chaperone init`.
#[derive(clap::Args, Debug)]
pub(crate) struct InitArgs {
    /// Number of unseal shares to make.
    #[arg(long, default_value_t = 5)]
    shares: u8,
    /// Number of shares needed to unseal.
    #[arg(long, default_value_t = 3)]
    threshold: u8,
    /// Configuration file (for `database_url`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Database URL; overrides the file and CHAPERONE_DATABASE_URL.
    #[arg(long)]
    database_url: Option<String>,
}

/// `chaperone server`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServerArgs {
    /// Configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on; overrides the file and CHAPERONE_LISTEN.
    #[arg(long)]
    listen: Option<String>,
    /// Database URL; overrides the file and CHAPERONE_DATABASE_URL.
    #[arg(long)]
    database_url: Option<String>,
}

const EVALUATION_WARNING: &str = "\
WARNING: the unseal key is stored beside the data it protects, so anyone who can read
the data directory can read every secret. This set-up is for evaluation only. For
production, use `chaperone init` (Shamir shares held by people) and `chaperone server`.";

pub(crate) fn up(args: UpArgs) -> anyhow::Result<()> {
    keep_memory_private()?;
    let format = match std::env::var("CHAPERONE_LOG_FORMAT").as_deref() {
        Err(_) | Ok("text") => LogFormat::Text,
        Ok("json") => LogFormat::Json,
        Ok(other) => bail!("CHAPERONE_LOG_FORMAT is {other:?}; use text or json"),
    };
    init_logging(
        std::env::var("CHAPERONE_LOG").as_deref().unwrap_or("info"),
        format,
    )?;
    crate::config::check_transport(args.listen, args.tls, false)?;
    runtime()?.block_on(async {
        create_private_dir(&args.data)?;
        check_private_dir(&args.data)?;
        let tls = if args.tls {
            let (cert, key) = (args.data.join("tls.crt"), args.data.join("tls.key"));
            chaperone_server::ensure_self_signed(&cert, &key)?;
            Some((cert, key))
        } else {
            None
        };
        let options = serve_options(ServeOptions::default(), tls.as_ref())?;
        let database = args.data.join("chaperone.db");
        let key_path = args.data.join("unseal.key");
        let token_path = args.data.join("admin.token");
        // A key file without its database: the database was moved or deleted (or a restore
        // stopped halfway). Starting anew would write a new key over the one that opens it
        // and its backups.
        if !database.exists() && std::fs::symlink_metadata(&key_path).is_ok() {
            bail!(
                "{} holds unseal.key but no chaperone.db: the database was moved or deleted. \
                 Put it back, or move unseal.key elsewhere (it opens that database and its \
                 backups) to start a new instance here",
                args.data.display()
            );
        }
        let store = Store::connect(&DatabaseUrl::sqlite_file(&database)).await?;
        let clock = SystemClock;
        let keyring = store.keyring().await?;
        if let Some(record) = &keyring
            && matches!(record.seal, SealConfig::Shamir { .. })
        {
            bail!(
                "the database in {} was made by `chaperone init` and unseals with shares, not \
                 a key file: run it with `chaperone server --config FILE`, then `chaperone \
                 unseal`",
                args.data.display()
            );
        }
        let first_run = keyring.is_none();
        let key = if first_run {
            // The key and the token reach their files (synced) before the database refers
            // to them; an interrupted first run is simply repeated.
            let key = UnsealKey::generate();
            let token = ApiToken::generate();
            // A key file left by a first run that stopped before the database was
            // initialised is kept aside, never written over.
            if std::fs::symlink_metadata(&key_path).is_ok() {
                let aside = args.data.join(format!(
                    "unseal.key.replaced-{}",
                    clock.now().unix_secs()
                ));
                std::fs::rename(&key_path, &aside)
                    .with_context(|| format!("cannot move {} aside", key_path.display()))?;
                tracing::warn!(kept = %aside.display(), "an unseal key without an initialised database was kept aside");
            }
            write_private(&key_path, key.to_text().as_bytes())?;
            write_private(&token_path, format!("{}\n", token.expose()).as_bytes())?;
            chaperone_server::initialize(
                &store,
                &key,
                SealConfig::KeyFile,
                &[],
                &token,
                clock.now(),
            )
            .await?;
            key
        } else {
            // Created 0600; loosened since, anyone on the machine could read every secret.
            warn_if_others_may_read(&key_path, "the unseal key");
            warn_if_others_may_read(&token_path, "the admin token");
            let text =
                zeroize::Zeroizing::new(std::fs::read_to_string(&key_path).with_context(|| {
                    format!(
                        "the database in {} is initialised but its unseal key {} cannot be read",
                        args.data.display(),
                        key_path.display()
                    )
                })?);
            UnsealKey::from_text(&text)
                .with_context(|| format!("reading {}", key_path.display()))?
        };
        let settings = Settings {
            // Without TLS, only addresses and localhost (DNS rebinding).
            allowed_hosts: (!args.tls).then(Vec::new),
            ..Settings::default()
        };
        let state = Arc::new(AppState::new(store.clone(), Arc::new(clock), settings));
        state.unseal_with_key(&key).await?;
        drop(key);
        let listener = bind(args.listen).await?;
        let addr = listener.local_addr()?;
        let mut out = std::io::stdout().lock();
        if first_run {
            writeln!(
                out,
                "Initialised a new Chaperone in {}/",
                args.data.display()
            )?;
            writeln!(out, "  created the SQLite database  {}", database.display())?;
            writeln!(
                out,
                "  generated the root key; wrote the unseal key to {} (mode 0600)",
                key_path.display()
            )?;
            writeln!(
                out,
                "  wrote an admin API token to {} (mode 0600)",
                token_path.display()
            )?;
        } else {
            writeln!(
                out,
                "Opened {}/ and unsealed it with {}",
                args.data.display(),
                key_path.display()
            )?;
        }
        writeln!(out, "\n{EVALUATION_WARNING}\n")?;
        writeln!(out, "Try it:")?;
        if token_path.exists() {
            writeln!(
                out,
                "  export CHAPERONE_TOKEN=$(cat {})",
                token_path.display()
            )?;
        } else {
            // A restored directory: the token is not part of a backup (it stays where it
            // was written), and the initial admin token of the original still works.
            writeln!(
                out,
                "  export CHAPERONE_TOKEN=...   # the admin token of the data this was \
                 restored from ({} is not in a backup)",
                token_path.display()
            )?;
        }
        // The CLI's default address is 127.0.0.1:8420; any other is said (with TLS, below).
        if options.tls.is_none() && addr.to_string() != "127.0.0.1:8420" {
            writeln!(out, "  export CHAPERONE_ADDR=http://{addr}")?;
        }
        writeln!(
            out,
            "  chaperone secret put team/db password=-   # reads the value from stdin"
        )?;
        writeln!(out, "  chaperone secret get team/db\n")?;
        if let Some(certificate) = &options.tls {
            let cert = tls.as_ref().map(|(cert, _)| cert.display().to_string());
            writeln!(
                out,
                "TLS certificate {} (self-signed for localhost)\n  SHA-256 fingerprint {}\n  \
                 export CHAPERONE_CACERT={}",
                cert.as_deref().unwrap_or_default(),
                certificate.fingerprint(),
                cert.as_deref().unwrap_or_default(),
            )?;
            writeln!(
                out,
                "  export CHAPERONE_ADDR=https://localhost:{}\n",
                addr.port()
            )?;
        }
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        writeln!(
            out,
            "Listening on {scheme}://{addr} (unsealed). Stop with Ctrl-C."
        )?;
        out.flush()?;
        drop(out);
        chaperone_server::serve_with(listener, state, options, shutdown_signal()).await?;
        store.close().await;
        Ok(())
    })
}

pub(crate) fn init(args: InitArgs) -> anyhow::Result<()> {
    let layers = Layers::load(
        args.config.as_deref(),
        &[("database_url", "--database-url", args.database_url)],
    )?;
    let config = layers.validate()?;
    // Bad parameters are refused before the database is created or migrated.
    shamir::check_split(args.shares, args.threshold)?;
    init_logging(&config.log_level, config.log_format)?;
    warn_of_readable_config(&layers);
    runtime()?.block_on(async {
        let store = Store::connect(&config.database_url).await?;
        if store.keyring().await?.is_some() {
            bail!("{} is already initialised", config.database_url.redacted());
        }
        let key = UnsealKey::generate();
        let shares = shamir::split(key.expose(), args.shares, args.threshold)?;
        let token = ApiToken::generate();
        let seal = SealConfig::Shamir {
            shares: args.shares,
            threshold: args.threshold,
        };
        // The shares and the token are written out (and flushed) before anything is
        // stored: a database initialised with shares nobody received could never be
        // unsealed, and could not be initialised again either.
        // Sized once, so that no copy of the shares is left behind by a reallocation.
        let mut text = zeroize::Zeroizing::new(String::with_capacity(64 * 1024));
        text.push_str(&format!(
            "The unseal key was split into {} shares; any {} of them unseal the server.\n\
             Give each share to a different person. They are shown only now and stored nowhere.\n\n",
            args.shares, args.threshold
        ));
        for share in &shares {
            let line = format!("Unseal share {}: {}\n", share.index(), share.to_text().as_str());
            text.push_str(&zeroize::Zeroizing::new(line));
        }
        let line = format!("\nInitial admin token: {}\n", token.expose());
        text.push_str(&zeroize::Zeroizing::new(line));
        text.push_str("(shown once; the server keeps only its hash)\n\n");
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .context("cannot write the shares out: nothing was initialised")?;
        let done =
            chaperone_server::initialize(&store, &key, seal, &shares, &token, SystemClock.now())
                .await;
        // The keyring, the token and the ledger's signing key are stored in one transaction;
        // an error after its commit (a lost connection) still leaves them stored, and then
        // these shares are the ones.
        let stored = done.is_err() && matches!(store.keyring().await, Ok(Some(_)));
        store.close().await;
        match done {
            Ok(()) => {}
            Err(StoreError::AlreadyInitialized) => bail!(
                "{} was initialised by someone else meanwhile: the shares and token above \
                 are void, discard them",
                config.database_url.redacted()
            ),
            Err(other) if stored => eprintln!(
                "warning: initialising reported an error ({other}), but the keyring is stored: \
                 the shares and token above are the ones"
            ),
            Err(other) => {
                return Err(anyhow::Error::new(other).context(
                    "initialising failed: the shares and token above are void, discard them",
                ));
            }
        }
        // A reader that stopped early (`| head`) took the shares into a pipe without reading
        // them, and only now does writing fail: say what that leaves.
        writeln!(out, "Initialised {}.", config.database_url.redacted())
            .and_then(|()| {
                writeln!(
                    out,
                    "Next: start `chaperone server --config FILE`, then run `chaperone unseal`."
                )
            })
            .and_then(|()| out.flush())
            .with_context(|| {
                format!(
                    "{} is initialised, but the output stopped: if the shares and the admin \
                     token above did not all reach their holders, nobody can unseal it. Then \
                     delete it (the SQLite file, or every table of the PostgreSQL database) \
                     and run `chaperone init` again",
                    config.database_url.redacted()
                )
            })?;
        Ok(())
    })
}

pub(crate) fn server(args: ServerArgs) -> anyhow::Result<()> {
    keep_memory_private()?;
    let layers = Layers::load(
        args.config.as_deref(),
        &[
            ("listen", "--listen", args.listen),
            ("database_url", "--database-url", args.database_url),
        ],
    )?;
    let config = layers.validate()?;
    init_logging(&config.log_level, config.log_format)?;
    warn_of_readable_config(&layers);
    runtime()?.block_on(run_server(config))
}

async fn run_server(config: Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database_url).await?;
    let settings = Settings {
        kv: config.kv,
        max_request_bytes: config.max_request_bytes,
        auth: config.auth,
        notify: config.notify,
        metrics_token: config.metrics_token,
        // Without TLS, only the names this server is known by (DNS rebinding).
        allowed_hosts: config.tls.is_none().then_some(config.allowed_hosts),
        ..Settings::default()
    };
    if let Some((_, key)) = &config.tls {
        warn_if_others_may_read(key, "the TLS private key");
    }
    // Every host in a trusted range may say which address a request comes from, which the
    // lockout counts and network allowlists check: a range wider than the proxies is a way
    // around both for any host in it.
    for cidr in settings.auth.trusted_proxies.iter().filter(|c| c.is_wide()) {
        tracing::warn!(
            %cidr,
            "trusted_proxies holds a wide range: every host in it may set the client address \
             (X-Forwarded-For) that lockouts and network allowlists use; list only the proxies"
        );
    }
    let options = serve_options(config.serve, config.tls.as_ref())?;
    let state = Arc::new(AppState::new(
        store.clone(),
        Arc::new(SystemClock),
        settings,
    ));
    if let Some(path) = &config.unseal_key_file {
        warn_if_others_may_read(path, "the unseal key file");
        tracing::warn!(path = %path.display(), "unsealing from a key file: evaluation only");
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read unseal_key_file {}", path.display()))?,
        );
        state.unseal_with_key(&UnsealKey::from_text(&text)?).await?;
    }
    let status = state.seal_status().await?;
    let listener = bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let what = match (status.initialized, status.sealed) {
        (false, _) => "not initialised: run `chaperone init`",
        (true, true) => "sealed: run `chaperone unseal`",
        (true, false) => "unsealed",
    };
    if let Some(metrics) = config.metrics_listen {
        let listener = bind(metrics).await?;
        println!("Metrics on http://{}/metrics", listener.local_addr()?);
        if !metrics.ip().is_loopback() {
            tracing::warn!(
                %metrics,
                "metrics are served in plaintext without a token on a non-loopback address"
            );
        }
        let router = chaperone_server::metrics_router(Arc::clone(&state));
        // Its own small limits: a flood of scrapers cannot take the main listener's slots.
        let options = ServeOptions {
            max_connections: 64,
            max_connections_per_address: 8,
            ..ServeOptions::default()
        };
        tokio::spawn(async move {
            let served =
                chaperone_server::serve_router(listener, router, options, std::future::pending())
                    .await;
            if let Err(error) = served {
                tracing::error!(%error, "the metrics listener stopped");
            }
        });
    }
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "Listening on {scheme}://{addr} ({what}). Database: {}",
        config.database_url.redacted()
    );
    if let Some(certificate) = &options.tls {
        println!(
            "TLS certificate SHA-256 fingerprint {}",
            certificate.fingerprint()
        );
    }
    std::io::stdout().flush()?;
    chaperone_server::serve_with(listener, state, options, shutdown_signal()).await?;
    store.close().await;
    Ok(())
}

/// Security decision: a server holds the unseal key, the root key and every KEK in memory
/// while unsealed, and copies of them can outlive a seal on thread stacks and in freed
/// memory. A core dump (a crash, `gcore`, systemd-coredump, apport) would write them to disk,
/// and another process of the same user could read them through ptrace or `/proc/PID/mem`.
/// So, before any key is read, the process is marked not dumpable (`PR_SET_DUMPABLE` 0: no
/// core file, no ptrace or memory reads by other unprivileged processes) and its core size
/// limit (soft and hard) is set to 0 (the first on Linux, the second on every Unix). Memory
/// images by root or of the whole machine (swap, VM snapshots) stay out of reach of any
/// process; crypto.md says so.
#[cfg(unix)]
fn keep_memory_private() -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("cannot mark the process not dumpable")?;
    let none = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    rustix::process::setrlimit(rustix::process::Resource::Core, none)
        .context("cannot turn core dumps off")?;
    Ok(())
}

#[cfg(not(unix))]
fn keep_memory_private() -> anyhow::Result<()> {
    Ok(())
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid log filter")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // One object per line; the request span's fields (its id) ride on every event.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    Ok(())
}

/// Says so when the certificate is marked as a CA, which the CLI and browsers refuse.
fn warn_if_ca(certificate: &TlsCertificate) {
    if certificate.leaf_is_ca() {
        tracing::warn!(
            fingerprint = %certificate.fingerprint(),
            "the TLS certificate is marked as a CA (basicConstraints CA:TRUE, OpenSSL's default \
             for `req -x509`): the chaperone CLI and browsers refuse it as a server's own \
             certificate; make it again with `-addext basicConstraints=critical,CA:FALSE`"
        );
    }
}

/// Loads the TLS certificate, if any, into `options`, and reloads it on every SIGHUP.
fn serve_options(
    mut options: ServeOptions,
    tls: Option<&(PathBuf, PathBuf)>,
) -> anyhow::Result<ServeOptions> {
    if let Some((cert, key)) = tls {
        let certificate = TlsCertificate::load(cert, key)?;
        warn_if_ca(&certificate);
        options.tls = Some(Arc::new(certificate));
    }
    options.max_connections = fit_open_files(options.max_connections);
    reload_on_hangup(options.tls.clone());
    Ok(options)
}

/// File descriptors kept for what is not a client connection: the database and its
/// journal, the SQLite readers or the PostgreSQL pool, the lock, logs, webhook and mail
/// connections.
#[cfg(unix)]
const RESERVED_FILES: u64 = 256;

/// Raises the process's soft limit of open files to its hard limit, and returns
/// `max_connections`, lowered (with a warning) if the limit cannot hold that many
/// connections and [`RESERVED_FILES`].
///
/// Security decision: at the limit, `accept` fails and the database cannot open a file, so
/// whoever holds enough idle connections stops every other client (the common soft limit is
/// 1,024, under the default of 4,096 connections). Connections past what the limit holds
/// are refused by the server's own count instead, which `max_connections_per_address` then
/// shares out.
#[cfg(unix)]
fn fit_open_files(max_connections: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit (macOS's default) is no soft limit the kernel takes: ask for a
    // million, far past any `max_connections` worth serving.
    let wanted = limit.maximum.unwrap_or(1 << 20);
    let raised = Rlimit {
        current: Some(wanted),
        maximum: limit.maximum,
    };
    let soft = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Some(wanted),
        Err(error) => {
            tracing::warn!(%error, "cannot raise the limit of open files");
            limit.current
        }
    };
    let Some(soft) = soft else {
        return max_connections;
    };
    let fits = usize::try_from(soft.saturating_sub(RESERVED_FILES).max(16)).unwrap_or(usize::MAX);
    if max_connections > fits {
        tracing::warn!(
            max_connections,
            open_files = soft,
            lowered_to = fits,
            "the limit of open files holds fewer connections than max_connections: raise it \
             (LimitNOFILE= for systemd, ulimit -n)"
        );
        return fits;
    }
    max_connections
}

#[cfg(not(unix))]
fn fit_open_files(max_connections: usize) -> usize {
    max_connections
}

/// SIGHUP reloads the TLS certificate. It is caught even without TLS, so that a SIGHUP sent
/// by habit never kills the server without its graceful shutdown.
fn reload_on_hangup(certificate: Option<Arc<TlsCertificate>>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot watch SIGHUP; the TLS certificate will not be reloaded");
            return;
        };
        while hangups.recv().await.is_some() {
            let Some(certificate) = &certificate else {
                tracing::info!("SIGHUP: no TLS certificate to reload");
                continue;
            };
            match certificate.reload() {
                Ok(()) => {
                    tracing::info!(
                        fingerprint = %certificate.fingerprint(),
                        "TLS certificate reloaded"
                    );
                    warn_if_ca(certificate);
                }
                Err(error) => tracing::error!(
                    %error,
                    "TLS certificate not reloaded; the current one stays in use"
                ),
            }
        }
    });
    #[cfg(not(unix))]
    drop(certificate);
}

/// Resolves on Ctrl-C or SIGTERM; the server then finishes in-flight requests.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}

/// Warns of each config file holding a secret that other users may read.
fn warn_of_readable_config(layers: &Layers) {
    for (path, keys) in layers.files_holding_secrets() {
        warn_if_others_may_read(
            path,
            &format!("the config file, which holds {},", keys.join(" and ")),
        );
    }
}

/// Warns when a file holding a key can be read by users other than its owner (mode bits
/// for group or others): the server still starts, since the file may be shared on purpose
/// (a group the server runs in), but the log says so.
fn warn_if_others_may_read(path: &Path, what: &str) {
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = %format!("{mode:o}"),
                "{what} can be read by other users; `chmod 600` it"
            );
        }
    }
}

pub(crate) fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Refuses a data directory that someone else can write to: whoever can could swap in
/// their own database and key file, or plant links where the keys are written. It must be
/// writable by its owner alone, and (on Linux) owned by the user running this.
fn check_private_dir(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.mode() & 0o022 != 0 {
            bail!(
                "{} can be written by other users (mode {:o}): the unseal key is kept there; \
                 `chmod 700` it, or use a directory of your own",
                path.display(),
                meta.mode() & 0o7777
            );
        }
        #[cfg(unix)]
        if meta.uid() != rustix::process::getuid().as_raw() {
            bail!(
                "{} belongs to another user (uid {}): use a directory of your own",
                path.display(),
                meta.uid()
            );
        }
    }
    Ok(())
}

/// Writes `contents` to `path` readable by the owner only, and syncs it to disk. A symbolic
/// link at `path` is refused, not followed (it could point anywhere the user may write).
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // On the open file, not by path: the path may have been swapped for a link since.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))
}
