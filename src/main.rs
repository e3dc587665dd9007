//! idgate's entry point: reads like a runbook. Only here are the modules wired together.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use idgate::call::{Registry, Services};
use idgate::config::{self, Config, Dialplan, IdentityConfig, Transport};
use idgate::identity::token::TokenIssuer;
use idgate::media::{MediaConfig, MediaEngine, PromptSet};
use idgate::sip::{SipSettings, SipStack};
use idgate::store::Store;

/// idgate identifies callers with a strong eID push before they reach a contact center's
/// agents, and hands the call to the agent queue with a verified / unverified verdict.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default). Without --config, the embedded defaults are used.
    Serve {
        /// The TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load and validate a config file and its dialplan, print a summary, exit 0 if valid.
    CheckConfig {
        /// The TOML config file (default: the embedded defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage the customer directory in the database `[store] url` names.
    Customers(idgate::cli::customers::CustomersArgs),
    /// GDPR requests about one person (export, erase) and the retention purge on demand.
    Privacy(idgate::cli::privacy::PrivacyArgs),
    /// Make the Ed25519 key X-Identity-Token is signed with.
    Keys(idgate::cli::keys::KeysArgs),
    /// Check an X-Identity-Token offline.
    Token(idgate::cli::token::TokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check_config(config),
        Command::Customers(args) => idgate::cli::customers::run(args).map_err(Into::into),
        Command::Privacy(args) => idgate::cli::privacy::run(args).map_err(Into::into),
        Command::Keys(args) => {
            idgate::cli::keys::run(args, &mut std::io::stdout().lock()).map_err(Into::into)
        }
        Command::Token(args) => {
            let now = std::time::SystemTime::now();
            idgate::cli::token::run(args, now, &mut std::io::stdout().lock()).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: Option<PathBuf>) -> anyhow::Result<()> {
    let report = config::check(path.as_deref())?;
    let config = match &path {
        Some(p) => Config::load(p)?,
        None => Config::embedded(),
    };
    // Reads the provider's certificate, key and secret files, so a missing one fails here and
    // not at the first call.
    idgate::verify::from_config(&config.provider, tokio::sync::mpsc::unbounded_channel().0)?;
    // Reads the token key files the same way.
    let tokens = TokenIssuer::from_config(&config.identity)?;
    // And the trunks' password files.
    let trunks = config.sip.trunk_secrets()?;
    print!("{report}");
    println!(
        "trunks:   {} (sip.auth.mode {})",
        trunks.len(),
        config.sip.auth.mode.as_str()
    );
    match &config.identity.signing_key_file {
        Some(file) => println!(
            "token:    kid {} ({}), {} previous key(s)",
            tokens.signer().kid(),
            file.display(),
            tokens.keys().keys().len() - 1
        ),
        None => println!("token:    ephemeral key (identity.signing_key_file not set)"),
    }
    Ok(())
}

fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = match &path {
        Some(p) => Config::load(p)?,
        None => Config::embedded(),
    };
    init_logs(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config, path))
}

/// Logs go to stderr, as `[log]` says (`RUST_LOG` replaces `log.level`). rsipstack prints
/// whole SIP messages (caller numbers, INFO digits) at INFO, so it is held at warn whatever
/// the level says about everything else.
fn init_logs(log: &config::LogConfig) {
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| log.level.clone());
    let filter = tracing_subscriber::EnvFilter::new(format!("{base},rsipstack=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        config::LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        config::LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

async fn run(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let dialplan = Dialplan::load(&config.dialplan)?;
    let store = Store::connect(&config.store.url)
        .await
        .with_context(|| format!("store.url {:?}", config.store.url))?;
    // Retention: personal data older than `store.retention_days` is purged now and hourly.
    let retention = config.store.retention();
    let purge =
        idgate::store::retention::purge_periodically(store.clone(), retention, cancel.clone());
    tokio::spawn(purge);
    let idgate::verify::Configured { provider, app_push } =
        idgate::verify::from_config(&config.provider, evidence_sink(&store))?;
    let directory = idgate::verify::directory::Directory::from_config(&config.directory, &store)?;
    let tokens = token_issuer(&config.identity)?;
    let prompts = load_prompts()?;
    if config.media.raw_send {
        idgate::media::check_raw_send(config.media.bind_ip).context(
            "media.raw_send: cannot open a raw socket; it needs CAP_NET_RAW \
             (AmbientCapabilities=CAP_NET_RAW in a systemd unit, cap_add: [NET_RAW] in compose)",
        )?;
    }
    let media = MediaEngine::start(MediaConfig {
        bind_ip: config.media.bind_ip,
        port_min: config.media.rtp_port_min,
        port_max: config.media.rtp_port_max,
        raw_send: config.media.raw_send,
    });
    // The phone-number library loads its metadata on first use, for a second or two: done
    // here, not inside the first call (where it stalls the runtime and a proxy's probes).
    let _ = idgate::identity::E164::parse("+46701234567", "SE");
    let media_counters = media.counters();
    let registry = Arc::new(Registry::default());
    let mut metrics = idgate::metrics::Metrics::new(media_counters.clone());
    metrics.watch_journal(store.journal_stats());
    let metrics = Arc::new(metrics);
    let admission =
        Arc::new(idgate::call::Admission::new(&config.admission).with_media(media_counters));
    let gate = Arc::new(idgate::call::CallGate::new(
        admission.clone(),
        registry.clone(),
        metrics.clone(),
        store.clone(),
    ));
    let (sip, calls) = SipStack::start(sip_settings(&config, gate)?, cancel.clone()).await?;
    let services = Arc::new(Services {
        sip,
        media,
        prompts,
        provider,
        store,
        dialplan,
        headers: config.identity.header_options(&config.sip.header_prefix),
        tokens,
        // SDP carries an address: the public one when it is an IP, else the bind address.
        media_ip: config
            .sip
            .public_address
            .as_deref()
            .and_then(|a| a.trim_start_matches('[').trim_end_matches(']').parse().ok())
            .unwrap_or(config.media.bind_ip),
        srtp: config.media.srtp,
        registry,
        limits: config.limits.push_limits(),
        app_push,
        directory,
        metrics,
        admission,
    });
    let http = idgate::api::serve(
        &config.http,
        &config.agent,
        services.clone(),
        cancel.clone(),
    )
    .await?;
    tokio::spawn(idgate::call::run_intake(services.clone(), calls));
    print_banner(&config, path.as_deref(), http);
    drain(&services, config.admission.drain_timeout()).await;
    // Queued call records are committed before the process exits.
    services.store.close().await;
    cancel.cancel();
    Ok(())
}

/// Runs until SIGTERM/SIGINT or `POST /v1/drain`, then drains: new calls get 503, calls in
/// progress go on; returns when the last one has ended, at the drain timeout, or at a second
/// signal.
async fn drain(services: &Services, timeout: std::time::Duration) {
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = services.admission.drain_started() => {}
    }
    services.admission.drain();
    tracing::info!(
        active_calls = services.registry.active(),
        "draining: new calls refused, waiting for calls in progress to end"
    );
    let idle = async {
        while services.registry.active() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        _ = idle => tracing::info!("drained: no calls left, exiting"),
        _ = shutdown_signal() => tracing::warn!(
            active_calls = services.registry.active(),
            "second signal: exiting now"
        ),
        _ = tokio::time::sleep(timeout) => tracing::warn!(
            active_calls = services.registry.active(),
            "admission.drain_timeout_secs passed: exiting with calls in progress"
        ),
    }
}

/// The token keys. Without `signing_key_file`, a key made now: `cargo run` works, but tokens
/// stop verifying at the next restart, which the log says.
fn token_issuer(identity: &IdentityConfig) -> anyhow::Result<TokenIssuer> {
    let tokens = TokenIssuer::from_config(identity)?;
    let kid = tokens.signer().kid().to_string();
    if tokens.is_ephemeral() {
        tracing::warn!(
            kid,
            "identity.signing_key_file is not set: X-Identity-Token is signed with a key made at \
             start-up, and tokens will not verify after a restart (make a key with `idgate keys \
             generate`)"
        );
    } else {
        tracing::info!(kid, "token signing key loaded");
    }
    Ok(tokens)
}

/// Providers' evidence of completed orders, written to the store by one task (a slow database
/// never holds up an order).
fn evidence_sink(store: &Store) -> idgate::verify::EvidenceSink {
    let (sink, mut evidence) = tokio::sync::mpsc::unbounded_channel::<idgate::verify::Evidence>();
    let store = store.clone();
    tokio::spawn(async move {
        while let Some(e) = evidence.recv().await {
            store.record(idgate::store::Record::Evidence {
                call_id: e.call_id,
                method: e.method,
                data: e.data,
                at: std::time::SystemTime::now(),
            });
        }
    });
    sink
}

fn load_prompts() -> anyhow::Result<HashMap<String, Arc<PromptSet>>> {
    let mut sets = HashMap::new();
    for lang in ["sv", "en"] {
        let set = PromptSet::bundled(lang).with_context(|| format!("bundled prompts ({lang})"))?;
        sets.insert(lang.to_string(), Arc::new(set));
    }
    Ok(sets)
}

fn sip_settings(
    config: &Config,
    admit: Arc<dyn idgate::sip::Admit>,
) -> anyhow::Result<SipSettings> {
    let trunk_auth = idgate::sip::TrunkAuth::new(&config.sip.auth, config.sip.trunk_secrets()?);
    Ok(SipSettings {
        listen: config.sip.listen,
        udp: config.sip.transports.contains(&Transport::Udp),
        tcp: config.sip.transports.contains(&Transport::Tcp),
        trusted_peers: config.sip.trusted_peers.clone(),
        header_prefix: config.sip.header_prefix.clone(),
        user_agent: config.sip.user_agent.clone(),
        admit,
        public_address: config.sip.public_address.clone(),
        // Validation made sure both files are set when "tls" is on.
        tls: config
            .sip
            .tls_files()
            .filter(|_| config.sip.tls_enabled())
            .map(|files| idgate::sip::TlsSettings {
                listen: config.sip.tls_listen_addr(),
                files,
                reload_poll: idgate::sip::DEFAULT_RELOAD_POLL,
            }),
        trunk_auth,
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Tells the person who just started idgate where it listens and how to place a test call.
fn print_banner(config: &Config, path: Option<&std::path::Path>, http: std::net::SocketAddr) {
    let sip = config.sip.listen;
    let source = path.map_or_else(
        || "embedded defaults".to_string(),
        |p| p.display().to_string(),
    );
    let scenarios = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp");
    println!(
        "idgate {version} ({source})
  SIP   {sip} ({transports})
  HTTP  http://{http}/healthz
  agent http://{http}/agent {agent}
  store {store}

Place a test call (needs SIPp: apt-get install sip-tester):
  1. an agent queue:  sipp -sf {scenarios}/queue.xml -i 127.0.0.1 -p 5080 -m 1
  2. a caller:        sipp -sf {scenarios}/caller.xml -set caller +46701234567 -s 5000 -d 8000 \\
                        -i 127.0.0.1 -p 5070 -m 1 {sip}
The queue's INVITE carries X-Identity-Status (add -trace_msg to the queue to see it).",
        version = env!("CARGO_PKG_VERSION"),
        transports = config
            .sip
            .transports
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        store = config.store.url,
        agent = if config.agent.token.is_some()
            || config.agent.token_file.is_some()
            || config.agent.user.is_some()
        {
            "(open it with ?token=... or the configured user)"
        } else {
            "(off: set [agent] token or user and password)"
        },
    );
}
