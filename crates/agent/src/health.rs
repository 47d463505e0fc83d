//! `/livez`, `/readyz` and `/metrics` on axum.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// What `/readyz` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Not registered with W&B yet.
    Starting,
    /// Registered and polling.
    Polling {
        /// Server-assigned agent name.
        agent_name: String,
    },
    /// W&B refuses the API key: polling is stopped until it is accepted again.
    Unauthorized {
        /// The error, without secrets.
        reason: String,
    },
    /// Leader election is on and another replica holds the Lease: this one waits, ready
    /// (a standby that failed readiness would stall every rolling update).
    Standby {
        /// The Lease it waits for.
        lease: String,
    },
    /// Shutting down.
    Stopping,
}

/// Shared readiness. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Health(Arc<Mutex<Readiness>>);

impl Default for Health {
    fn default() -> Self {
        Health(Arc::new(Mutex::new(Readiness::Starting)))
    }
}

impl Health {
    /// Set the readiness.
    pub fn set(&self, readiness: Readiness) {
        if let Ok(mut current) = self.0.lock() {
            *current = readiness;
        }
    }

    /// The current readiness.
    pub fn get(&self) -> Readiness {
        self.0
            .lock()
            .map(|r| r.clone())
            .unwrap_or(Readiness::Starting)
    }
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(health): State<Health>) -> (StatusCode, String) {
    match health.get() {
        Readiness::Polling { agent_name } => (
            StatusCode::OK,
            format!("ready: agent {agent_name} polling\n"),
        ),
        Readiness::Starting => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: not registered with W&B yet\n".to_owned(),
        ),
        Readiness::Unauthorized { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not polling: {reason}\n"),
        ),
        Readiness::Standby { lease } => (
            StatusCode::OK,
            format!("standby: waiting to hold the Lease {lease}\n"),
        ),
        Readiness::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".to_owned()),
    }
}

async fn metrics(
    State(metrics): State<Metrics>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

fn health_router(health: Health) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(health)
}

fn metrics_router(metrics_state: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(metrics_state)
}

/// Binds the health and metrics addresses (one server when they are equal) and serves
/// until `shutdown`. Returns the bound addresses.
pub async fn serve(
    health_addr: SocketAddr,
    metrics_addr: SocketAddr,
    health: Health,
    metrics_state: Metrics,
    shutdown: Shutdown,
) -> Result<(SocketAddr, SocketAddr), Error> {
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen { addr, what, source })
    };
    if health_addr == metrics_addr {
        let listener = bind(health_addr, "health").await?;
        let bound = listener.local_addr().unwrap_or(health_addr);
        spawn_server(
            listener,
            health_router(health).merge(metrics_router(metrics_state)),
            shutdown,
        );
        return Ok((bound, bound));
    }
    let health_listener = bind(health_addr, "health").await?;
    let metrics_listener = bind(metrics_addr, "metrics").await?;
    let bound = (
        health_listener.local_addr().unwrap_or(health_addr),
        metrics_listener.local_addr().unwrap_or(metrics_addr),
    );
    spawn_server(health_listener, health_router(health), shutdown.clone());
    spawn_server(metrics_listener, metrics_router(metrics_state), shutdown);
    Ok(bound)
}

fn spawn_server(listener: TcpListener, router: Router, mut shutdown: Shutdown) {
    tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            shutdown.wait().await;
        });
        if let Err(error) = serve.await {
            tracing::error!(%error, "health/metrics server stopped");
        }
    });
}
