//! The wire contract between the sandbox emulators (crate `concord-sandbox`) and the sandbox
//! connectors (this folder): what both sides must agree on, kept here so that the emulators can
//! depend on it without this crate depending on a web framework.
//!
//! # Shared HTTP contract (both emulators)
//! - Every record change gets a new global, monotonic `seq` (its version) and `updated_at` (ms).
//!   A save that changes nothing is not a change.
//! - `GET /api/changes?kind=K&after=<seq>&limit=N` (limit 1..=1000, default 100) →
//!   `{"records":[{"id","version","updated_at","record"}],"next":"<last seq>","more":bool}`: the
//!   latest state of each record changed after `seq`, ordered by its latest seq (keyset; an empty
//!   page returns `next` = `after`). The seq is assigned under the same lock as the write, so the
//!   feed has no gaps and needs no overlap.
//! - `GET /api/records?kind=K&after_id=<id>&limit=N` → `{"records":[...],"next":"<last id>"|null,
//!   "more":bool}` ordered by id (string order).
//! - Webhooks (when the emulator has a webhook URL): POST `{"events":[{"kind","id","version",
//!   "record"}]}` with `Content-Type: application/json`, `X-Sandbox-Topic: <kind>`
//!   ([`TOPIC_HEADER`]; one kind per POST) and `X-Sandbox-Signature: sha256=<hex
//!   HMAC-SHA256(body, webhook_secret)>` ([`SIGNATURE_HEADER`], [`sign`]; omitted when no secret
//!   is set). In seq order, up to the emulator's batch size per POST.
//! - Records are canonical JSON (the shapes of `concord_core::model`), so no mapping is needed.
//!   The ERP serves [`ERP_KINDS`], the storefront [`SHOP_KINDS`]; each emulator's own routes
//!   are documented in its module (`concord_sandbox::erp`, `concord_sandbox::shop`).
//! - Writes are validated with `concord_core::validate`; invalid → 422 `{"error"}` naming the
//!   field; a malformed body → 400 naming the position.
//!
//! Must never: depend on the emulators or on an HTTP server framework; change a header name or
//! the signature format without changing both sides (this module is the one place both read).

use concord_core::Kind;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the webhook's topic (the kind of its events).
pub const TOPIC_HEADER: &str = "X-Sandbox-Topic";
/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Sandbox-Signature";

/// Kinds the sandbox ERP serves (feed, snapshot, webhooks).
pub const ERP_KINDS: &[Kind] = &[
    Kind::Product,
    Kind::Stock,
    Kind::Price,
    Kind::Customer,
    Kind::Order,
    Kind::Shipment,
    Kind::Invoice,
    Kind::Payment,
    Kind::Refund,
];

/// Kinds the sandbox storefront serves.
pub const SHOP_KINDS: &[Kind] = &[
    Kind::Product,
    Kind::Stock,
    Kind::Price,
    Kind::Customer,
    Kind::Order,
    Kind::Payment,
    Kind::Refund,
];

/// A webhook signature check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {SIGNATURE_HEADER} header")]
    Missing,
    #[error("{SIGNATURE_HEADER} must look like `sha256=<hex>`")]
    Malformed,
    #[error("signature does not match the body")]
    Mismatch,
}

type HmacSha256 = Hmac<Sha256>;

/// `sha256=<hex HMAC-SHA256 of body with secret>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Check a signature header value against the body, in constant time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let sig = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| SignatureError::Malformed)?;
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_and_reject_tampering() {
        let s = sign(b"k", b"{\"a\":1}");
        assert!(s.starts_with("sha256="));
        assert_eq!(verify_signature(b"k", b"{\"a\":1}", Some(&s)), Ok(()));
        assert_eq!(
            verify_signature(b"k", b"{\"a\":2}", Some(&s)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"other", b"{\"a\":1}", Some(&s)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"k", b"x", None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(b"k", b"x", Some("md5=zz")),
            Err(SignatureError::Malformed)
        );
    }
}
