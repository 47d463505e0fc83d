//! Violations that exist today, each naming its crate and why it is still here. The list
//! can only shrink: an entry that no longer matches a finding fails tidy until it is
//! removed, so a fix cannot silently make room for a new violation.

use crate::finding::{Finding, Rule};

/// One tolerated violation: rule, crate and the finding's key (a module, a dependency,
/// a file — never a line number, which would break on unrelated edits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// The rule.
    pub rule: Rule,
    /// The crate.
    pub krate: &'static str,
    /// The finding's key.
    pub key: &'static str,
}

impl Allowed {
    fn matches(&self, finding: &Finding) -> bool {
        self.rule == finding.rule && self.krate == finding.krate && self.key == finding.key
    }
}

impl std::fmt::Display for Allowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {} `{}`", self.rule.name(), self.krate, self.key)
    }
}

#[cfg(test)]
const fn allow(rule: Rule, krate: &'static str, key: &'static str) -> Allowed {
    Allowed { rule, krate, key }
}

/// Tolerated violations: none today. Entries may only be removed; never add one.
pub(crate) const ALLOWED: &[Allowed] = &[];

/// Splits `findings` into (not allowed, allowed) and returns the allow-list entries that
/// matched nothing.
pub(crate) fn apply(
    findings: Vec<Finding>,
    allowed: &'static [Allowed],
) -> (Vec<Finding>, Vec<Finding>, Vec<Allowed>) {
    let (tolerated, open): (Vec<Finding>, Vec<Finding>) = findings
        .into_iter()
        .partition(|f| allowed.iter().any(|a| a.matches(f)));
    let stale = allowed
        .iter()
        .filter(|a| !tolerated.iter().any(|f| a.matches(f)))
        .copied()
        .collect();
    (open, tolerated, stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Location;

    fn finding(krate: &str, key: &str) -> Finding {
        Finding {
            location: Location {
                file: "src/lib.rs".to_owned(),
                line: 1,
            },
            rule: Rule::PubAndReexported,
            krate: krate.to_owned(),
            key: key.to_owned(),
            message: String::new(),
        }
    }

    #[test]
    fn allowed_findings_pass_new_ones_fail_and_stale_entries_are_reported() {
        const LIST: &[Allowed] = &[
            allow(Rule::PubAndReexported, "rlaunch-gpu", "error"),
            allow(Rule::PubAndReexported, "rlaunch-gpu", "fixed-already"),
        ];
        let (open, tolerated, stale) = apply(
            vec![
                finding("rlaunch-gpu", "error"),
                finding("rlaunch-gpu", "labels"),
            ],
            LIST,
        );
        assert_eq!(open, [finding("rlaunch-gpu", "labels")]);
        assert_eq!(tolerated, [finding("rlaunch-gpu", "error")]);
        assert_eq!(stale, [LIST[1]]);
    }
}
