//! Opaque ids and timestamps as W&B hands them out.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// A relay-style id: `base64("<kind>:<n>")`, as W&B's ids look.
pub(crate) fn opaque_id(kind: &str, n: impl std::fmt::Display) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{n}"))
}

/// The current UTC time as RFC 3339 (seconds precision).
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_rfc3339() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z'));
    }

    #[test]
    fn ids_are_base64_of_kind_and_number() {
        assert_eq!(opaque_id("RunQueue", 1), "UnVuUXVldWU6MQ==");
    }
}
