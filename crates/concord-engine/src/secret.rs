//! Secrets in memory: a [`Secret`] holds a password, token or signing key and never prints
//! itself (`Debug` and `Display` are `***`, and it has no `Serialize`), so a config, a connector
//! or an error that is logged or formatted cannot leak one by accident. [`redact_json`] does the
//! same for connector options, which reach the engine as free-form JSON: any value under a
//! secret-looking name ([`is_secret_name`]) is masked.
//!
//! Must never: implement `Serialize` for [`Secret`], or print a secret's value anywhere; code
//! that needs the value calls [`Secret::expose`] at the one place it is sent.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::fmt;

/// A secret string: `Debug`/`Display` print `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it (a login body, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Does a setting called `name` hold a secret? Password, passwd, secret, token, credential,
/// api key, private key, or a word `key`/`pass`/`auth` in a `snake_case`/`kebab-case` name
/// (`api_key`, `client-secret`, `channel_token`; not `keys`, `sku`, `monkey`).
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    const PARTS: [&str; 6] = [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "apikey",
    ];
    if PARTS.iter().any(|p| lower.contains(p)) {
        return true;
    }
    lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| matches!(w, "key" | "pass" | "pwd" | "auth"))
}

/// A copy of `value` with every value under a secret-looking key ([`is_secret_name`]) replaced
/// by `"***"`, at any depth (for `Debug` of connector options).
pub fn redact_json(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_name(k) {
                        Value::String("***".into())
                    } else {
                        redact_json(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_json).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_secret_never_prints_itself() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_names() {
        for yes in [
            "password",
            "db_password",
            "webhook_secret",
            "clientSecret",
            "channel_token",
            "api_key",
            "apiKey",
            "API-KEY",
            "private-key",
            "credentials",
            "pass",
            "auth",
        ] {
            assert!(is_secret_name(yes), "{yes}");
        }
        for no in [
            "keys",
            "sku",
            "monkey",
            "user",
            "database",
            "warehouses",
            "url",
        ] {
            assert!(!is_secret_name(no), "{no}");
        }
    }

    #[test]
    fn options_are_redacted_at_any_depth() {
        let v = json!({"user": "admin", "password": "hunter2",
                       "nested": [{"api_key": "k-1", "name": "x"}], "token": {"a": 1}});
        let r = redact_json(&v);
        let text = r.to_string();
        assert!(!text.contains("hunter2") && !text.contains("k-1"), "{text}");
        assert_eq!(r["user"], "admin");
        assert_eq!(r["nested"][0]["name"], "x");
        assert_eq!(r["token"], "***");
    }
}
