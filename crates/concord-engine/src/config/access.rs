//! Access control settings, checked: admin API tokens (`[admin]`), storefront API keys
//! (`[commerce]`) and who may read `/metrics` (`[metrics]`). Only hashes live here; the server compares a presented token's hash with
//! them in constant time. Must never hold or log a token in clear.
//!
//! Why SHA-256 and not a password hash (argon2, bcrypt): tokens and keys are 32 random bytes
//! made by `concord token new`, not something a person chose. Guessing one from its hash means
//! searching 2^256 values, which no hash speed makes feasible; a deliberately slow password
//! hash only protects low-entropy secrets, and here it would cost CPU on every API request
//! (each request presents its token). A fast hash of a high-entropy secret is what GitHub and
//! others use for API tokens for the same reason.

use sha2::{Digest, Sha256};
use std::fmt;
use std::time::Duration;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Read, and act: replay, drop, pause, resume, run now.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[admin.tokens]]` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `[admin]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub tokens: Vec<AccessToken>,
    pub session_ttl: Duration,
    pub secure_cookie: bool,
    /// Failed authentications a client may make in a row before it is answered 429.
    pub failed_attempts: u32,
    /// How often a client gets one of those tries back.
    pub failed_attempts_refill: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            tokens: Vec::new(),
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookie: false,
            failed_attempts: 10,
            failed_attempts_refill: Duration::from_secs(6),
        }
    }
}

/// One `[[commerce.keys]]` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelKey {
    pub name: String,
    pub channel: String,
    pub sha256: [u8; 32],
}

impl fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelKey")
            .field("name", &self.name)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// `[commerce]`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommerceConfig {
    pub keys: Vec<ChannelKey>,
}

/// One `[[metrics.tokens]]` entry: may read `/metrics` and nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken {
    pub name: String,
    pub sha256: [u8; 32],
}

impl fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `[metrics]`, checked (documented on `RawMetrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// A separate address serving only `/metrics`.
    pub listen: Option<std::net::SocketAddr>,
    pub tokens: Vec<MetricsToken>,
    /// Publish `concord_ats{channel, sku}` (one series per channel and SKU).
    pub per_sku: bool,
}

/// SHA-256 of a token or key as presented.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Parse 64 hex digits.
pub fn parse_hash(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_text.trim()).ok()?;
    bytes.try_into().ok()
}
