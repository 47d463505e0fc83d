//! Leader-election settings: `leader_election` and the `lease_*` keys, their
//! `LAUNCH_AGENT_*` variables (the Helm chart sets them) and flags. Pure: env and flags are
//! passed in.

use std::collections::BTreeMap;
use std::time::Duration;

use super::file::ConfigFile;
use crate::cli::Flags;
use crate::error::ConfigError;

/// Whether this replica must hold a Lease before it polls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderElection {
    /// One replica: it polls as soon as it is registered.
    Off,
    /// Several replicas: only the holder of the Lease registers, adopts and polls.
    On(LeaseSettings),
}

/// Which Lease, who holds it, and its timings (whole seconds, `retry < renew < duration`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Lease name; `None`: derived from the agent identity at start.
    pub name: Option<String>,
    /// Namespace of the Lease (`LAUNCH_AGENT_LEASE_NAMESPACE`, else `POD_NAMESPACE`, else
    /// `default`).
    pub namespace: String,
    /// Base of the holder identity (`POD_NAME`); `None`: the hostname at start. The
    /// election adds a suffix drawn per process, so two processes never share a holder.
    pub holder: Option<String>,
    /// How long a holder's claim lasts after its last renewal.
    pub duration: Duration,
    /// How long the leader keeps trying a failing renewal before it gives up leadership.
    pub renew_deadline: Duration,
    /// Between renewals by the leader and between tries by a standby.
    pub retry_period: Duration,
}

struct Timing {
    key: &'static str,
    var: &'static str,
    flag: &'static str,
    default: u64,
}

const DURATION: Timing = Timing {
    key: "lease_duration_seconds",
    var: "LAUNCH_AGENT_LEASE_DURATION_SECONDS",
    flag: "--lease-duration",
    default: 15,
};
const RENEW: Timing = Timing {
    key: "renew_deadline_seconds",
    var: "LAUNCH_AGENT_RENEW_DEADLINE_SECONDS",
    flag: "--renew-deadline",
    default: 10,
};
const RETRY: Timing = Timing {
    key: "retry_period_seconds",
    var: "LAUNCH_AGENT_RETRY_PERIOD_SECONDS",
    flag: "--retry-period",
    default: 2,
};

const SECONDS_FIX: &str = "write a whole number of seconds of at least 1";

/// Resolves the settings: file, then env, then flags.
pub(crate) fn resolve(
    file: Option<&ConfigFile<'_>>,
    env: &BTreeMap<String, String>,
    flags: &Flags,
) -> Result<LeaderElection, ConfigError> {
    let var = |name: &str| env.get(name).filter(|value| !value.is_empty());
    let mut on = match file {
        Some(file) => file.boolean("leader_election")?.unwrap_or(false),
        None => false,
    };
    if let Some(value) = var("LAUNCH_AGENT_LEADER_ELECTION") {
        on = parse_bool(value).ok_or_else(|| ConfigError::Env {
            name: "LAUNCH_AGENT_LEADER_ELECTION".to_owned(),
            problem: format!("must be `true` or `false`, found `{value}`"),
            fix: "write `true` or `false`".to_owned(),
        })?;
    }
    if flags.leader_election {
        on = true;
    }
    let text = |key: &str, name: &str, flag: &Option<String>| -> Result<_, ConfigError> {
        let mut value = match file {
            Some(file) => file.string(key)?,
            None => None,
        };
        if let Some(from_env) = var(name) {
            value = Some(from_env.clone());
        }
        Ok(flag.clone().or(value).filter(|v| !v.trim().is_empty()))
    };
    let name = text("lease_name", "LAUNCH_AGENT_LEASE_NAME", &flags.lease_name)?;
    let namespace = text(
        "lease_namespace",
        "LAUNCH_AGENT_LEASE_NAMESPACE",
        &flags.lease_namespace,
    )?
    .or_else(|| var("POD_NAMESPACE").cloned())
    .unwrap_or_else(|| "default".to_owned());
    let settings = LeaseSettings {
        name,
        namespace,
        holder: var("POD_NAME").cloned(),
        duration: timing(&DURATION, file, env, flags.lease_duration)?,
        renew_deadline: timing(&RENEW, file, env, flags.renew_deadline)?,
        retry_period: timing(&RETRY, file, env, flags.retry_period)?,
    };
    check(&settings)?;
    Ok(if on {
        LeaderElection::On(settings)
    } else {
        LeaderElection::Off
    })
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn timing(
    t: &Timing,
    file: Option<&ConfigFile<'_>>,
    env: &BTreeMap<String, String>,
    flag: Option<u64>,
) -> Result<Duration, ConfigError> {
    let mut secs = t.default;
    if let Some(file) = file
        && let Some(value) = file.integer(t.key)?
    {
        secs = u64::try_from(value)
            .ok()
            .filter(|s| *s >= 1)
            .ok_or_else(|| ConfigError::Invalid {
                path: file.path.to_owned(),
                key: t.key.to_owned(),
                problem: format!("must be at least 1, found {value}"),
                fix: SECONDS_FIX.to_owned(),
            })?;
    }
    if let Some(value) = env.get(t.var).filter(|v| !v.is_empty()) {
        secs = value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s >= 1)
            .ok_or_else(|| ConfigError::Env {
                name: t.var.to_owned(),
                problem: format!("must be a whole number of seconds, found `{value}`"),
                fix: SECONDS_FIX.to_owned(),
            })?;
    }
    if let Some(value) = flag {
        if value == 0 {
            return Err(ConfigError::Flag {
                flag: t.flag.to_owned(),
                problem: "must be at least 1, found 0".to_owned(),
                fix: SECONDS_FIX.to_owned(),
            });
        }
        secs = value;
    }
    Ok(Duration::from_secs(secs))
}

fn check(settings: &LeaseSettings) -> Result<(), ConfigError> {
    if settings.retry_period < settings.renew_deadline
        && settings.renew_deadline < settings.duration
    {
        return Ok(());
    }
    Err(ConfigError::Env {
        name: "LAUNCH_AGENT_RETRY_PERIOD_SECONDS, LAUNCH_AGENT_RENEW_DEADLINE_SECONDS and LAUNCH_AGENT_LEASE_DURATION_SECONDS".to_owned(),
        problem: format!(
            "need retry period < renew deadline < lease duration, found {}s, {}s, {}s",
            settings.retry_period.as_secs(),
            settings.renew_deadline.as_secs(),
            settings.duration.as_secs()
        ),
        fix: "keep the defaults (2, 10, 15) or scale them together (in the file: retry_period_seconds, renew_deadline_seconds, lease_duration_seconds)".to_owned(),
    })
}
