//! `wandb-fake`: serves the fake W&B server, for the local demo and for tests that run it
//! as a child process. Admin API under `/_admin/` (see the `rlaunch_wandb_fake` crate
//! docs).
//!
//! Once it accepts connections it prints exactly one line on stdout,
//! `wandb-fake listening on http://HOST:PORT`, so a parent started with `--addr
//! 127.0.0.1:0` reads the port from it. SIGTERM or Ctrl-C stops it with exit code 0.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeConfig, FakeUser, FakeWandb};

/// Serve a fake W&B server (GraphQL validated against the client's schema, admin API under
/// /_admin/).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free one (read it from the printed line).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// An accepted API key as `KEY` or `KEY=USERNAME:ENTITY` (repeatable; default: the
    /// built-in fake key for `fake-user`/`fake-entity`).
    #[arg(long = "api-key")]
    api_keys: Vec<String>,
    /// Seconds a popped, un-acked item stays leased.
    #[arg(long, default_value_t = 60.0)]
    lease_seconds: f64,
    /// State of the run an ack creates: `pending` (the run has not called wandb.init), or
    /// e.g. `running` for workloads that never call it.
    #[arg(long, default_value = "pending")]
    acked_run_state: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = config(&args)?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {} (is the port in use?)", args.addr))?;
    let fake = FakeWandb::serve_on(listener, config).await?;
    println!("wandb-fake listening on {}", fake.base_url);
    tokio::select! {
        () = fake.wait() => {}
        () = stop_signal() => {}
    }
    Ok(())
}

fn config(args: &Args) -> anyhow::Result<FakeConfig> {
    let mut config = FakeConfig::default();
    if !args.api_keys.is_empty() {
        config.api_keys.clear();
        for spec in &args.api_keys {
            let (key, user) = parse_key(spec)?;
            config.api_keys.insert(key.to_owned(), user);
        }
    }
    config.lease = Duration::try_from_secs_f64(args.lease_seconds)
        .ok()
        .filter(|lease| !lease.is_zero())
        .with_context(|| {
            format!(
                "--lease-seconds must be a positive number of seconds a duration can hold, not {}",
                args.lease_seconds
            )
        })?;
    config.acked_run_state = args.acked_run_state.clone();
    Ok(config)
}

fn parse_key(spec: &str) -> anyhow::Result<(&str, FakeUser)> {
    let (key, user) = match spec.split_once('=') {
        Some((key, user)) => (key, user),
        None => (spec, "fake-user:"),
    };
    let (username, entity) = user
        .split_once(':')
        .with_context(|| format!("--api-key {key}=... must be KEY=USERNAME:ENTITY"))?;
    let entity = if entity.is_empty() {
        FAKE_ENTITY
    } else {
        entity
    };
    let user = FakeUser {
        username: username.to_owned(),
        entity: entity.to_owned(),
        teams: Vec::new(),
    };
    Ok((key, user))
}

/// SIGTERM (how a test or a pod stops it) or Ctrl-C.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    () = ctrl_c => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
