//! The W&B API key as a value that cannot leak through `Debug`, `Display` or serde.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A W&B API key, held in a [`secrecy::SecretString`] (zeroed on drop). `Debug` and `Display`
/// print `[redacted]`; only [`ApiKey::expose`] reveals it.
///
/// The key is kept byte for byte: [`ApiKey::new`] never trims or normalises it, and two keys
/// are equal only when their bytes are. A caller reading the key from a file (a mounted Secret,
/// which usually ends in a newline) strips that newline where it reads the file, so what is
/// compared and sent is always what the caller chose.
///
/// It deliberately implements no `Serialize`: code that needs the key on the wire must call
/// `expose()` at the one place it is sent, which keeps every other path redacted by construction.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Wraps a key exactly as given (no trimming).
    pub fn new(key: impl Into<String>) -> Self {
        Self(SecretString::from(key.into()))
    }

    /// The key itself, for the HTTP `Authorization` header or a Secret's data.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// True when the key is the empty string (W&B's agent treats that as "no key").
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// True when the key is empty or only whitespace: never a usable key, so a client can
    /// refuse it up front (the key itself is still never trimmed).
    pub fn is_blank(&self) -> bool {
        self.expose().trim().is_empty()
    }

    /// Replaces every occurrence of the key in `text` with `[redacted]`, for messages that may
    /// quote a server response or a manifest. Keys shorter than 4 bytes are not searched for
    /// (they would redact ordinary words).
    pub fn redact_in(&self, text: &str) -> String {
        let key = self.expose();
        if key.len() < 4 {
            return text.to_owned();
        }
        text.replace(key, "[redacted]")
    }
}

/// Byte-for-byte equality, in time independent of where the keys differ.
impl PartialEq for ApiKey {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.expose().as_bytes(), other.expose().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for ApiKey {}

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
        let key = ApiKey::new("local-0123456789abcdef");
        assert!(!format!("{key:?}").contains("0123456789"));
        assert!(!format!("{key}").contains("0123456789"));
        assert_eq!(
            key.redact_in("bad key local-0123456789abcdef!"),
            "bad key [redacted]!"
        );
        assert_eq!(ApiKey::new("abc").redact_in("abc"), "abc");
    }

    #[test]
    fn the_key_keeps_its_bytes_and_compares_like_with_like() {
        let with_newline = ApiKey::new("local-0123456789abcdef\n");
        assert_eq!(with_newline.expose(), "local-0123456789abcdef\n");
        assert_eq!(ApiKey::new(" k ").expose(), " k ");
        assert_ne!(with_newline, ApiKey::new("local-0123456789abcdef"));
        assert_eq!(with_newline, ApiKey::new("local-0123456789abcdef\n"));
        assert_ne!(ApiKey::new("ab"), ApiKey::new("abc"));
        assert!(!ApiKey::new("\n").is_empty());
        assert!(ApiKey::new("\n").is_blank());
        assert!(!ApiKey::new(" k\n").is_blank());
        assert!(ApiKey::new("").is_empty());
    }
}
