//! `ratchet serve`: the long-running node.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use ratchet_core::{Config, Kernel};
use ratchet_server::listener::{ConnectionLimits, raise_open_file_limit};
use ratchet_service::Service;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Folder whose subfolders are tasks (repeatable; default: server.tasks, `examples/tasks`).
    #[arg(long = "tasks", value_name = "DIR")]
    tasks: Vec<PathBuf>,
    /// Address to listen on (default: server.bind, 127.0.0.1:8000).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    #[command(flatten)]
    storage: super::StorageArgs,
}

pub async fn serve(mut config: Config, args: ServeArgs) -> anyhow::Result<ExitCode> {
    if !args.tasks.is_empty() {
        config.server.tasks = args.tasks;
    }
    if let Some(bind) = args.bind {
        config.server.bind = bind;
    }
    args.storage.apply(&mut config);
    let open_files = raise_open_file_limit().unwrap_or(usize::MAX);
    if open_files < config.server.max_connections {
        crate::say!(
            warn: "warning: the open-file limit allows {open_files} connections; server.max_connections ({}) is lowered to it",
            config.server.max_connections
        );
    }
    let listener = tokio::net::TcpListener::bind(&config.server.bind)
        .await
        .with_context(|| format!("cannot listen on {} (server.bind / --bind)", config.server.bind))?;
    let node = Node::start(config).await?;
    let surfaces = node.surfaces()?;
    ratchet_server::check_exposure(
        &node.service.config().server,
        listener.local_addr()?,
        node.service.plugins().auth.is_some(),
    )
    .map_err(anyhow::Error::msg)?;
    for surface in &surfaces {
        crate::say!("plugin {}", surface.info());
    }
    let service = Arc::clone(&node.service);
    crate::say!(
        "ratchet serving on http://{} with {} task(s){}, {} worker(s), {} job slot(s); node {}",
        listener.local_addr()?,
        service.task_count(),
        if node.watching { " (reloaded on change)" } else { "" },
        service.config().workers.count,
        service.concurrency(),
        service.node
    );
    let server_config = &service.config().server;
    let app =
        ratchet_server::app(Arc::clone(&service), server_config.clone(), &surfaces, node.stopped.clone());
    let limits = ConnectionLimits {
        header_read_timeout: ratchet_server::seconds(server_config.header_read_timeout_secs),
        max_connections: server_config.max_connections.min(open_files),
    };
    let server = tokio::spawn(ratchet_server::listener::serve(listener, app, limits, node.stopped.clone()));
    wait_for_signal().await;
    node.stop().await;
    let _ = server.await;
    crate::say!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// A running node: its service with the queue's consumers, the scheduler, the task watcher
/// and the registry pollers; what `serve` and `mcp` share.
pub struct Node {
    pub service: Arc<Service>,
    kernel: Arc<Kernel>,
    stop: watch::Sender<bool>,
    /// Turns true when the node stops.
    pub stopped: watch::Receiver<bool>,
    /// Cancelled when the node stops: sessions of the MCP surface end with it.
    pub shutdown: CancellationToken,
    consumers: Vec<tokio::task::JoinHandle<()>>,
    /// File sources are watched for changes.
    pub watching: bool,
    _watcher: Option<tokio::task::JoinHandle<()>>,
    _polling: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Loads the plugins (first: one that refuses its configuration stops start-up before
    /// anything is created), opens the database, loads the tasks, starts the workers, and
    /// starts working the queue and watching the task sources.
    pub async fn start(config: Config) -> anyhow::Result<Node> {
        let plugins = ratchet_plugin_host::Plugins::load(
            &config.effective_plugins(),
            &config.egress,
            &config.storage.data_dir.join("plugin-cache"),
        )?;
        let options = ratchet_storage::StoreOptions {
            keep_reserve: true,
            ring_doorbell: false,
            node: Some(ratchet_service::node_name()),
            ..Default::default()
        };
        let store = super::open_store_with(&config, options).await?;
        for plugin in plugins.list() {
            crate::say!("plugin {plugin}");
        }
        // The loaders just loaded list the tasks: each plugin is loaded once.
        let registry = super::registry_with(&config, &plugins)?;
        // Secrets this node cannot open (no key, another key) stop start-up, naming the fix.
        let key = ratchet_service::secrets::SecretKey::load(&config)?;
        let secrets = ratchet_service::secrets::Secrets::open(store.clone(), key).await?;
        let workers = config.workers.count;
        let kernel = Arc::new(Kernel::start(config, workers)?);
        let service = Arc::new(
            Service::new(store, Arc::clone(&kernel), Arc::new(registry))
                .with_plugins(Arc::new(plugins))
                .with_secrets(secrets),
        );
        // A database that refuses writes (a full disk) does not stop the node: it serves reads,
        // answers /ready 503 naming the failure, and records itself once writes work again.
        if let Err(error) = service.register().await {
            crate::say!(
                warn: "warning: cannot record this node in the database ({error}); serving, not ready, retrying"
            );
        }
        let (stop, stopped) = watch::channel(false);
        let consumers = service.start(stopped.clone());
        let registry = &service.config().registry;
        let timing = ratchet_service::reload::ReloadTiming {
            debounce: Duration::from_millis(registry.debounce_ms),
            poll: Duration::from_secs_f64(registry.poll_secs),
            polling: registry.polling,
        };
        let watcher = service.watch_tasks(service.config().file_sources()?, timing, stopped.clone());
        // HTTPS registries: polled once before serving (a registry that cannot be reached
        // serves the index kept from before), then every poll interval.
        let mut registries = Vec::new();
        for source in service.config().remote_sources()? {
            let registry = ratchet_service::remote::Registry::new(source, &service.config().storage.data_dir)
                .map_err(anyhow::Error::msg)?;
            service.poll_and_log(&registry).await;
            registries.push(registry);
        }
        let polling = service.poll_registries(registries, stopped.clone());
        Ok(Node {
            service,
            kernel,
            stop,
            stopped,
            shutdown: CancellationToken::new(),
            consumers,
            watching: watcher.is_some(),
            _watcher: watcher,
            _polling: polling,
        })
    }

    /// The built-in API surfaces `server.surfaces` names, and `/mcp` unless `mcp.enabled` is
    /// false.
    pub fn surfaces(&self) -> anyhow::Result<Vec<Box<dyn ratchet_server::ApiSurface>>> {
        let config = self.service.config();
        let mut surfaces = crate::builtin_surfaces(&config.server.surfaces).map_err(anyhow::Error::msg)?;
        if config.mcp.enabled {
            surfaces.push(Box::new(ratchet_mcp::McpSurface::new(self.shutdown.clone())));
        }
        Ok(surfaces)
    }

    /// Stops claiming jobs, gives running ones `server.shutdown_grace_secs` to finish (then
    /// releases them), leaves the cluster and stops the workers.
    pub async fn stop(self) {
        let grace = Duration::from_secs_f64(self.service.config().server.shutdown_grace_secs);
        crate::say!(
            "stopping: no new jobs are claimed; {} running job(s) get {grace:?} to finish",
            self.service.in_flight()
        );
        self.shutdown.cancel();
        let _ = self.stop.send(true);
        drain(&self.service, self.consumers, grace).await;
        self.service.deregister().await;
        self.kernel.shutdown().await;
    }
}

/// Waits for the consumers to finish their jobs, up to `grace`; then releases what is left.
async fn drain(service: &Service, consumers: Vec<tokio::task::JoinHandle<()>>, grace: Duration) {
    let all = async {
        for consumer in consumers {
            let _ = consumer.await;
        }
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        let released = service.release_in_flight().await;
        crate::say!("grace period over: released {released} running job(s) back to the queue");
    }
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
