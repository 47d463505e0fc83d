//! The agent's stable identity: the same deployment is the same agent across restarts, so
//! it finds and adopts the runs it left in flight.
//!
//! W&B's agent labels workloads with the server-assigned agent name, which changes on every
//! start; a restarted agent never sees its runs again. We label them with an identity
//! derived from configuration only.

use rlaunch_model::names;

use crate::config::Config;

/// The identity, as a valid label value:
/// 1. `identity` (flag, `LAUNCH_AGENT_IDENTITY` or the file), as given;
/// 2. in Helm mode, `<release>.<namespace>` (`WANDB_RELEASE_NAME`, `POD_NAMESPACE`);
/// 3. otherwise `<entity>-<hash of the sorted queue names>`.
pub fn identity(config: &Config, entity: &str) -> String {
    if let Some(explicit) = config.identity.as_deref().filter(|s| !s.trim().is_empty()) {
        return names::label_value(explicit);
    }
    if let Some(release) = &config.release_name {
        let raw = match &config.pod_namespace {
            Some(namespace) => format!("{release}.{namespace}"),
            None => release.clone(),
        };
        return names::label_value(&raw);
    }
    let mut queues = config.queues.clone();
    queues.sort();
    queues.dedup();
    let hash = names::stable_hash(&format!("{entity}\n{}", queues.join("\n")));
    let prefix: String = names::label_value(entity).chars().take(40).collect();
    names::label_value(&format!("{prefix}-{}", &hash[..10]))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::cli::Flags;

    fn config(text: &str, env: &[(&str, &str)]) -> Config {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::resolve(Some((Path::new("c.yaml"), text)), &env, &Flags::default()).unwrap()
    }

    #[test]
    fn explicit_identity_wins() {
        let c = config(
            "queues: [a]\nidentity: prod-agent\n",
            &[("WANDB_RELEASE_NAME", "r")],
        );
        assert_eq!(identity(&c, "team"), "prod-agent");
    }

    #[test]
    fn helm_release_and_namespace() {
        let c = config(
            "queues: [a]\n",
            &[("WANDB_RELEASE_NAME", "launch"), ("POD_NAMESPACE", "wandb")],
        );
        assert_eq!(identity(&c, "team"), "launch.wandb");
    }

    #[test]
    fn derived_identity_is_stable_and_ignores_queue_order() {
        let a = identity(&config("queues: [x, y]\n", &[]), "Team");
        let b = identity(&config("queues: [y, x]\n", &[]), "Team");
        assert_eq!(a, b);
        assert!(a.starts_with("Team-"), "{a}");
        assert!(names::is_label_value(&a));
        assert_ne!(a, identity(&config("queues: [x]\n", &[]), "Team"));
    }
}
