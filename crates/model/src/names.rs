//! Kubernetes name and label-value rules, and the names the agent generates.
//!
//! W&B's agent's generateName helper deletes digits (`team42` →
//! `team`) and never bounds length; here every generated name keeps digits, is a valid
//! DNS-1123 label of at most 63 characters, and user-given names are validated up front.

/// Maximum length of a DNS-1123 label and of a label value.
pub const MAX_LABEL: usize = 63;

/// Lower-cases, maps `_` and `.` to `-`, drops anything outside `[a-z0-9-]`, collapses runs
/// of `-`, trims `-` at both ends and truncates to `max` characters.
pub fn dns_label(input: &str, max: usize) -> String {
    let mut out = String::with_capacity(input.len().min(max));
    for ch in input.chars() {
        let mapped = match ch {
            'A'..='Z' => ch.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' => ch,
            '_' | '.' | '-' | ' ' | '/' | ':' => '-',
            _ => continue,
        };
        if mapped == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(mapped);
    }
    truncate_trim(&mut out, max);
    out
}

/// W&B's agent's label-safe rule (`make_k8s_label_safe`): `_` → `-`, lower-case, keep
/// `[a-z0-9-]`, collapse `-`, truncate to 63, trim `-`. `None` when nothing is left.
pub fn label_safe(input: &str) -> Option<String> {
    let mut out = String::new();
    for ch in input.chars() {
        let mapped = match ch {
            'A'..='Z' => ch.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' => ch,
            '_' | '-' => '-',
            _ => continue,
        };
        if mapped == '-' && out.ends_with('-') {
            continue;
        }
        out.push(mapped);
    }
    let trimmed = out.trim_start_matches('-').to_owned();
    let mut out = trimmed;
    truncate_trim(&mut out, MAX_LABEL);
    (!out.is_empty()).then_some(out)
}

fn truncate_trim(out: &mut String, max: usize) {
    if out.len() > max {
        out.truncate(max);
    }
    while out.ends_with('-') {
        out.pop();
    }
    while out.starts_with('-') {
        out.remove(0);
    }
}

/// True for a DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LABEL
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// True for a DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// True for a label value: empty, or at most 63 of `[A-Za-z0-9_.-]` starting and ending
/// alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    let bytes = value.as_bytes();
    value.len() <= MAX_LABEL
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Any string as a valid label value (used for run ids and agent names, which W&B chooses).
pub fn label_value(input: &str) -> String {
    let mut out: String = input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    out.truncate(MAX_LABEL);
    let trimmed = out.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    trimmed.to_owned()
}

/// 64-bit FNV-1a, rendered as 16 lower-case hex digits. Stable across platforms and releases.
pub fn stable_hash(input: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in input.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// `generateName` prefix for a workload: `launch-<entity>-<project>-`, digits kept. The API
/// server appends 5 random characters, so the prefix is at most 58 characters.
pub fn generate_name_prefix(entity: &str, project: &str) -> String {
    let base = dns_label(&format!("launch-{entity}-{project}"), 57);
    let base = if base.is_empty() {
        "launch".to_owned()
    } else {
        base
    };
    format!("{base}-")
}

/// Deterministic workload name for a run queue item:
/// `launch-<entity>-<project>-<run id>-<6 hex of the item id>`, at most 63 characters. The
/// entity/project part is shortened first; run id and hash are always kept, so a retried
/// submit of the same item finds its own object and a requeued run (same run id, new item)
/// never collides with the previous attempt.
pub fn workload_name(entity: &str, project: &str, run_id: &str, run_queue_item_id: &str) -> String {
    let hash = &stable_hash(run_queue_item_id)[..6];
    let run = dns_label(run_id, 20);
    let suffix = if run.is_empty() {
        format!("-{hash}")
    } else {
        format!("-{run}-{hash}")
    };
    let mut base = dns_label(
        &format!("launch-{entity}-{project}"),
        MAX_LABEL - suffix.len(),
    );
    if base.is_empty() {
        base = "launch".to_owned();
    }
    format!("{base}{suffix}")
}

/// Name of the per-run API-key Secret, or the shared one in helm mode.
pub fn api_key_secret_name(run_id: &str, release: Option<&str>) -> String {
    let owner = release.unwrap_or(run_id);
    let owner = dns_label(owner, MAX_LABEL - "wandb-api-key-".len());
    if owner.is_empty() {
        "wandb-api-key".to_owned()
    } else {
        format!("wandb-api-key-{owner}")
    }
}

/// Value of the `wandb.ai/auxiliary-resource` label: label-safe `aux-<entity>-<project>-<run id>`.
pub fn auxiliary_label(entity: &str, project: &str, run_id: &str) -> String {
    label_safe(&format!("aux-{entity}-{project}-{run_id}")).unwrap_or_else(|| "aux".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_name_keeps_digits() {
        assert_eq!(
            generate_name_prefix("Team42", "my_proj.v2"),
            "launch-team42-my-proj-v2-"
        );
    }

    #[test]
    fn generate_name_prefix_is_bounded() {
        let prefix = generate_name_prefix(&"e".repeat(100), &"p".repeat(100));
        assert!(prefix.len() <= 58, "{}", prefix.len());
        assert!(is_dns_label(prefix.trim_end_matches('-')));
    }

    #[test]
    fn workload_name_is_deterministic_and_keeps_run_id() {
        let a = workload_name("Team42", "Proj", "abc123", "UnVuUXVldWVJdGVtOjE=");
        assert_eq!(
            a,
            workload_name("Team42", "Proj", "abc123", "UnVuUXVldWVJdGVtOjE=")
        );
        assert!(a.starts_with("launch-team42-proj-abc123-"), "{a}");
        assert_ne!(
            a,
            workload_name("Team42", "Proj", "abc123", "UnVuUXVldWVJdGVtOjI=")
        );
        let long = workload_name(&"x".repeat(80), &"y".repeat(80), "abc123", "item");
        assert!(long.len() <= 63 && is_dns_label(&long), "{long}");
        assert!(long.contains("-abc123-"));
    }

    #[test]
    fn label_safe_matches_w_and_bs_rule() {
        assert_eq!(
            label_safe("aux-Team_A-proj.x-run1").as_deref(),
            Some("aux-team-a-projx-run1")
        );
        assert_eq!(label_safe("___"), None);
    }

    #[test]
    fn validators() {
        assert!(is_dns_label("a-1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("A"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(is_label_value("Ab_1.x"));
        assert!(!is_label_value("_a"));
        assert_eq!(label_value("--run/id:1--"), "runid1");
    }
}
