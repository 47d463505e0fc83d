//! The W&B API key as a value that cannot leak through `Debug`, `Display` or serde.

use std::fmt;

/// A W&B API key. `Debug` and `Display` print `[redacted]`; only [`ApiKey::expose`] reveals it.
///
/// It deliberately implements no `Serialize`: code that needs the key on the wire must call
/// `expose()` at the one place it is sent, which keeps every other path redacted by construction.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key. Surrounding whitespace (a trailing newline from a mounted Secret file) is trimmed.
    pub fn new(key: impl Into<String>) -> Self {
        let key: String = key.into();
        Self(key.trim().to_owned())
    }

    /// The key itself, for the HTTP `Authorization` header or a Secret's data.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the key is the empty string (the reference treats that as "no key").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replaces every occurrence of the key in `text` with `[redacted]`, for messages that may
    /// quote a server response or a manifest.
    pub fn redact_in(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_owned();
        }
        text.replace(&self.0, "[redacted]")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_key() {
        let key = ApiKey::new("local-0123456789abcdef\n");
        assert_eq!(key.expose(), "local-0123456789abcdef");
        assert!(!format!("{key:?}").contains("0123456789"));
        assert!(!format!("{key}").contains("0123456789"));
        assert_eq!(
            key.redact_in("bad key local-0123456789abcdef!"),
            "bad key [redacted]!"
        );
    }
}
