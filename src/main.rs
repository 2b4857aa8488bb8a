//! `ringmq`: arguments -> config -> listener lock -> shards. Nothing else.

use clap::{Parser, Subcommand};
use ringmq::admin::{self, AdminState};
use ringmq::admission::NodeAdmission;
use ringmq::config::{Config, Origin};
use ringmq::session::SessionConfig;
use ringmq::shard::{self, BindLock, ListenerSpec, NodeHandle, NodeSpec, ShardSettings};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc instead of glibc malloc: every message allocates and frees its
/// `Arc<Message>` and per-connection state is many small blocks; see
/// docs/performance.md for the measured effect.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's `mi_collect` (not exported by `libmimalloc-sys` without
    /// its `extended` feature); the library is linked for `GLOBAL`.
    fn mi_collect(force: bool);
}

/// Returns the calling thread's free mimalloc memory to the system. mimalloc
/// purges freed pages only after a delay, checked on later allocations, so
/// a shard whose clients went quiet after connecting would keep what the
/// connecting freed (about 550 bytes per idle connection measured); forcing
/// purges from the shard's tick instead of purging at once (purge delay 0)
/// keeps the publish path free of madvise calls (4,000 per second at p2p
/// rates with a zero delay). See docs/performance.md.
fn release_free_memory() {
    // SAFETY: mi_collect has no preconditions; it only touches the calling
    // thread's heap and the shared arenas.
    unsafe { mi_collect(true) }
}

#[derive(Parser)]
#[command(
    name = "ringmq",
    version,
    about = "Thread-per-core MQTT 3.1.1 / 5.0 broker"
)]
struct Args {
    /// TOML configuration file (see ringmq.example.toml). Every key can also be
    /// set with RINGMQ_<SECTION>__<KEY> environment variables.
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
    /// Start even if a durable store is damaged: the damaged store is moved
    /// aside (`shard-N.damaged-<unix time>`) and its shard starts empty.
    #[arg(long)]
    durable_recover_damaged: bool,
    /// Without a command: run the broker.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Operate a running node through its admin API (`ringmq ctl cluster status`).
    Ctl(ringmq::ctl::CtlArgs),
    /// Write a CA (ca.pem, ca.key) and a certificate and key per node
    /// (<node name>.pem, <node name>.key, subjectAltName the node's host)
    /// for a first cluster's cluster.ssl_options.
    GenCerts {
        /// Directory to write to (made if missing).
        dir: PathBuf,
        /// Node names, name@host, comma-separated. Default: node.name of
        /// the configuration (--config and RINGMQ_ variables).
        #[arg(long, value_delimiter = ',', value_name = "NAME@HOST,...")]
        nodes: Vec<String>,
        /// Replace files that exist.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    // No transparent huge pages for this process. mimalloc advises them
    // for its arenas (on kernels set to `madvise`), and a 2 MiB page is
    // resident whole and cannot be purged in part: with them, 10,000 idle
    // connections measured 1,150 to 1,700 bytes each from run to run (plus
    // 9 MB at start), without them 1,150 every run (docs/performance.md,
    // idle connections round 3). The flag applies to every later fault,
    // including in arenas mimalloc mapped before `main`.
    // SAFETY: prctl with PR_SET_THP_DISABLE takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let args = Args::parse();
    match args.command {
        Some(Command::Ctl(mut ctl)) => {
            // `--config` is global: before or after `ctl`.
            ctl.config = args.config;
            return ringmq::ctl::run(ctl);
        }
        Some(Command::GenCerts { dir, nodes, force }) => {
            return gen_certs(args.config.as_deref(), &dir, &nodes, force);
        }
        None => {}
    }
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmq: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    init_tracing(&config);
    if config.cluster.is_clustered() && config.node.has_default_cookie() {
        tracing::warn!(
            cookie = %config.node.cookie,
            "this clustered node uses the default cookie: any node that knows ringmq's default \
             can join; set node.cookie to a secret shared by the cluster's nodes"
        );
    }

    // Read the affinity mask before any thread is pinned.
    let cpus = match config.shard_cpus() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmq: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Reads the TLS listeners' certificate files: a bad one stops the start.
    let plans = match config.listener_plans() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ringmq: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let listeners: Vec<ListenerSpec> = plans
        .into_iter()
        .map(|l| ListenerSpec {
            bind: l.bind,
            max_connections: l.max_connections as usize,
            transport: l.transport,
        })
        .collect();
    let binds: Vec<_> = listeners.iter().map(|l| l.bind).collect();
    let mut locks = Vec::new();
    for &bind in &binds {
        match BindLock::acquire(bind) {
            Ok(l) => locks.push(l),
            Err(e) => {
                eprintln!("ringmq: {e}");
                return ExitCode::from(1);
            }
        }
    }

    // Size the descriptor table for every connection the listeners admit
    // now, while waiting on its growth stalls nobody (shard/fd_table.rs).
    let want_fds = listeners
        .iter()
        .map(|l| l.max_connections)
        .sum::<usize>()
        .saturating_add(ringmq::limits::FD_TABLE_RESERVE);
    match shard::presize_fd_table(want_fds) {
        Ok(size) => tracing::debug!(size, want_fds, "descriptor table reserved"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot reserve the descriptor table; it grows on demand")
        }
    }

    // Loading has validated the rules; a set that allows everything is not
    // consulted at all.
    let authz = match config.authz() {
        Ok(a) => (!a.allows_all()).then(|| Arc::new(a)),
        Err(e) => {
            eprintln!("ringmq: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Reads the password and ACL files: a bad line stops the start.
    let authn = match ringmq::authn::Authn::start(&config.authentication, &config.node.data_dir) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ringmq: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if config.authentication.built_in_database && !config.api.enable {
        tracing::warn!(
            "authentication.built_in_database is on but the admin API is off (api.enable): \
             its users cannot be added or changed"
        );
    }
    let m = &config.mqtt;
    let settings = ShardSettings {
        node: ringmq::router::NodeId::from_name(&config.node.name),
        session: std::sync::Arc::new(SessionConfig {
            max_packet_size: m.max_packet_size,
            max_inflight: m.max_inflight,
            max_mqueue_len: m.max_mqueue_len as usize,
            max_publisher_hold_ms: m.max_publisher_hold_ms,
            max_session_expiry_interval_s: m.max_session_expiry_interval,
            max_topic_alias: m.max_topic_alias,
            server_keepalive_s: m.server_keepalive,
            retain_available: m.retain_available,
            shared_subscription_available: m.shared_subscription,
            wildcard_subscription_available: m.wildcard_subscription,
            max_subscriptions: m.max_subscriptions as usize,
            max_client_id_len: m.max_clientid_len as usize,
            max_topic_levels: m.max_topic_levels as usize,
            allow_publish_sys: m.allow_publish_sys,
            authz,
            authz_deny_action: config.authorization.deny_action,
            authz_deny_reason: config.authorization.deny_reason,
            authn: authn.clone(),
        }),
        retained_max_messages: m.retained_max_messages as usize,
        retained_max_payload_bytes: m.retained_max_payload_size as usize,
        shared_strategy: m.shared_subscription_strategy,
        release_free_memory: Some(release_free_memory),
    };

    // Installed before the shards start, so a signal that comes during the
    // start is not lost (its stop request waits in the inboxes).
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringmq: cannot install signal handler: {e}");
            return ExitCode::from(1);
        }
    };
    // Loading has validated [server_redirection].
    let admission = Arc::new(NodeAdmission::new(
        config.server_redirection.to_redirection(),
    ));
    // Made before the shards start: the admin thread may ask them at once
    // (requests wait in the inboxes until the shards serve them).
    let node = NodeHandle::new(cpus.len());
    if let Err(code) = start_signal_thread(signals, &node, authn.clone()) {
        return code;
    }
    // The cluster thread, before the shards: a taken cluster.bind or a bad
    // certificate stops the start.
    let mut cluster = match config
        .cluster
        .is_clustered()
        .then(|| ringmq::cluster::setup::start(&config, admission.clone()))
        .transpose()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmq: cannot start the cluster: {e}");
            return ExitCode::from(if e.config { 2 } else { 1 });
        }
    };
    let cluster_control = cluster.as_ref().map(|c| {
        Arc::new(
            ringmq::cluster::control::Control::new(c.handle.clone())
                .with_figures(c.loads.clone())
                .with_clients(c.clients.port.clone()),
        ) as Arc<dyn admin::ClusterControl>
    });
    // Cross-node evacuation and rebalance: the admin thread's end.
    let rebalance_peers = cluster.as_mut().and_then(|c| {
        let incoming = c.rebalance.incoming.take()?;
        Some((c.rebalance.port.clone(), incoming))
    });
    // Bounds a shard's lost wake-up (shard/watchdog.rs).
    if let Err(e) = ringmq::shard::watchdog::start(node.clone()) {
        eprintln!("ringmq: cannot start the shard watchdog thread: {e}");
        return ExitCode::from(1);
    }
    // Filled once the Redis backend runs (it opens after the API starts).
    let redis_counters = ringmq::admin::RedisCountersSlot::default();
    if config.api.enable {
        let peers = cluster_control.zip(rebalance_peers);
        let redis = redis_counters.clone();
        if let Err(code) = start_admin(&config, &admission, &node, authn.clone(), peers, redis) {
            return code;
        }
    }
    let cluster_ports = match cluster.map(|c| ringmq::cluster::run_node(c, node.clone())) {
        None => None,
        Some(Ok(ports)) => Some(ports),
        Some(Err(e)) => {
            eprintln!("ringmq: cannot start the cluster's node thread: {e}");
            return ExitCode::from(1);
        }
    };
    // Durable stores open (and restore) before any shard runs: a damaged
    // store stops the start with its message.
    let (durable, writers) = if config.durable_sessions.enable {
        let spec = ringmq::durable::start::OpenSpec {
            durable: &config.durable_sessions,
            redis: &config.redis,
            node_name: &config.node.name,
            data_dir: &config.node.data_dir,
            recover_damaged: args.durable_recover_damaged,
        };
        match ringmq::durable::start::open_backend(&spec, cpus.len()) {
            Ok((stores, writers)) => (Some(Arc::new(stores)), Some(writers)),
            Err(e) => {
                eprintln!("ringmq: cannot open the durable store: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        (None, None)
    };
    if let Some(counters) = writers.as_ref().and_then(|w| w.redis_counters()) {
        let _ = redis_counters.set(counters);
    }
    tracing::info!(node = %config.node.name, shards = cpus.len(), ?cpus, ?binds, "ringmq starting");
    let result = shard::run(NodeSpec {
        listeners,
        cpus,
        settings,
        admission,
        node,
        idle_poll: std::time::Duration::from_micros(config.node.idle_poll_us.into()),
        // `Type=notify` (packaging/deb/ringmq.service): started once every
        // shard listens.
        on_ready: Some(Box::new(|| {
            tracing::info!("ringmq ready: every shard listens");
            ringmq::systemd::notify_or_log("READY=1\nSTATUS=accepting MQTT connections");
        })),
        cluster: cluster_ports,
        durable,
    });
    // Every shard dropped its store handle: each writer syncs and ends.
    if let Some(writers) = writers {
        writers.join();
    }
    drop(locks);
    match result {
        Ok(()) => {
            tracing::info!("ringmq stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringmq: {e}");
            ExitCode::from(1)
        }
    }
}

/// `ringmq gen-certs`: certificates for a first cluster. Without
/// `--nodes`, the certificate is for this configuration's `node.name`.
fn gen_certs(
    config: Option<&std::path::Path>,
    dir: &std::path::Path,
    nodes: &[String],
    force: bool,
) -> ExitCode {
    let nodes = if nodes.is_empty() {
        match Config::load(config) {
            Ok(c) => vec![c.node.name],
            Err(e) => {
                eprintln!("ringmq: configuration error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        nodes.to_vec()
    };
    match ringmq::cluster::certs::generate(dir, &nodes, force) {
        Ok(files) => {
            if files.iter().all(|f| f.node.is_some()) {
                let ca = dir.join(ringmq::cluster::certs::CA_CERT_FILE);
                println!(
                    "{}  existing CA, reused: it signed the certificates below",
                    ca.display()
                );
            }
            for file in &files {
                println!("{file}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringmq gen-certs: {e}");
            ExitCode::from(2)
        }
    }
}

/// Starts the thread that turns SIGTERM and SIGINT into the node's stop
/// request, and SIGHUP into a reload of the authentication files (systemd's
/// `ExecReload`; a bad file is logged and the old one kept, the node runs
/// on). The request goes through each shard's inbox, whose wake-up
/// reaches a shard asleep with nothing to do at once (a flag that the
/// shards' ticks polled depended on an idle shard's timer firing).
fn start_signal_thread(
    mut signals: signal_hook::iterator::Signals,
    node: &NodeHandle,
    authn: Option<Arc<ringmq::authn::Authn>>,
) -> Result<(), ExitCode> {
    let node = node.clone();
    std::thread::Builder::new()
        .name("ringmq-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == signal_hook::consts::SIGHUP {
                    match &authn {
                        Some(authn) => match authn.reload() {
                            Ok(()) => tracing::info!("SIGHUP: authentication files reloaded"),
                            Err(e) => tracing::error!(error = %e, "SIGHUP: reload refused, the old files stay"),
                        },
                        None => tracing::info!("SIGHUP: no authentication files to reload"),
                    }
                    continue;
                }
                tracing::info!(signal, "stopping");
                ringmq::systemd::notify_or_log("STOPPING=1");
                node.request_stop();
            }
        })
        .map(drop)
        .map_err(|e| {
            eprintln!("ringmq: cannot start the signal thread: {e}");
            ExitCode::from(1)
        })
}

/// The admin thread's end of cross-node evacuation and rebalance commands.
type RebalancePeers = (
    ringmq::cluster::driver::rebalance::RebalancePort,
    tokio::sync::mpsc::Receiver<ringmq::cluster::driver::rebalance::Incoming>,
);

/// Starts the admin API thread. A bind failure stops the start, except on
/// the built-in default address when it is taken (another broker on this
/// host with defaults): then the node runs without its API and says so.
fn start_admin(
    config: &Config,
    admission: &Arc<NodeAdmission>,
    node: &NodeHandle,
    authn: Option<Arc<ringmq::authn::Authn>>,
    cluster: Option<(Arc<dyn admin::ClusterControl>, RebalancePeers)>,
    redis: ringmq::admin::RedisCountersSlot,
) -> Result<(), ExitCode> {
    let api = &config.api;
    if api.has_default_credentials() {
        tracing::warn!(
            username = %api.username,
            "the admin API uses the default credentials: set api.username and api.password"
        );
    }
    // Before the shards open their listeners: an evacuation that ran when
    // the node stopped refuses clients from the first CONNECT.
    let rebalancer = ringmq::rebalance::Rebalancer::new(
        &config.node.name,
        &config.node.data_dir,
        node.clone(),
        admission.clone(),
    );
    rebalancer.load_persisted();
    let cluster = cluster.map(|(control, (port, incoming))| {
        rebalancer.set_cluster(control.clone());
        rebalancer.with_cluster(control.clone(), port, incoming);
        control
    });
    let state = Arc::new(
        AdminState::new(
            config.node.name.clone(),
            &api.username,
            &api.password,
            config.server_redirection.clone(),
            admission.clone(),
            node.clone(),
            config.prometheus.enable_basic_auth,
        )
        .with_cluster(admin::ClusterAdmin {
            name: config.cluster.name.clone(),
            discovery_strategy: config.cluster.discovery_strategy.as_str().to_string(),
            role: config.node.role.as_str().to_string(),
            control: cluster,
        })
        .with_authn(authn)
        .with_rebalancer(rebalancer)
        .with_redis(redis),
    );
    match admin::start(api, state) {
        Ok(()) => Ok(()),
        Err(e)
            if e.kind() == std::io::ErrorKind::AddrInUse
                && config.origin_of("api.bind") == Origin::Default =>
        {
            tracing::warn!(
                error = %e,
                "admin API not started: its default address is in use; set api.bind \
                 (or api.enable = false)"
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("ringmq: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// `log.level` as a filter. At `info` the embedded store's crates (fjall,
/// lsm_tree) say only warnings: their per-tree recovery and flush lines
/// (some 25 per start) would bury the broker's own.
fn default_filter(level: ringmq::config::LogLevel) -> String {
    match level {
        ringmq::config::LogLevel::Info => "info,fjall=warn,lsm_tree=warn".to_owned(),
        other => other.as_str().to_owned(),
    }
}

fn init_tracing(config: &Config) {
    // RUST_LOG, when set, wins over log.level.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default_filter(config.log.level)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
