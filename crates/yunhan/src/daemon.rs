//! The long-running roles: `up`, `server`, `agent`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio::sync::watch;
use yunhan_store::objects::Objects;
use yunhan_store::Store;

/// Start an all-in-one cloud: API server, controllers and a host agent in one
/// process, on an embedded store under --data-dir. The first start creates the
/// admin and writes ~/.config/yunhan/config.toml (mode 0600; the global --config
/// to put it elsewhere).
#[derive(Args, Debug)]
pub struct UpArgs {
    /// Where the store, images and the agent's state (VM disks) live
    /// [default: /var/lib/yunhan as root, else $XDG_DATA_HOME/yunhan or ~/.local/share/yunhan]
    #[arg(long, env = "YUNHAN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Import a disk image file (raw or qcow2) as a public image NAME on start,
    /// unless an Active image of that name exists (repeatable). `scripts/up`
    /// imports the test guest as `tiny` this way.
    #[arg(long = "import-image", value_name = "NAME=FILE", value_parser = parse_import)]
    import_images: Vec<(String, PathBuf)>,
    /// Admins' server-path image imports (`image create --server-path`) must be
    /// files inside this directory [default: <data-dir>/import, created on start]
    #[arg(long)]
    import_dir: Option<PathBuf>,
    /// Address the API listens on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// This host's name in the cloud [default: the machine's hostname]
    #[arg(long)]
    name: Option<String>,
    /// The default external network `public` made on first start (when the cloud
    /// has none): elastic IPs from this range live on a bridge of this host that
    /// holds its first address, and leave masqueraded through the host's default
    /// route (like DevStack's "public" network)
    #[arg(long, default_value = yunhan_model::DEFAULT_PUBLIC_CIDR, value_name = "CIDR")]
    public_cidr: String,
    /// Make no default external network
    #[arg(long, conflicts_with = "public_cidr")]
    no_public_network: bool,
    /// Realise VPC networking inside this existing network namespace instead of
    /// the host's own (a test lab's "host"; QEMU stays in the host's namespace)
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// Where the host's metrics endpoint listens (the API reads VM and host metrics
    /// from it; port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR:PORT")]
    metrics_listen: SocketAddr,
    #[command(flatten)]
    history: HistoryArgs,
    #[command(flatten)]
    plane: ControlPlaneArgs,
}

/// Run the control plane (API + leader-elected controllers). Several servers
/// may share one etcd cluster; only the elected leader runs the controllers.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// The store: etcd://h1:2379,h2:2379,h3:2379, or a directory for the
    /// embedded single-node store
    #[arg(long, env = "YUNHAN_STORE")]
    store: String,
    /// Address the API listens on
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// On first start, write the admin's client config here
    /// [default: the global --config, else ~/.config/yunhan/config.toml]
    #[arg(long)]
    write_config: Option<PathBuf>,
    /// The image store: where uploaded images are kept (sparse RAW)
    #[arg(long, default_value = "/var/lib/yunhan/images")]
    image_dir: PathBuf,
    /// Admins' server-path image imports (`image create --server-path`) must be
    /// files inside this directory
    #[arg(long, default_value = "/var/lib/yunhan/import")]
    import_dir: PathBuf,
    #[command(flatten)]
    plane: ControlPlaneArgs,
    /// Where this server keeps its own files (the S3 gateway's keyring and log)
    #[arg(long, default_value = "/var/lib/yunhan/server")]
    state_dir: PathBuf,
}

/// Run a host agent: registers this host, keeps its liveness lease and runs
/// the host's instances.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The store the control plane uses (etcd://h1:2379,…)
    #[arg(long, env = "YUNHAN_STORE")]
    store: String,
    /// This host's name in the cloud [default: the machine's hostname]
    #[arg(long)]
    name: Option<String>,
    /// The address other hosts reach this host at
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// Agent state directory (VM files, identity)
    #[arg(long, default_value = "/var/lib/yunhan/agent")]
    state_dir: PathBuf,
    /// Liveness lease TTL: a dead agent's host turns NotReady after this
    #[arg(long, default_value = "3", value_name = "SECONDS")]
    lease_ttl: u64,
    /// A GPU to offer for passthrough, by PCI address (repeatable), e.g. 0000:3b:00.0
    #[arg(long = "gpu", value_name = "PCI")]
    gpus: Vec<String>,
    /// VM accelerator: auto (KVM if a probe guest runs under it, else TCG), kvm or tcg
    #[arg(long, env = "YUNHAN_ACCEL", default_value = "auto")]
    accel: yunhan_agent::AccelMode,
    /// Unprivileged user QEMU runs as (created if missing)
    #[arg(long, default_value = "yunhan-qemu")]
    qemu_user: String,
    /// Seconds a guest gets to power off on stop before QEMU is quit/killed
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    stop_timeout: u64,
    /// Realise VPC networking (bridges, VXLAN, router namespaces, nftables, VM taps)
    /// inside this existing network namespace instead of the agent's own (a test lab's
    /// "host"); QEMU itself stays in the agent's namespace
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// This host's VXLAN tunnel endpoint on the underlay [default: --address]
    #[arg(long, value_name = "IP")]
    vtep: Option<std::net::Ipv4Addr>,
    /// Where this host's metrics endpoint listens: the API servers and the alarm
    /// evaluator read its VMs' and its own metrics there (bearer token in the store).
    /// 0.0.0.0 is published as --address
    #[arg(long, default_value = "0.0.0.0:9465", value_name = "ADDR:PORT")]
    metrics_listen: SocketAddr,
    #[command(flatten)]
    history: HistoryArgs,
    #[command(flatten)]
    ceph: crate::ceph::CephArgs,
}

/// The control plane's options, shared by `up` and `server`: API tuning, a Ceph cluster
/// and the S3 gateway.
#[derive(Args, Debug)]
pub struct ControlPlaneArgs {
    #[command(flatten)]
    tuning: Tuning,
    #[command(flatten)]
    ceph: crate::ceph::CephArgs,
    #[command(flatten)]
    s3: crate::object_storage::ObjectStorageArgs,
}

/// A started control plane: the Ceph pool and S3 gateway it uses, its controllers and
/// the shutdown signal they stop on.
struct ControlPlane {
    tuning: Tuning,
    ceph: Option<yunhan_agent::storage::CephPool>,
    s3: Option<crate::object_storage::ObjectStorage>,
    controllers: tokio::task::JoinHandle<()>,
    shutdown: watch::Receiver<bool>,
}

impl ControlPlaneArgs {
    /// Applies the Ceph pool, then (catching shutdown signals from here on) starts the
    /// S3 gateway as `host` with its files in `dir`, publishes it in the store and spawns
    /// the controllers.
    async fn start(
        self,
        store: &Arc<dyn Store>,
        objects: Objects,
        dir: &Path,
        host: &str,
    ) -> anyhow::Result<ControlPlane> {
        let ceph = self.ceph.apply().await?;
        let shutdown = shutdown_signal();
        let s3 = (self.s3).start(ceph.as_ref(), dir, host, shutdown.clone());
        let s3 = s3.await?;
        crate::object_storage::publish(store, s3.as_ref()).await?;
        let controllers = spawn_controllers(
            store.clone(),
            objects,
            &self.tuning,
            ceph.as_ref(),
            s3.as_ref(),
            shutdown.clone(),
        )?;
        let tuning = self.tuning;
        Ok(ControlPlane {
            tuning,
            ceph,
            s3,
            controllers,
            shutdown,
        })
    }
}

impl ControlPlane {
    /// The API's configuration: images kept in `image_dir`, server-path imports from
    /// `import_dir`.
    fn api_config(
        &self,
        image_dir: PathBuf,
        import_dir: PathBuf,
    ) -> anyhow::Result<yunhan_api::ApiConfig> {
        let (ceph, s3) = (self.ceph.as_ref(), self.s3.as_ref());
        self.tuning.api_config(image_dir, import_dir, ceph, s3)
    }

    /// Waits for the controllers to stop, then for the S3 gateway.
    async fn stopped(self) {
        let _ = self.controllers.await;
        if let Some(s3) = self.s3 {
            s3.stopped().await;
        }
    }
}

/// The bound of a host's metric history.
#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    /// The most metric series this host keeps (a VM has 7, plus 8 with its first VPC NIC
    /// and 4 per further NIC; each series holds a month and takes about 32 KB of memory
    /// and 32 KiB of disk)
    #[arg(long, default_value_t = 4096, value_name = "N")]
    metrics_max_series: usize,
}

impl HistoryArgs {
    fn config(&self, listen: SocketAddr) -> yunhan_agent::MetricsConfig {
        yunhan_agent::MetricsConfig {
            listen,
            max_series: self.metrics_max_series,
        }
    }
}

/// API tuning shared by `up` and `server`.
#[derive(Args, Debug, Clone)]
pub struct Tuning {
    /// Sustained API requests per second allowed per API key
    #[arg(long, default_value_t = 200.0)]
    rate_limit: f64,
    /// Requests per key allowed in a burst above the sustained rate
    #[arg(long, default_value_t = 400.0)]
    rate_burst: f64,
    /// Largest accepted request body, in bytes
    #[arg(long, default_value_t = 1024 * 1024)]
    body_limit: usize,
    /// vCPUs the scheduler may place per physical CPU (CPU overcommit)
    #[arg(long, default_value_t = 2.0)]
    cpu_overcommit: f64,
    /// Memory overcommit ratio (1.0 = none, the safe default)
    #[arg(long, default_value_t = 1.0)]
    memory_overcommit: f64,
    /// Seconds a host must stay NotReady (its agent's lease has already expired)
    /// before its HA instances are fenced and restarted on other hosts
    #[arg(long, default_value_t = 3, value_name = "SECONDS")]
    ha_grace: u64,
    /// Seconds a web console session lasts after its login
    #[arg(long, default_value_t = 12 * 3600, value_name = "SECONDS")]
    session_ttl: u64,
    /// Serve the web console from this directory instead of the files built into the
    /// binary (developing the console: `scripts/console build` writes crates/console/assets)
    #[arg(long, env = "YUNHAN_CONSOLE_DIR", value_name = "DIR", hide = true)]
    console_dir: Option<PathBuf>,
}

impl Tuning {
    fn placement(&self) -> anyhow::Result<yunhan_model::scheduling::Policy> {
        let valid = (1.0..=16.0).contains(&self.cpu_overcommit)
            && (1.0..=4.0).contains(&self.memory_overcommit);
        if !valid {
            bail!("--cpu-overcommit must be 1–16 and --memory-overcommit 1–4");
        }
        Ok(yunhan_model::scheduling::Policy {
            cpu_ratio: self.cpu_overcommit,
            memory_ratio: self.memory_overcommit,
        })
    }

    fn api_config(
        &self,
        image_dir: PathBuf,
        import_dir: PathBuf,
        ceph: Option<&yunhan_agent::storage::CephPool>,
        s3: Option<&crate::object_storage::ObjectStorage>,
    ) -> anyhow::Result<yunhan_api::ApiConfig> {
        let mut c = yunhan_api::ApiConfig {
            placement: self.placement()?,
            rate_per_sec: self.rate_limit,
            burst: self.rate_burst,
            body_limit: self.body_limit,
            image_dir,
            import_dir,
            s3_endpoint: s3.map(|s| s.endpoint()),
            object_browser: s3.map(|s| s.browser.clone()),
            session_ttl: Duration::from_secs(self.session_ttl.max(60)),
            console: match &self.console_dir {
                Some(dir) => yunhan_api::ConsoleAssets::Dir(dir.clone()),
                None => yunhan_api::ConsoleAssets::Embedded,
            },
            ..Default::default()
        };
        c.storage_pools.extend(ceph.map(|c| c.pool.clone()));
        Ok(c)
    }
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("YUNHAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn parse_import(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!(
            "expected NAME=FILE, e.g. tiny=target/test-guest/test-guest.raw, not {s:?}"
        )),
    }
}

/// Where `up` keeps its data: the packaged-daemon place when run as root (the
/// unprivileged QEMU user cannot enter a private home such as /root), the XDG
/// data directory otherwise.
fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/yunhan");
    }
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("yunhan")
}

/// The data directory's modes (docs/compute.md, "Files"): the VMs' QEMU
/// processes may only traverse it on their way to `agent/vms` (0711); the image
/// store is the server's alone. The store (`store/` 0700, `store.redb` 0600) and
/// the agent (`agent/` and below) set their own when they open them.
fn secure_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    dir_mode(data_dir, 0o711)?;
    secure_image_dir(&data_dir.join("images"))
}

/// The image store: 0700, and the images already in it 0600 (tightening an
/// older data directory). QEMU never reads it: the agent copies images into the
/// VM directories as root.
fn secure_image_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    dir_mode(dir, 0o700)?;
    let context = || format!("securing the image store {}", dir.display());
    for entry in std::fs::read_dir(dir).with_context(context)? {
        let entry = entry.with_context(context)?;
        if entry.file_type().with_context(context)?.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))
                .with_context(context)?;
        }
    }
    Ok(())
}

/// `<data-dir>/import`, created 0700: the files admins put there for
/// server-path imports are the server's alone, like the image store.
fn default_import_dir(data_dir: &Path) -> PathBuf {
    let dir = data_dir.join("import");
    if let Err(e) = dir_mode(&dir, 0o700) {
        tracing::warn!("{e:#}");
    }
    dir
}

fn dir_mode(dir: &Path, mode: u32) -> anyhow::Result<()> {
    yunhan_agent::compute::set_dir_mode(dir, mode)
        .with_context(|| format!("cannot create {} with mode {mode:04o}", dir.display()))
}

/// A watch channel that flips to true on SIGINT or SIGTERM.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    yunhan_store::open(url).await.with_context(|| {
        if url.starts_with("etcd://") {
            format!("cannot reach etcd at {url}; is the cluster up? ('scripts/setup' installs etcd-server)")
        } else {
            format!("cannot open the store at {url}; the embedded store is used by one process at a time — is another 'yunhan up' or 'yunhan server' running on it?")
        }
    })
}

async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen}; is another Yunhan running? Pick another address with --listen")
    })
}

/// First start: create the admin and write the client config.
async fn bootstrap(objects: &Objects, endpoint: &str, config_path: PathBuf) -> anyhow::Result<()> {
    match yunhan_api::bootstrap(objects)
        .await
        .context("bootstrapping the admin identity")?
    {
        Some(b) => {
            let cfg = yunhan_cli::ClientConfig {
                endpoint: endpoint.to_string(),
                token: b.admin_token,
            };
            cfg.save(&config_path)
                .with_context(|| format!("writing the client config {}", config_path.display()))?;
            eprintln!(
                "created the admin user; client config written to {}",
                config_path.display()
            );
        }
        None => {
            // Keep an existing config pointing at where we listen now.
            if let Ok(mut cfg) = yunhan_cli::ClientConfig::load(&config_path) {
                if cfg.endpoint != endpoint {
                    cfg.endpoint = endpoint.to_string();
                    let _ = cfg.save(&config_path);
                }
            }
        }
    }
    Ok(())
}

fn spawn_controllers(
    store: Arc<dyn Store>,
    objects: Objects,
    tuning: &Tuning,
    ceph: Option<&yunhan_agent::storage::CephPool>,
    s3: Option<&crate::object_storage::ObjectStorage>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use yunhan_controller::ha::{HaMonitor, LocalOnly, SharedStorage};
    let policy = tuning.placement()?;
    let storage: Arc<dyn SharedStorage> = match ceph {
        Some(pool) => Arc::new(crate::ha::CephShared { pool: pool.clone() }),
        None => Arc::new(LocalOnly),
    };
    let ha = Arc::new(HaMonitor {
        grace: Duration::from_secs(tuning.ha_grace),
        storage,
    });
    let gateway = s3.map(|s| s.gateway.clone());
    let identity = format!("{}:{}", hostname(), std::process::id());
    let cfg = yunhan_controller::LeaderConfig {
        key: "/yunhan/leader/controllers".into(),
        identity,
        ttl: Duration::from_secs(3),
    };
    Ok(tokio::spawn(yunhan_controller::run_as_leader(
        store,
        cfg,
        shutdown,
        move |stop| {
            let controllers = yunhan_controller::Controllers {
                policy,
                ha: ha.clone(),
                gateway: gateway.clone(),
            };
            yunhan_controller::run_controllers(objects.clone(), controllers, stop)
        },
    )))
}

async fn serve_api(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    config: yunhan_api::ApiConfig,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    yunhan_api::serve(listener, store, config, async move {
        let _ = shutdown.wait_for(|s| *s).await;
    })
    .await
    .context("API server failed")
}

/// `config`: the global `--config` (where the admin's client config goes; default
/// `~/.config/yunhan/config.toml`).
pub async fn up(a: UpArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    init_logging();
    let data_dir = a.data_dir.unwrap_or_else(default_data_dir);
    secure_data_dir(&data_dir)?;
    let compute = yunhan_agent::ComputeConfig::default();
    // Before anything starts: a cloud whose host cannot run VMs is no cloud.
    let prepared = yunhan_agent::compute::prepare(&data_dir.join("agent"), &compute)
        .context("the host agent cannot run VMs here")?;
    let store_dir = data_dir.join("store");
    let store = open_store(&store_dir.to_string_lossy()).await?;
    let objects = Objects::new(store.clone());
    let listener = bind(a.listen).await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let config = config.unwrap_or_else(yunhan_cli::config::default_path);
    bootstrap(&objects, &endpoint, config).await?;
    if !a.no_public_network {
        if let Some(x) = yunhan_api::ensure_public_network(&objects, &a.public_cidr).await? {
            eprintln!(
                "created the external network {:?} ({}) on this host",
                x.metadata.name, x.spec.cidr
            );
        }
    }

    let name = a.name.unwrap_or_else(hostname);
    let plane = (a.plane).start(&store, objects.clone(), &data_dir, &name);
    let plane = plane.await?;
    let shutdown = plane.shutdown.clone();
    let import_dir = a
        .import_dir
        .unwrap_or_else(|| default_import_dir(&data_dir));
    let api_cfg = plane.api_config(data_dir.join("images"), import_dir)?;
    let agent_cfg = yunhan_agent::AgentConfig {
        name,
        address: a.listen.ip().to_string(),
        state_dir: data_dir.join("agent"),
        lease_ttl: Duration::from_secs(3),
        gpus: Vec::new(),
        compute,
        network: yunhan_agent::NetworkConfig {
            netns: a.netns,
            ..Default::default()
        },
        ceph: plane.ceph.clone(),
        metrics: a.history.config(a.metrics_listen),
    };
    let agent = tokio::spawn(yunhan_agent::run_prepared(
        objects.clone(),
        agent_cfg,
        prepared,
        shutdown.clone(),
    ));
    let s3_line = match &plane.s3 {
        Some(s) => format!("S3 {}, ", s.endpoint()),
        None => String::new(),
    };
    let console = console_link(&objects, &endpoint).await;
    let announce = format!(
        "Yunhan is up: API {endpoint}, {s3_line}data in {}\n{console}\ntry: yunhan host list",
        data_dir.display()
    );
    // Announced once the images asked for are imported, so the tour can use them.
    tokio::spawn(async move {
        crate::import::import_images(endpoint, a.import_images).await;
        eprintln!("{announce}");
    });
    let api = serve_api(listener, store, api_cfg, shutdown);
    // The all-in-one cloud is no cloud without its host: stop if the agent cannot run.
    tokio::pin!(api);
    tokio::pin!(agent);
    let agent_result = tokio::select! {
        r = &mut api => { r?; None }
        r = &mut agent => Some(r),
    };
    match agent_result {
        Some(r) => {
            r.context("agent task")?.context("the host agent stopped")?;
            api.await?;
        }
        // Shutting down: the agent writes its metric history back before it returns.
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
        }
    }
    plane.stopped().await;
    Ok(())
}

/// The web console's line of the announcement: a one-time login link for the admin
/// (`yunhan console` makes another; `yunhan user set-password` gives a password).
async fn console_link(objects: &Objects, endpoint: &str) -> String {
    use yunhan_store::objects::GLOBAL_SCOPE;
    let admin = objects
        .get_by_name::<yunhan_model::User>(GLOBAL_SCOPE, "admin")
        .await;
    let link = match admin {
        Ok(Some(admin)) => yunhan_api::mint_link(objects, &admin.metadata.id)
            .await
            .ok(),
        _ => None,
    };
    match link {
        Some(l) => format!(
            "web console: {endpoint}/console/#login={} (logs in as admin, once, within 15 min; 'yunhan console' prints a new link)",
            l.login_link
        ),
        None => format!("web console: {endpoint}/console/ (log in with 'yunhan console')"),
    }
}

/// `config`: the global `--config`, where the admin's client config goes unless
/// `--write-config` says otherwise.
pub async fn server(a: ServerArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    init_logging();
    let store = open_store(&a.store).await?;
    let objects = Objects::new(store.clone());
    let listener = bind(a.listen).await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    bootstrap(
        &objects,
        &endpoint,
        a.write_config
            .or(config)
            .unwrap_or_else(yunhan_cli::config::default_path),
    )
    .await?;
    let host = hostname();
    let plane = (a.plane).start(&store, objects, &a.state_dir, &host);
    let plane = plane.await?;
    eprintln!(
        "Yunhan server: API {endpoint}, web console {endpoint}/console/, store {}",
        a.store
    );
    secure_image_dir(&a.image_dir)?;
    let api_cfg = plane.api_config(a.image_dir, a.import_dir)?;
    serve_api(listener, store, api_cfg, plane.shutdown.clone()).await?;
    plane.stopped().await;
    Ok(())
}

pub async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    init_logging();
    if a.lease_ttl == 0 {
        bail!("--lease-ttl must be at least 1 second");
    }
    let store = open_store(&a.store).await?;
    let ceph = a.ceph.apply().await?;
    let cfg = yunhan_agent::AgentConfig {
        name: a.name.unwrap_or_else(hostname),
        address: a.address,
        state_dir: a.state_dir,
        lease_ttl: Duration::from_secs(a.lease_ttl),
        gpus: a.gpus,
        compute: yunhan_agent::ComputeConfig {
            accel: a.accel,
            qemu_user: Some(a.qemu_user),
            stop_timeout: Duration::from_secs(a.stop_timeout),
            ..Default::default()
        },
        network: yunhan_agent::NetworkConfig {
            netns: a.netns,
            vtep: a.vtep,
            ..Default::default()
        },
        ceph,
        metrics: a.history.config(a.metrics_listen),
    };
    yunhan_agent::run(Objects::new(store), cfg, shutdown_signal()).await?;
    Ok(())
}
