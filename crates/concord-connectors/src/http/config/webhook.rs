//! `options.webhook`: inbound webhooks at `/hooks/NAME` — the signature (header, algorithm,
//! encoding, what is signed, timestamp tolerance, rotated secrets), the dedupe key, and the
//! routes giving each record its kind, id, version and mapping. No I/O: verification is
//! `http/webhook.rs`; secrets are [`Secret`]s, never printed.

use super::super::jq::Program;
use super::request::{
    de, duration, header_name, opt_program, plain_request, program, request, RawRequest, Request,
    Result,
};
use super::{Secret, DEFAULT_TOLERANCE, WEBHOOK};
use crate::options::err;
use concord_core::Kind;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// What a webhook signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedPart {
    Lit(String),
    Body,
    Timestamp,
    Id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
    /// No signature: the header carries a shared secret itself (for senders that cannot sign
    /// but send headers chosen at subscription, e.g. BigCommerce), compared in constant time.
    Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// Unix seconds.
    Unix,
    /// Unix milliseconds.
    UnixMs,
    Rfc3339,
}

/// Webhook signature verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub header: String,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub prefix: Option<String>,
    pub signed: Vec<SignedPart>,
    pub timestamp_header: Option<String>,
    pub timestamp_format: TimestampFormat,
    pub tolerance: Duration,
    /// Every secret accepted (rotation: the new and the old one).
    pub secrets: Vec<Secret>,
}

/// Where a webhook delivery's dedupe key comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Dedupe {
    Header(String),
    Body(Program),
}

/// Which records of a webhook payload are of which kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub kind: Kind,
    pub when: Option<Program>,
    /// For thin deliveries that carry only an id: the request (templates on the delivered
    /// record) whose answer is the record; a 404 drops it (gone since).
    pub fetch: Option<Request>,
    pub id: Program,
    pub version: Option<Program>,
    pub map: Option<Program>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub signature: Signature,
    pub dedupe: Option<Dedupe>,
    pub records: Option<Program>,
    pub routes: Vec<Route>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    signature: Option<RawSignature>,
    /// Where the delivery's id comes from: `{ header = "x-event-id" }` or `{ body = "jq" }`.
    /// It becomes the version of the delivery's records (unless a route gives one), so a
    /// delivery sent twice is dropped by the journal.
    dedupe: Option<RawDedupe>,
    /// jq on the body: the array of records (default `[.]`).
    records: Option<String>,
    /// Which records are of which kind; the first route whose `when` holds takes a record.
    routes: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDedupe {
    header: Option<String>,
    body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    /// The header carrying the signature(s).
    header: Option<String>,
    /// `sha256` (default), `sha1` or `sha512` (HMAC), or `secret`: the header carries a shared
    /// secret (no signature; for senders that only send fixed headers).
    algorithm: Option<String>,
    /// `hex` (default) or `base64`.
    encoding: Option<String>,
    /// Before the signature in the header, e.g. `sha256=` or `v1,`.
    prefix: Option<String>,
    /// What is signed: `{body}` (default), or e.g. `{timestamp}.{body}`, `{id}.{timestamp}.{body}`.
    signed: Option<String>,
    /// The header with the time of signing; required when `signed` has `{timestamp}`.
    timestamp_header: Option<String>,
    /// `unix` (default), `unix_ms` or `rfc3339`.
    timestamp_format: Option<String>,
    /// How far the timestamp may be from now (default 5m); older is a replay.
    tolerance: Option<String>,
    /// Secrets accepted (rotation: list the new and the old). Default: the endpoint's
    /// `webhook_secret`.
    secrets: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    /// The canonical kind of the records this route takes.
    kind: Option<Kind>,
    /// jq test on the record (`$headers` bound): does this route take it? Default: yes.
    when: Option<String>,
    /// jq on the record: its id (default `.id`).
    id: Option<String>,
    /// jq on the record: its version (default: the dedupe key, else a content hash).
    version: Option<String>,
    /// jq on the record: the canonical record (default: as is).
    map: Option<String>,
    /// A request whose answer replaces the delivered record before `id`, `version` and `map`
    /// (for deliveries that carry only an id); its templates see the delivered record.
    fetch: Option<RawRequest>,
}

pub(super) fn signed_parts(path: &str, s: &str) -> Result<Vec<SignedPart>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find('{') {
        if at > 0 {
            out.push(SignedPart::Lit(rest[..at].to_string()));
        }
        let end = rest[at..]
            .find('}')
            .ok_or_else(|| err(path, "a `{` is not closed"))?;
        let name = &rest[at + 1..at + end];
        out.push(match name {
            "body" => SignedPart::Body,
            "timestamp" => SignedPart::Timestamp,
            "id" => SignedPart::Id,
            other => {
                return Err(err(
                    path,
                    format!("`{{{other}}}` is not one of {{body}}, {{timestamp}}, {{id}}"),
                ))
            }
        });
        rest = &rest[at + end + 1..];
    }
    if !rest.is_empty() {
        out.push(SignedPart::Lit(rest.to_string()));
    }
    if !out.contains(&SignedPart::Body) {
        return Err(err(path, "must contain {body}"));
    }
    Ok(out)
}

pub(super) fn webhook(path: &str, v: &Value, endpoint_secret: Option<&str>) -> Result<Webhook> {
    let r: RawWebhook = de(v, path)?;
    let sp = format!("{path}.signature");
    let s = r.signature.ok_or_else(|| {
        err(
            &sp,
            "is required: webhooks are accepted only with a valid HMAC signature",
        )
    })?;
    let header = header_name(
        &format!("{sp}.header"),
        s.header
            .as_deref()
            .ok_or_else(|| err(&format!("{sp}.header"), "is required"))?,
    )?;
    let algorithm = match s.algorithm.as_deref() {
        None | Some("sha256") => Algorithm::Sha256,
        Some("sha1") => Algorithm::Sha1,
        Some("sha512") => Algorithm::Sha512,
        Some("secret") => Algorithm::Secret,
        Some(other) => {
            return Err(err(
                &format!("{sp}.algorithm"),
                format!("`{other}` is not one of sha256, sha1, sha512, secret"),
            ))
        }
    };
    if algorithm == Algorithm::Secret {
        for (field, present) in [
            ("signed", s.signed.is_some()),
            ("timestamp_header", s.timestamp_header.is_some()),
            ("encoding", s.encoding.is_some()),
        ] {
            if present {
                return Err(err(
                    &format!("{sp}.{field}"),
                    "does not apply to algorithm `secret` (the header carries the secret itself)",
                ));
            }
        }
    }
    let encoding = match s.encoding.as_deref() {
        None | Some("hex") => Encoding::Hex,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(err(
                &format!("{sp}.encoding"),
                format!("`{other}` is not one of hex, base64"),
            ))
        }
    };
    let signed = signed_parts(
        &format!("{sp}.signed"),
        s.signed.as_deref().unwrap_or("{body}"),
    )?;
    let timestamp_header = s
        .timestamp_header
        .map(|h| header_name(&format!("{sp}.timestamp_header"), &h))
        .transpose()?;
    if signed.contains(&SignedPart::Timestamp) && timestamp_header.is_none() {
        return Err(err(
            &format!("{sp}.timestamp_header"),
            "is required when `signed` contains {timestamp}",
        ));
    }
    let timestamp_format = match s.timestamp_format.as_deref() {
        None | Some("unix") => TimestampFormat::Unix,
        Some("unix_ms") => TimestampFormat::UnixMs,
        Some("rfc3339") => TimestampFormat::Rfc3339,
        Some(other) => {
            return Err(err(
                &format!("{sp}.timestamp_format"),
                format!("`{other}` is not one of unix, unix_ms, rfc3339"),
            ))
        }
    };
    let tolerance = duration(
        &format!("{sp}.tolerance"),
        s.tolerance.as_deref(),
        DEFAULT_TOLERANCE,
    )?;
    if tolerance.is_zero() {
        return Err(err(&format!("{sp}.tolerance"), "must be longer than zero"));
    }
    let secrets: Vec<Secret> = match s.secrets {
        Some(list) => {
            if list.is_empty() {
                return Err(err(&format!("{sp}.secrets"), "needs at least one secret"));
            }
            let mut out = Vec::new();
            for (i, x) in list.into_iter().enumerate() {
                if x.is_empty() {
                    return Err(err(
                        &format!("{sp}.secrets[{i}]"),
                        "is empty (is its environment variable set?)",
                    ));
                }
                out.push(Secret(x));
            }
            out
        }
        None => match endpoint_secret {
            Some(x) if !x.is_empty() => vec![Secret(x.to_string())],
            _ => {
                return Err(err(
                    &format!("{sp}.secrets"),
                    "is required (or set the endpoint's `webhook_secret`)",
                ))
            }
        },
    };
    let signed_has_id = signed.contains(&SignedPart::Id);
    let dedupe = match r.dedupe {
        None => None,
        Some(d) => match (d.header, d.body) {
            (Some(h), None) => Some(Dedupe::Header(header_name(
                &format!("{path}.dedupe.header"),
                &h,
            )?)),
            (None, Some(b)) => Some(Dedupe::Body(program(
                &format!("{path}.dedupe.body"),
                &b,
                WEBHOOK,
            )?)),
            _ => {
                return Err(err(
                    &format!("{path}.dedupe"),
                    "needs exactly one of `header` or `body`",
                ))
            }
        },
    };
    if signed_has_id && !matches!(dedupe, Some(Dedupe::Header(_))) {
        return Err(err(
            &format!("{sp}.signed"),
            "{id} needs `dedupe.header` (the header carrying the delivery id)",
        ));
    }
    let raw_routes = r
        .routes
        .ok_or_else(|| err(&format!("{path}.routes"), "is required: at least one route"))?;
    if raw_routes.is_empty() {
        return Err(err(&format!("{path}.routes"), "needs at least one route"));
    }
    let mut routes = Vec::new();
    for (i, v) in raw_routes.iter().enumerate() {
        let at = format!("{path}.routes[{i}]");
        let rr: RawRoute = de(v, &at)?;
        let fetch = match &rr.fetch {
            None => None,
            Some(raw) => {
                plain_request(&format!("{at}.fetch"), raw)?;
                Some(request(&format!("{at}.fetch"), raw, WEBHOOK, &[])?)
            }
        };
        routes.push(Route {
            fetch,
            kind: rr
                .kind
                .ok_or_else(|| err(&format!("{at}.kind"), "is required"))?,
            when: opt_program(&format!("{at}.when"), rr.when.as_ref(), WEBHOOK, &[])?,
            id: program(
                &format!("{at}.id"),
                rr.id.as_deref().unwrap_or(".id"),
                WEBHOOK,
            )?,
            version: opt_program(&format!("{at}.version"), rr.version.as_ref(), WEBHOOK, &[])?,
            map: opt_program(&format!("{at}.map"), rr.map.as_ref(), WEBHOOK, &[])?,
        });
    }
    Ok(Webhook {
        signature: Signature {
            header,
            algorithm,
            encoding,
            prefix: s.prefix.filter(|p| !p.is_empty()),
            signed,
            timestamp_header,
            timestamp_format,
            tolerance,
            secrets,
        },
        dedupe,
        records: opt_program(&format!("{path}.records"), r.records.as_ref(), WEBHOOK, &[])?,
        routes,
    })
}
