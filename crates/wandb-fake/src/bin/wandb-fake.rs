//! `wandb-fake`: serves the fake W&B server on a port, for manual runs and for the reference
//! agent. Admin API under `/_admin/` (see the `rlaunch_wandb_fake::admin` docs).

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use rlaunch_wandb_fake::{FakeConfig, FakeUser, FakeWandb};

/// Serve a fake W&B server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// An accepted API key as `KEY` or `KEY=USERNAME:ENTITY` (repeatable; default: the
    /// built-in fake key for `fake-user`/`fake-entity`).
    #[arg(long = "api-key")]
    api_keys: Vec<String>,
    /// Seconds a popped, un-acked item stays leased.
    #[arg(long, default_value_t = 60.0)]
    lease_seconds: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = FakeConfig::default();
    if !args.api_keys.is_empty() {
        config.api_keys.clear();
        for spec in &args.api_keys {
            let (key, user) = match spec.split_once('=') {
                Some((key, user)) => (key, user),
                None => (spec.as_str(), "fake-user:fake-entity"),
            };
            let (username, entity) = user
                .split_once(':')
                .with_context(|| format!("--api-key {key}=... must be USERNAME:ENTITY"))?;
            config.api_keys.insert(
                key.to_owned(),
                FakeUser {
                    username: username.to_owned(),
                    entity: entity.to_owned(),
                    teams: Vec::new(),
                },
            );
        }
    }
    anyhow::ensure!(
        args.lease_seconds.is_finite() && args.lease_seconds > 0.0,
        "--lease-seconds must be positive"
    );
    config.lease = Duration::from_secs_f64(args.lease_seconds);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let fake = FakeWandb::serve_on(listener, config).await?;
    println!("wandb-fake listening on {}", fake.base_url);
    tokio::select! {
        () = fake_wait(fake) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

async fn fake_wait(fake: FakeWandb) {
    fake.wait().await;
}
