//! `ratchet serve`: the long-running node.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Args;
use kernel::service::Service;
use kernel::{Config, Kernel};
use serde_json::json;
use tokio::sync::watch;

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
    let listener = tokio::net::TcpListener::bind(&config.server.bind)
        .await
        .with_context(|| format!("cannot listen on {} (server.bind / --bind)", config.server.bind))?;
    let store = super::open_store(&config).await?;
    let registry = super::load_registry(&config)?;
    let grace = Duration::from_secs_f64(config.server.shutdown_grace_secs);
    let workers = config.workers.count;
    let plugins = kernel::plugins::Plugins::load(
        &config.plugins,
        &config.egress,
        &config.storage.data_dir.join("plugin-cache"),
    )?;
    for plugin in plugins.list() {
        eprintln!("plugin {plugin}");
    }
    let kernel = Arc::new(Kernel::start(config, workers)?);
    let service = Arc::new(
        Service::new(store, Arc::clone(&kernel), Arc::new(registry)).with_plugins(Arc::new(plugins)),
    );
    service.register().await.context("cannot record this node in the database")?;
    let (stop, stopped) = watch::channel(false);
    let consumers = service.start(stopped.clone());
    eprintln!(
        "ratchet serving on http://{} with {} task(s), {} worker(s), {} job slot(s); node {}",
        listener.local_addr()?,
        service.registry.len(),
        workers,
        service.concurrency(),
        service.node
    );
    let app = Router::new()
        .route("/health", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .with_state(Arc::clone(&service));
    let mut http_stop = stopped.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = http_stop.changed().await;
        };
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await
    });
    wait_for_signal().await;
    eprintln!(
        "stopping: no new jobs are claimed; {} running job(s) get {grace:?} to finish",
        service.in_flight()
    );
    let _ = stop.send(true);
    drain(&service, consumers, grace).await;
    service.deregister().await;
    kernel.shutdown().await;
    let _ = server.await;
    eprintln!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
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
        eprintln!("grace period over: released {released} running job(s) back to the queue");
    }
}

async fn wait_for_signal() {
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

/// Ready when the database answers and at least one worker is up.
async fn ready(State(service): State<Arc<Service>>) -> (StatusCode, axum::Json<serde_json::Value>) {
    // The pool waits up to 30 s for a connection; readiness must answer fast.
    let database = match tokio::time::timeout(Duration::from_secs(2), service.store.job_counts()).await {
        Ok(counts) => counts.map_err(|e| e.to_string()),
        Err(_) => Err("no answer within 2 s".to_owned()),
    };
    let workers = service.kernel.pool().unavailable();
    let ok = database.is_ok() && workers.is_none();
    let body = json!({
        "status": if ok { "ready" } else { "not ready" },
        "database": database.as_ref().map_or_else(Clone::clone, |_| "ok".into()),
        "workers": workers.unwrap_or_else(|| "ok".into()),
        "jobs": database.map(|counts| counts.into_iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>()).unwrap_or_default(),
    });
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, axum::Json(body))
}
