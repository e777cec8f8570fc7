//! `[admin]`, `[commerce]` and `[metrics]`: token and key entries (names, roles, hashes,
//! channels), the metrics listener and its options. No I/O.
//! Must never accept a token or key in clear (only its SHA-256) nor quote a hash in an error.

use super::{duration, known_endpoint, Result};
use crate::config::access::{
    parse_hash, AccessToken, AdminConfig, ChannelKey, CommerceConfig, MetricsConfig, MetricsToken,
    Role,
};
use crate::config::raw::{RawAdmin, RawCommerce, RawMetrics};
use crate::config::Issue;
use crate::connector::EndpointSpec;
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest `[admin] session_ttl`: a session is a browser's convenience, not a standing credential.
const MAX_SESSION_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// Most `[admin] failed_attempts`: beyond that the throttle no longer slows a guesser down.
const MAX_FAILED_ATTEMPTS: u32 = 10_000;

fn check_token_name(path: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.' | '@')
        });
    if ok {
        Ok(())
    } else {
        Err(Issue::new(
            path,
            format!("invalid name {name:?}: expected 1-64 of lowercase letters, digits, `_`, `-`, `.`, `@`"),
        ))
    }
}

fn hash(path: &str, text: &str) -> Result<[u8; 32]> {
    parse_hash(text).ok_or_else(|| {
        Issue::new(
            path,
            "expected the SHA-256 of the token as 64 hex digits (`concord token new` prints it)",
        )
    })
}

pub(super) fn admin(raw: RawAdmin) -> Result<AdminConfig> {
    let mut out = AdminConfig::default();
    for (i, t) in raw.tokens.into_iter().enumerate() {
        let at = |f: &str| format!("admin.tokens[{i}].{f}");
        check_token_name(&at("name"), &t.name)?;
        if let Some(j) = out.tokens.iter().position(|o| o.name == t.name) {
            return Err(Issue::new(
                at("name"),
                format!(
                    "duplicate token name `{}` (already admin.tokens[{j}])",
                    t.name
                ),
            ));
        }
        let role = Role::parse(&t.role).ok_or_else(|| {
            Issue::new(
                at("role"),
                format!(
                    "unknown role {:?}: expected \"viewer\" or \"operator\"",
                    t.role
                ),
            )
        })?;
        let sha256 = hash(&at("sha256"), &t.sha256)?;
        if let Some(j) = out.tokens.iter().position(|o| o.sha256 == sha256) {
            return Err(Issue::new(
                at("sha256"),
                format!("the same token as admin.tokens[{j}]; give each holder their own"),
            ));
        }
        out.tokens.push(AccessToken {
            name: t.name,
            role,
            sha256,
        });
    }
    out.session_ttl = duration(
        "admin.session_ttl",
        raw.session_ttl.as_deref(),
        out.session_ttl,
        false,
    )?;
    if out.session_ttl > MAX_SESSION_TTL {
        return Err(Issue::new(
            "admin.session_ttl",
            "must be at most a year (366d); for longer access use a token",
        ));
    }
    out.secure_cookie = raw.secure_cookie.unwrap_or(false);
    if let Some(n) = raw.failed_attempts {
        out.failed_attempts = u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_FAILED_ATTEMPTS).contains(n))
            .ok_or_else(|| {
                Issue::new(
                    "admin.failed_attempts",
                    format!("must be from 1 to {MAX_FAILED_ATTEMPTS}, got {n}"),
                )
            })?;
    }
    out.failed_attempts_refill = duration(
        "admin.failed_attempts_refill",
        raw.failed_attempts_refill.as_deref(),
        out.failed_attempts_refill,
        false,
    )?;
    if out.failed_attempts_refill > MAX_SESSION_TTL {
        return Err(Issue::new(
            "admin.failed_attempts_refill",
            "must be at most a year (366d)",
        ));
    }
    Ok(out)
}

pub(super) fn commerce(
    raw: RawCommerce,
    endpoints: &BTreeMap<String, EndpointSpec>,
) -> Result<CommerceConfig> {
    let mut out = CommerceConfig::default();
    for (i, k) in raw.keys.into_iter().enumerate() {
        let at = |f: &str| format!("commerce.keys[{i}].{f}");
        check_token_name(&at("name"), &k.name)?;
        if let Some(j) = out.keys.iter().position(|o| o.name == k.name) {
            return Err(Issue::new(
                at("name"),
                format!(
                    "duplicate key name `{}` (already commerce.keys[{j}])",
                    k.name
                ),
            ));
        }
        known_endpoint(&at("channel"), &k.channel, endpoints)?;
        let sha256 = hash(&at("sha256"), &k.sha256)?;
        if let Some(j) = out.keys.iter().position(|o| o.sha256 == sha256) {
            return Err(Issue::new(
                at("sha256"),
                format!("the same key as commerce.keys[{j}]; give each channel its own"),
            ));
        }
        out.keys.push(ChannelKey {
            name: k.name,
            channel: k.channel,
            sha256,
        });
    }
    Ok(out)
}

pub(super) fn metrics(raw: RawMetrics) -> Result<MetricsConfig> {
    let mut out = MetricsConfig {
        per_sku: raw.per_sku.unwrap_or(false),
        ..MetricsConfig::default()
    };
    if let Some(listen) = &raw.listen {
        out.listen = Some(listen.trim().parse().map_err(|_| {
            Issue::new(
                "metrics.listen",
                format!("expected an address and port like \"127.0.0.1:9090\", got {listen:?}"),
            )
        })?);
    }
    for (i, t) in raw.tokens.into_iter().enumerate() {
        let at = |f: &str| format!("metrics.tokens[{i}].{f}");
        check_token_name(&at("name"), &t.name)?;
        if let Some(j) = out.tokens.iter().position(|o| o.name == t.name) {
            return Err(Issue::new(
                at("name"),
                format!(
                    "duplicate token name `{}` (already metrics.tokens[{j}])",
                    t.name
                ),
            ));
        }
        let sha256 = hash(&at("sha256"), &t.sha256)?;
        out.tokens.push(MetricsToken {
            name: t.name,
            sha256,
        });
    }
    Ok(out)
}
