//! Inbound webhooks of the `http` connector (`POST /hooks/{endpoint}`): signature checked
//! first, then the body parsed strictly and split into records by the configured jq.
//!
//! Verification: the signature header may hold several signatures separated by spaces (e.g.
//! Standard Webhooks' `v1,abc v1,def`); each, after its `prefix`, is decoded (hex or base64)
//! and compared in constant time with the HMAC (SHA-256, SHA-1 or SHA-512) of the signed
//! content under each configured secret (several during a rotation). The signed content is the
//! raw body, or a template such as `{timestamp}.{body}` / `{id}.{timestamp}.{body}`. With a
//! timestamp header, a delivery signed more than `tolerance` away from now is refused as a
//! replay (or a clock problem) — 401 either way, before anything is parsed.
//!
//! `algorithm = "secret"` is for senders that cannot sign but send fixed headers (BigCommerce):
//! the header's value is compared with each secret in constant time.
//!
//! A route's `fetch` is for thin deliveries that carry only an id: its request (through the
//! endpoint's client, credentials and rate limits) gives the record; a 404 drops it.
//!
//! A replay *within* the tolerance carries the same records and the same dedupe key (which
//! becomes their version unless a route says otherwise): the journal drops it.
//!
//! Records: `records` (jq on the body, default `[.]`) gives the array; each goes to the first
//! route whose `when` holds (`$headers` bound, e.g. an event-type header) and gets its id,
//! version and canonical shape from that route's jq. A record no route takes is ignored.
//!
//! Must never: parse or act on a body before its signature is verified; accept a body with
//! duplicate keys; compare signatures in variable time.

use super::client::Client;
use super::config::{Algorithm, Dedupe, Encoding, Signature, SignedPart, TimestampFormat, Webhook};
use super::jq::Vars;
use super::limits::headers_json;
use concord_engine::connector::{Captured, WebhookError};
use concord_engine::mapping::MapVars;
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most records one delivery may carry.
pub const MAX_RECORDS: usize = 10_000;

fn mac_verify(alg: Algorithm, secret: &[u8], message: &[&[u8]], sig: &[u8]) -> bool {
    macro_rules! check {
        ($d:ty) => {{
            let Ok(mut m) = Hmac::<$d>::new_from_slice(secret) else {
                return false;
            };
            for part in message {
                m.update(part);
            }
            m.verify_slice(sig).is_ok()
        }};
    }
    match alg {
        Algorithm::Sha1 => check!(sha1::Sha1),
        Algorithm::Sha256 => check!(sha2::Sha256),
        Algorithm::Sha512 => check!(sha2::Sha512),
        Algorithm::Secret => {
            use subtle::ConstantTimeEq;
            bool::from(secret.ct_eq(sig))
        }
    }
}

/// The signature of `message` (for tests and for senders written against this module).
pub fn sign(alg: Algorithm, enc: Encoding, secret: &[u8], message: &[u8]) -> String {
    macro_rules! mac {
        ($d:ty) => {{
            match Hmac::<$d>::new_from_slice(secret) {
                Ok(mut m) => {
                    m.update(message);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }};
    }
    let bytes = match alg {
        Algorithm::Sha1 => mac!(sha1::Sha1),
        Algorithm::Sha256 => mac!(sha2::Sha256),
        Algorithm::Sha512 => mac!(sha2::Sha512),
        // The header value is the secret itself.
        Algorithm::Secret => return String::from_utf8_lossy(secret).into_owned(),
    };
    match enc {
        Encoding::Hex => hex::encode(bytes),
        Encoding::Base64 => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }
    }
}

fn decode(enc: Encoding, s: &str) -> Option<Vec<u8>> {
    match enc {
        Encoding::Hex => hex::decode(s).ok(),
        Encoding::Base64 => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).ok()
        }
    }
}

fn header_text<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<&'a str, WebhookError> {
    let v = headers
        .get(name)
        .ok_or_else(|| WebhookError::Unauthorized(format!("missing header `{name}`")))?;
    v.to_str()
        .map_err(|_| WebhookError::Unauthorized(format!("header `{name}` is not visible ASCII")))
}

/// Milliseconds since the Unix epoch of a timestamp header.
fn timestamp_ms(format: TimestampFormat, text: &str) -> Option<i64> {
    let t = text.trim();
    match format {
        TimestampFormat::Unix => t.parse::<i64>().ok()?.checked_mul(1000),
        TimestampFormat::UnixMs => t.parse::<i64>().ok(),
        TimestampFormat::Rfc3339 => chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|d| d.timestamp_millis()),
    }
}

/// Check a delivery's signature (and timestamp) against `sig`, at time `now`.
pub fn verify(
    sig: &Signature,
    dedupe: Option<&Dedupe>,
    headers: &http::HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), WebhookError> {
    let provided = header_text(headers, &sig.header)?;
    let mut timestamp = None;
    if let Some(th) = &sig.timestamp_header {
        let text = header_text(headers, th)?;
        let at = timestamp_ms(sig.timestamp_format, text).ok_or_else(|| {
            WebhookError::Unauthorized(format!(
                "header `{th}` is not a {:?} timestamp",
                sig.timestamp_format
            ))
        })?;
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let tolerance = i64::try_from(sig.tolerance.as_millis()).unwrap_or(i64::MAX);
        if now_ms.saturating_sub(at).saturating_abs() > tolerance {
            return Err(WebhookError::Unauthorized(format!(
                "timestamp in `{th}` is more than {:?} from now: a replayed or delayed delivery (or a clock problem)",
                sig.tolerance
            )));
        }
        timestamp = Some(text.trim().to_string());
    }
    let id = match dedupe {
        Some(Dedupe::Header(h)) if sig.signed.contains(&SignedPart::Id) => {
            Some(header_text(headers, h)?.to_string())
        }
        _ => None,
    };
    let mut message: Vec<&[u8]> = Vec::with_capacity(sig.signed.len());
    for part in &sig.signed {
        message.push(match part {
            SignedPart::Lit(s) => s.as_bytes(),
            SignedPart::Body => body,
            SignedPart::Timestamp => timestamp.as_deref().unwrap_or("").as_bytes(),
            SignedPart::Id => id.as_deref().unwrap_or("").as_bytes(),
        });
    }
    let mut any = false;
    for candidate in provided.split_ascii_whitespace() {
        let raw = match &sig.prefix {
            Some(p) => match candidate.strip_prefix(p.as_str()) {
                Some(r) => r,
                None => continue,
            },
            None => candidate,
        };
        let bytes = if sig.algorithm == Algorithm::Secret {
            raw.as_bytes().to_vec()
        } else {
            let Some(bytes) = decode(sig.encoding, raw) else {
                continue;
            };
            bytes
        };
        any = true;
        // Each secret is tried: during a rotation senders sign with either.
        for secret in &sig.secrets {
            if mac_verify(sig.algorithm, secret.expose().as_bytes(), &message, &bytes) {
                return Ok(());
            }
        }
    }
    Err(WebhookError::Unauthorized(if any {
        format!("the signature in `{}` does not match", sig.header)
    } else {
        format!(
            "no {:?} signature{} in `{}`",
            sig.encoding,
            sig.prefix
                .as_deref()
                .map(|p| format!(" after `{p}`"))
                .unwrap_or_default(),
            sig.header
        )
    }))
}

fn as_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Verify and split a delivery into records.
pub async fn parse(
    hook: &Webhook,
    vars: &Value,
    env: &MapVars,
    headers: &http::HeaderMap,
    body: &[u8],
    now: SystemTime,
    client: Option<&Client>,
) -> Result<Vec<Captured>, WebhookError> {
    verify(&hook.signature, hook.dedupe.as_ref(), headers, body, now)?;
    let doc = concord_core::json::parse_strict(body)
        .map_err(|e| WebhookError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let jv = Vars::new()
        .with("vars", vars.clone())
        .with("headers", headers_json(headers));
    let dedupe = match &hook.dedupe {
        None => None,
        Some(Dedupe::Header(h)) => headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        Some(Dedupe::Body(p)) => as_id(
            &p.run(&doc, &jv, env)
                .await
                .map_err(|e| WebhookError::BadRequest(format!("dedupe key: {e}")))?,
        ),
    };
    let records = match &hook.records {
        None => vec![doc],
        Some(p) => match p
            .run(&doc, &jv, env)
            .await
            .map_err(|e| WebhookError::BadRequest(format!("records: {e}")))?
        {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            other => {
                return Err(WebhookError::BadRequest(format!(
                    "records: expected an array of records, got {}",
                    super::limits::snippet(&other)
                )))
            }
        },
    };
    if records.len() > MAX_RECORDS {
        return Err(WebhookError::BadRequest(format!(
            "{} records in one delivery; at most {MAX_RECORDS}",
            records.len()
        )));
    }
    let mut out = Vec::with_capacity(records.len());
    for (i, rec) in records.into_iter().enumerate() {
        let mut taken = None;
        for route in &hook.routes {
            let ok = match &route.when {
                None => true,
                Some(w) => w.test(&rec, &jv, env).await.map_err(|e| {
                    WebhookError::BadRequest(format!("records[{i}]: route `when`: {e}"))
                })?,
            };
            if ok {
                taken = Some(route);
                break;
            }
        }
        let Some(route) = taken else { continue };
        let at = |what: &str, e: String| {
            WebhookError::BadRequest(format!("records[{i}] ({}): {what}: {e}", route.kind))
        };
        let rec = match (&route.fetch, client) {
            (None, _) => rec,
            (Some(_), None) => return Err(at("fetch", "no client to fetch with".into())),
            (Some(req), Some(client)) => {
                // The delivery is refused (not 2xx) when the record cannot be fetched now: the
                // sender delivers it again later.
                let p = client
                    .prepare_for(req, &rec, &jv, Some(route.kind))
                    .await
                    .map_err(|e| at("fetch", e.to_string()))?;
                let sent = client
                    .send(p)
                    .await
                    .map_err(|e| at("fetch", e.to_string()))?;
                if sent.status == 404 {
                    continue;
                }
                client
                    .classify(req, &sent)
                    .await
                    .map_err(|e| at("fetch", e.to_string()))?;
                sent.body
            }
        };
        let id_value = route
            .id
            .run(&rec, &jv, env)
            .await
            .map_err(|e| at("id", e))?;
        let external_id = as_id(&id_value).ok_or_else(|| {
            at(
                "id",
                format!(
                    "gave {}, expected a non-empty string or a number",
                    super::limits::snippet(&id_value)
                ),
            )
        })?;
        let version = match &route.version {
            Some(p) => as_id(&p.run(&rec, &jv, env).await.map_err(|e| at("version", e))?),
            None => dedupe.clone(),
        };
        let record = match &route.map {
            Some(p) => p.run(&rec, &jv, env).await.map_err(|e| at("map", e))?,
            None => rec,
        };
        out.push(Captured {
            kind: route.kind,
            external_id,
            version,
            record,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::config::Secret;
    use super::*;
    use std::time::Duration;

    fn sig(alg: Algorithm, enc: Encoding, prefix: Option<&str>) -> Signature {
        Signature {
            header: "x-sig".into(),
            algorithm: alg,
            encoding: enc,
            prefix: prefix.map(str::to_string),
            signed: vec![SignedPart::Body],
            timestamp_header: None,
            timestamp_format: TimestampFormat::Unix,
            tolerance: Duration::from_secs(300),
            secrets: vec![Secret("k1".into()), Secret("k2".into())],
        }
    }

    fn headers(v: &[u8]) -> Option<http::HeaderMap> {
        let mut h = http::HeaderMap::new();
        h.insert("x-sig", http::HeaderValue::from_bytes(v).ok()?);
        Some(h)
    }

    proptest::proptest! {
        /// Any body with its own signature (either secret, any algorithm and encoding) passes;
        /// the same signature over any other body, or any other header value, does not.
        #[test]
        fn only_the_signed_body_passes(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            other in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            which in 0usize..2, a in 0usize..3, e in 0usize..2,
        ) {
            let alg = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512][a];
            let enc = [Encoding::Hex, Encoding::Base64][e];
            let s = sig(alg, enc, Some("v1="));
            let secret = ["k1", "k2"][which];
            let good = format!("v1={}", sign(alg, enc, secret.as_bytes(), &body));
            let now = SystemTime::now();
            let h = headers(good.as_bytes()).expect("a valid header");
            proptest::prop_assert!(verify(&s, None, &h, &body, now).is_ok());
            if other != body {
                proptest::prop_assert!(verify(&s, None, &h, &other, now).is_err());
            }
            if let Some(h) = headers(&junk) {
                if junk != good.as_bytes() {
                    proptest::prop_assert!(verify(&s, None, &h, &body, now).is_err());
                }
            }
        }

        /// `secret`: exactly one of the configured secrets (after the prefix) passes, whatever
        /// the body; any other header value — a prefix of a secret, a secret plus more — fails.
        #[test]
        fn a_shared_secret_header_passes_only_with_a_configured_secret(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            value in "[ -~]{0,24}",
            which in 0usize..2,
        ) {
            let s = sig(Algorithm::Secret, Encoding::Hex, None);
            let now = SystemTime::now();
            let secret = ["k1", "k2"][which];
            let h = headers(sign(Algorithm::Secret, Encoding::Hex, secret.as_bytes(), &body).as_bytes()).expect("header");
            proptest::prop_assert!(verify(&s, None, &h, &body, now).is_ok());
            if let Some(h) = headers(value.as_bytes()) {
                let ok = verify(&s, None, &h, &body, now).is_ok();
                let listed = value.split_ascii_whitespace().any(|v| v == "k1" || v == "k2");
                proptest::prop_assert_eq!(ok, listed, "{:?}", value);
            }
            let none = http::HeaderMap::new();
            proptest::prop_assert!(verify(&s, None, &none, &body, now).is_err());
        }
    }
}
