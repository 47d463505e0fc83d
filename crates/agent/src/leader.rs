//! Lease-based leader election, so the agent can run with `replicas > 1`.
//!
//! We use `kube-lease-manager`: it is maintained, built on the same `kube` and
//! `k8s-openapi` versions as the rest of the agent (no second TLS stack: it asks only for
//! kube's `client` feature), takes and renews the Lease with server-side apply (two
//! replicas can never both hold it), and needs only get, create and patch on the one
//! Lease, which is what the Helm chart grants. It renews `grace` seconds before expiry; we
//! set `grace = duration - retry_period`, so the leader renews every retry period, and give
//! its Kubernetes client a read timeout of the renew deadline, so a renewal that hangs
//! fails within it.
//!
//! The holder identity is `POD_NAME` (else the hostname) plus a suffix drawn per process,
//! so two agents started by mistake under one name still compete instead of both leading.
//!
//! Only the leader registers, adopts, polls and reports. A standby waits, ready (a standby
//! that failed `/readyz` would stall every rolling update). A leader whose renewal fails
//! stops at once and the process exits non-zero: Kubernetes restarts it as a fresh standby,
//! and the new leader adopts what it left.

use std::time::Duration;

use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseParams};
use tokio::sync::watch;

use crate::config::{Config, LeaseSettings};
use crate::error::Error;

/// Where this replica stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Standby,
    Leader,
    /// Was leader, then a renewal failed or another replica took the Lease.
    Lost,
}

/// The Lease this replica competes for.
#[derive(Clone, Debug)]
pub(crate) struct LeaseRef {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// The running election: `role` changes as the Lease does.
pub(crate) struct Election {
    pub(crate) lease: LeaseRef,
    pub(crate) role: watch::Receiver<Role>,
    task: tokio::task::JoinHandle<()>,
    manager: std::sync::Arc<LeaseManager>,
}

/// The Lease name when none is configured: `launch-agent-<identity>`, as a valid name.
pub(crate) fn default_lease_name(config: &Config) -> String {
    let identity = crate::identity::identity(config, config.entity.as_deref().unwrap_or(""));
    dns_name(&format!("launch-agent-{identity}"))
}

/// This process's name in the Lease: `POD_NAME` (else the hostname) plus a suffix drawn
/// at start. Without the suffix two agents started by mistake under one name (no
/// `POD_NAME`, the same host or container hostname) would both "hold" the Lease and both
/// poll; with it each process is its own candidate, and a restarted process waits for the
/// Lease like any other standby.
fn holder_identity(base: Option<&str>) -> String {
    let base = base.map(str::to_owned).unwrap_or_else(|| {
        hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "launch-agent".to_owned())
    });
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let suffix: String = (0..8)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{base}-{suffix}")
}

/// Lowercase, `[a-z0-9.-]`, at most 253 characters, alphanumeric at both ends (pure).
fn dns_name(raw: &str) -> String {
    let cleaned: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(253)
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "launch-agent".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Starts competing for the Lease (creating it if missing). Errors when the Lease cannot
/// be read or created (RBAC, no cluster).
pub(crate) async fn start(config: &Config, settings: &LeaseSettings) -> Result<Election, Error> {
    let lease = LeaseRef {
        namespace: settings.namespace.clone(),
        name: settings
            .name
            .clone()
            .unwrap_or_else(|| default_lease_name(config)),
    };
    let holder = holder_identity(settings.holder.as_deref());
    let lease_error = |source| Error::Lease {
        namespace: lease.namespace.clone(),
        name: lease.name.clone(),
        source,
    };
    let client = lease_client(settings.renew_deadline)
        .await
        .map_err(|e| lease_error(kube_lease_manager::LeaseManagerError::KubeError(e)))?;
    let duration = settings.duration.as_secs();
    let grace = duration
        .saturating_sub(settings.retry_period.as_secs())
        .max(1);
    let params = LeaseParams::new(holder.clone(), duration, grace);
    let manager = LeaseManager::new(
        client,
        lease.name.clone(),
        lease.namespace.clone(),
        params,
        LeaseCreateMode::AutoCreate,
    )
    .await
    .map_err(lease_error)?;
    let manager = std::sync::Arc::new(manager);
    let (sender, role) = watch::channel(Role::Standby);
    let task = tokio::spawn(follow(manager.clone(), sender, settings.retry_period));
    tracing::info!(lease = %lease.name, namespace = %lease.namespace, holder, "leader election on: waiting for the Lease");
    Ok(Election {
        lease,
        role,
        task,
        manager,
    })
}

/// A Kubernetes client whose requests fail after `deadline` instead of hanging.
async fn lease_client(deadline: Duration) -> Result<kube::Client, kube::Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config.read_timeout = Some(deadline);
    config.write_timeout = Some(deadline);
    config.connect_timeout = Some(deadline);
    kube::Client::try_from(config)
}

/// Keeps the Lease renewed (as leader) or retried (as standby) and publishes the role.
async fn follow(manager: std::sync::Arc<LeaseManager>, role: watch::Sender<Role>, retry: Duration) {
    loop {
        let current = *role.borrow();
        match manager.changed().await {
            Ok(true) => {
                tracing::info!("this replica holds the Lease: it is the leader");
                let _ = role.send(Role::Leader);
            }
            Ok(false) if current == Role::Leader => {
                let _ = role.send(Role::Lost);
                return;
            }
            Ok(false) => {}
            Err(error) if current == Role::Leader => {
                tracing::error!(%error, "renewing the Lease failed");
                let _ = role.send(Role::Lost);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "trying for the Lease failed; will retry");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

impl Election {
    /// Waits until this replica leads. `false` when the election ended first.
    pub(crate) async fn leading(&mut self) -> bool {
        self.role.wait_for(|r| *r == Role::Leader).await.is_ok()
    }

    /// Resolves once leadership is lost (never while it is held).
    pub(crate) async fn lost(&mut self) {
        if self.role.wait_for(|r| *r == Role::Lost).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops renewing and frees the Lease (a clean shutdown), so a standby takes over now.
    pub(crate) async fn release(self) {
        self.task.abort();
        let _ = self.task.await;
        if let Err(error) = self.manager.release().await {
            tracing::warn!(%error, "could not release the Lease; a standby takes over when it expires");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_process_is_its_own_candidate_under_one_name() {
        let a = holder_identity(Some("agent-0"));
        let b = holder_identity(Some("agent-0"));
        assert!(
            a.starts_with("agent-0-") && b.starts_with("agent-0-"),
            "{a} {b}"
        );
        assert_ne!(
            a, b,
            "two processes with one POD_NAME must not share the Lease"
        );
        assert_ne!(holder_identity(None), holder_identity(None));
    }

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(
            dns_name("launch-agent-Prod_Agent"),
            "launch-agent-prod-agent"
        );
        assert_eq!(dns_name("--x--"), "x");
        assert_eq!(dns_name("___"), "launch-agent");
        assert!(dns_name(&"a".repeat(400)).len() <= 253);
    }
}
