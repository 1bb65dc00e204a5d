//! The server's accept loop: HTTP/1.1 (with upgrades, for GraphQL subscriptions) over hyper,
//! with what a long-running server facing the open network needs and `axum::serve` does not
//! give: a deadline for each request head (which also ends idle keep-alive connections), a cap
//! on open connections below the open-file limit, and a graceful stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// File descriptors kept for everything but client connections (database, workers, plugins,
/// logs).
const RESERVED_FILES: u64 = 128;

/// How often a refused connection is reported at most.
const REFUSAL_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// How the accept loop treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Raises the soft open-file limit to the hard one, and returns the number of connections
/// that fits below it with [`RESERVED_FILES`] to spare.
pub fn raise_open_file_limit() -> Option<usize> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let limit =
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() { hard } else { soft };
    Some(limit.saturating_sub(RESERVED_FILES).max(1).min(usize::MAX as u64) as usize)
}

/// Serves `app` on `listener` until `stop` turns true; then stops accepting, asks every open
/// connection to finish its request in progress and close, and returns when they have.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut refusals = Refusals::default();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or the peer left before we took it: keep serving.
                    tracing::warn!("cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refusals.refused(limits.max_connections);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let builder = Arc::clone(&builder);
        let mut stop = stop.clone();
        connections.spawn(async move {
            let hyper_service = TowerToHyperService::new(service);
            let connection = builder.serve_connection(TokioIo::new(stream), hyper_service).with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let stopping = async move { stopped(&mut stop).await };
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stopping => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(permit);
        });
    }
    while connections.join_next().await.is_some() {}
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Counts connections refused at the cap, reporting them at most every
/// [`REFUSAL_REPORT_INTERVAL`].
#[derive(Default)]
struct Refusals {
    since_report: u64,
    reported: Option<Instant>,
}

impl Refusals {
    fn refused(&mut self, cap: usize) {
        self.since_report += 1;
        if self.reported.is_some_and(|at| at.elapsed() < REFUSAL_REPORT_INTERVAL) {
            return;
        }
        tracing::warn!(
            "{} connection(s) closed at once: {cap} are open (server.max_connections); idle ones \
             close after server.header_read_timeout_secs",
            self.since_report
        );
        self.since_report = 0;
        self.reported = Some(Instant::now());
    }
}
