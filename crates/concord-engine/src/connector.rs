//! The connector contract: what an endpoint's code must provide to the engine.
//!
//! A connector speaks one API and maps between it and the canonical model. It declares its
//! capabilities per kind (how it can be read, how it can be written) and its rate-limit profile;
//! it *classifies* outcomes (transient, rate-limited, permanent) and the engine does the rest:
//! retries, backoff, Retry-After, circuit breaking, dead letters, cursors.
//!
//! Architecture invariant: connectors never touch the store, never sleep or loop to retry, and
//! never decide routing. They are stateless apart from their HTTP client and session.

use crate::secret::Secret;
use async_trait::async_trait;
use concord_core::Kind;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How a connector can read one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReadModes {
    /// The endpoint pushes changes to `/hooks/{endpoint}`.
    pub webhook: bool,
    /// `read_changes` works (delta polling by a changed-since cursor).
    pub changes: bool,
    /// `read_snapshot` works (full listing, for batch and migration).
    pub snapshot: bool,
}

/// How a connector can write one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteModes {
    /// Create-or-update by natural key (looks the record up before creating).
    pub upsert: bool,
    /// Largest batch one `write` call sends as one API call (1 = no bulk API).
    pub max_batch: usize,
    /// For [`Kind::Order`]: the connector can apply an edit (changed quantities, added/removed
    /// lines, changed addresses) to an order it already created, as op `amend` whose payload is
    /// the full new order. Without it the engine follows `[orders] edits` (cancel-and-replace
    /// or reject) and never sends `amend`.
    pub amend: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindCaps {
    pub read: ReadModes,
    pub write: WriteModes,
}

/// The rate-limit profile of an API.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RateLimitProfile {
    /// A published hard budget, in requests per second.
    pub requests_per_sec: Option<f64>,
    /// A published concurrency limit.
    pub max_concurrency: Option<usize>,
    /// Capacity unknown: let the engine find it (AIMD on round-trip time and back-pressure).
    pub adaptive: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Capabilities {
    pub kinds: BTreeMap<Kind, KindCaps>,
    pub rate_limit: RateLimitProfile,
}

impl Capabilities {
    pub fn kind(&self, kind: Kind) -> KindCaps {
        self.kinds.get(&kind).copied().unwrap_or_default()
    }
}

/// One record read from an endpoint, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    pub kind: Kind,
    pub external_id: String,
    /// The source's version (sequence, `updated_at`); `None` = use the content hash.
    pub version: Option<String>,
    /// The record in canonical shape (or native shape when the flow has an inbound mapping).
    pub record: Value,
}

/// A page of changes or of a snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub records: Vec<Captured>,
    /// Where the next read starts; stored atomically with `records`. `None` = unchanged.
    pub cursor: Option<String>,
    /// More records are available right away.
    pub more: bool,
}

/// A request for the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRequest<'a> {
    pub kind: Kind,
    /// The stored cursor (`None` = from the beginning).
    pub cursor: Option<&'a str>,
    pub limit: usize,
    /// Re-read this much before the cursor (first page of a poll cycle only): protects against
    /// records committed late with an earlier timestamp. Duplicates are dropped by the journal.
    pub overlap: Duration,
}

/// One item to write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOp {
    pub item_id: i64,
    pub kind: Kind,
    /// Canonical key.
    pub key: String,
    /// `upsert`, `create`, `update`, `cancel`, `amend`, `update_only` (correlation: never
    /// create). By kind:
    /// - Order: `create` (idempotent: the order is found by its reference first), `amend`
    ///   (payload = the full new order; only sent when [`WriteModes::amend`] is declared; an
    ///   edit the endpoint cannot apply to this order answers [`WriteOutcome::CannotAmend`]),
    ///   `cancel`. The reference is `payload.reference` when present (cancel-and-replace sets
    ///   `"{key}~{n}"` on the replacement and the old reference on the cancel), else `key`.
    /// - Refund: `create` — into an ERP a credit note (full/partial, by lines or by amount) and,
    ///   when `restock` is true and lines are given, a customer return; into a channel, the
    ///   refund recorded there. Idempotent by the refund's `id`.
    /// - Payment: `upsert` — into an ERP, the payment recorded against the order's invoice or
    ///   order where the connector can; into a channel, the payment state.
    /// - Invoice: `upsert` — into a channel, the ERP invoice (number, status, total).
    /// - Shipment: `upsert`/`create` — into a channel, one fulfilment per shipment id (several
    ///   per order) with carrier, tracking number and the shipped lines.
    ///
    /// A connector must not accept a kind/op it cannot do: it answers
    /// [`DeliveryError::Permanent`] naming what it cannot do.
    pub op: String,
    /// The record in the destination's shape.
    pub payload: Value,
    /// The record's id at this endpoint, when already known (xref).
    pub external_id: Option<String>,
    /// External ids at this endpoint of what the record refers to, by `"kind:key"`
    /// (`"customer:ann@example.com"`, `"product:SKU-1"`, `"order:web/1001"`).
    pub refs: BTreeMap<String, String>,
}

/// Why a write or read failed, as the connector classifies it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying (timeout, 5xx, connection reset).
    #[error("transient: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The API said "slow down" (429); applies to the whole endpoint.
    #[error("rate limited{}: {reason}", retry_hint(retry_after))]
    RateLimited {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The endpoint cannot be reached at all (connection refused, DNS, 503 maintenance).
    #[error("unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will never succeed as it is (validation 4xx, unknown reference): dead-letter it.
    #[error("permanent: {reason}")]
    Permanent { reason: String },
    /// The endpoint is well and answered sensibly, but this write needs a record it does not
    /// have yet (the product a stock level belongs to, created there by another pending
    /// write): retry this item later, with backoff, up to the attempt limit. Unlike
    /// `Transient` it says nothing about the endpoint's health — no breaker, no back-pressure —
    /// so the writes that will supply the missing record go on meanwhile.
    #[error("not yet: {reason}")]
    NotYet {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// " (retry after 500ms)" when the API said how long to wait, else nothing.
fn retry_hint(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|d| format!(" (retry after {d:?})"))
        .unwrap_or_default()
}

impl DeliveryError {
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Transient { retry_after, .. }
            | DeliveryError::RateLimited { retry_after, .. }
            | DeliveryError::Unavailable { retry_after, .. }
            | DeliveryError::NotYet { retry_after, .. } => *retry_after,
            DeliveryError::Permanent { .. } => None,
        }
    }

    /// Does this failure say the endpoint is unwell (counts towards the breaker)?
    pub fn is_endpoint_failure(&self) -> bool {
        matches!(
            self,
            DeliveryError::Transient { .. } | DeliveryError::Unavailable { .. }
        )
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, DeliveryError::Permanent { .. })
    }
}

/// The outcome of one [`WriteOp`].
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Written; the record's id at this endpoint when the API returns one, and its version
    /// there when the API tells (for an order written to the ERP this is the watermark the
    /// ERP's stock figures must pass before the order's reservation is released).
    Done {
        external_id: Option<String>,
        version: Option<String>,
    },
    /// `update_only` found no matching record (correlation): nothing written.
    NoMatch,
    /// Op `amend` of an order: the endpoint cannot apply *this* edit to the order it has (its
    /// API cannot make this change in the order's current state, e.g. add a line to an order
    /// already being processed), but the order can still be cancelled there. Nothing was
    /// written. The engine then follows `[orders] edits`: cancel-and-replace, or the edit is
    /// dead-lettered with `reason`. Answer [`DeliveryError::Permanent`] instead when the order
    /// cannot be cancelled either (goods shipped, order closed) or the payload is invalid.
    CannotAmend {
        reason: String,
    },
    Failed(DeliveryError),
}

/// A webhook request could not be accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebhookError {
    /// Missing or wrong signature: 401.
    #[error("webhook signature: {0}")]
    Unauthorized(String),
    /// The body is not what this endpoint sends: 400.
    #[error("{0}")]
    BadRequest(String),
    /// This connector does not receive webhooks: 404.
    #[error("endpoint does not accept webhooks")]
    NotSupported,
}

/// Building a connector from its configuration failed (no I/O happened).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BuildError {
    /// Field path inside the endpoint's table, e.g. `options.warehouse`.
    pub path: String,
    pub message: String,
}

/// The code that speaks one API. Object-safe; used as `Arc<dyn Connector>`.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Connector type name (`sandbox-erp`, `tryton`, …).
    fn connector_type(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// Check a webhook's authenticity (HMAC) and parse it into records. Called before anything
    /// is stored; the engine acknowledges only after the records are journaled. Async because a
    /// configured connector may run jq here (on the engine's jq threads, never on this task).
    async fn parse_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Vec<Captured>, WebhookError> {
        let _ = (headers, body);
        Err(WebhookError::NotSupported)
    }

    /// The next page of changes after `req.cursor`.
    async fn read_changes(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        let _ = req;
        Err(DeliveryError::Permanent {
            reason: "this connector cannot read changes".into(),
        })
    }

    /// The next page of a full listing; `req.cursor` is the page token.
    async fn read_snapshot(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        let _ = req;
        Err(DeliveryError::Permanent {
            reason: "this connector cannot list records".into(),
        })
    }

    /// Write a batch (all of one kind and op, at most `max_batch`). Returns one outcome per op,
    /// in order. Must be idempotent: creates look the record up by its natural key / external
    /// reference first, so a retried or replayed create never makes a second record.
    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteOutcome>;

    /// Durable state the connector asks the engine to keep for it, published on this channel
    /// (an OAuth2 refresh token the provider rotated: losing it locks the hub out). The
    /// engine stores each new value under the endpoint's name (`Store::set_connector_state`;
    /// only the latest matters) and hands the stored value back through
    /// [`Connector::restore_state`] before the connector's first call after a start. This is
    /// how a connector keeps something across restarts without touching the store. `None`
    /// (the default): nothing to keep.
    fn state_updates(&self) -> Option<tokio::sync::watch::Receiver<Option<String>>> {
        None
    }

    /// The value last published on [`Connector::state_updates`], read back from the store at
    /// start. Called before any other call; must not publish it again.
    fn restore_state(&self, saved: &str) {
        let _ = saved;
    }
}

/// The longest wait [`parse_retry_after`] reports (a day): a larger delta-seconds or a date
/// further ahead is cut to it, so the value is always safe to add to a timestamp. The engine
/// cuts it further to `[engine] retry_after_max` before honouring it.
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(86_400);

/// Parse an HTTP `Retry-After` value (RFC 9110 §10.2.3): delta-seconds (`120`; a decimal
/// fraction such as `0.5` is accepted too, as some APIs send one) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, and the obsolete RFC 850 and asctime forms), relative to
/// the system clock. A date in the past means "now" (zero); anything longer than
/// [`RETRY_AFTER_CEILING`] is cut to it. Anything else — negative, exponent or `NaN`/`inf`
/// notation, garbage — is `None`: the caller's own backoff applies. Never panics.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    parse_retry_after_at(value, std::time::SystemTime::now())
}

/// [`parse_retry_after`] with the current time given (tests, and callers with a clock).
pub fn parse_retry_after_at(value: Option<&str>, now: std::time::SystemTime) -> Option<Duration> {
    let v = value?.trim();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (whole, fraction) = v.split_once('.').unwrap_or((v, ""));
    if digits(whole) && (fraction.is_empty() || digits(fraction)) && !v.ends_with('.') {
        // Digits only: a finite, non-negative number (too many digits saturate).
        let secs = v.parse::<f64>().ok()?;
        let secs = secs.min(RETRY_AFTER_CEILING.as_secs_f64());
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    Some(wait.min(RETRY_AFTER_CEILING))
}

/// Classify a non-success HTTP status the way every REST/GraphQL connector should:
/// 429 → rate limited; 408, 425, 500, 502, 504 → transient; 503 → unavailable;
/// other 4xx → permanent. `body` is quoted (truncated) in the reason.
pub fn classify_status(status: u16, retry_after: Option<&str>, body: &str) -> DeliveryError {
    let mut snippet: String = body.chars().take(300).collect();
    if body.chars().count() > 300 {
        snippet.push('…');
    }
    let reason = format!("HTTP {status}: {snippet}");
    let retry_after = parse_retry_after(retry_after);
    match status {
        429 => DeliveryError::RateLimited {
            reason,
            retry_after,
        },
        503 => DeliveryError::Unavailable {
            reason,
            retry_after,
        },
        408 | 425 | 500..=599 => DeliveryError::Transient {
            reason,
            retry_after,
        },
        _ => DeliveryError::Permanent { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            classify_status(429, Some("3"), ""),
            DeliveryError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify_status(503, None, ""),
            DeliveryError::Unavailable { .. }
        ));
        assert!(matches!(
            classify_status(502, None, ""),
            DeliveryError::Transient { .. }
        ));
        let p = classify_status(422, None, "sku missing");
        assert!(p.is_permanent());
        assert!(p.to_string().contains("HTTP 422: sku missing"));
        assert_eq!(
            parse_retry_after(Some("0.5")),
            Some(Duration::from_millis(500))
        );
    }

    /// Issue 12: `Retry-After: 1e300` panicked the delivery task (`Duration::from_secs_f64`).
    /// Every value an endpoint can send is parsed without panicking: seconds or an HTTP-date,
    /// cut to the ceiling, and anything unreadable is "no advice".
    #[test]
    fn retry_after_is_seconds_or_a_date_capped_and_never_panics() {
        use std::time::{SystemTime, UNIX_EPOCH};
        // Wed, 21 Oct 2015 07:28:00 GMT
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let at = |v: &str| parse_retry_after_at(Some(v), now);
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(at("0"), Some(Duration::ZERO));
        assert_eq!(at("1.25"), Some(Duration::from_millis(1250)));
        // Absurdly long: cut to the ceiling, whatever the number of digits.
        assert_eq!(at("86401"), Some(RETRY_AFTER_CEILING));
        assert_eq!(at(&"9".repeat(400)), Some(RETRY_AFTER_CEILING));
        assert_eq!(
            at(&format!("{}.5", "9".repeat(400))),
            Some(RETRY_AFTER_CEILING)
        );
        assert_eq!(at("18446744073709551616"), Some(RETRY_AFTER_CEILING));
        // HTTP-dates: in the future, the time until then; in the past, now.
        assert_eq!(
            at("Wed, 21 Oct 2015 07:30:00 GMT"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            at("Wednesday, 21-Oct-15 07:29:00 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            at("Wed Oct 21 07:28:30 2015"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(at("Tue, 20 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(
            at("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(RETRY_AFTER_CEILING)
        );
        // Not a delay: no advice, never a panic.
        for bad in [
            "1e300",
            "-5",
            "-0",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "infinity",
            "+5",
            "5.",
            ".5",
            "1e3",
            "0x10",
            "",
            " ",
            "soon",
            "5 s",
            "5s",
            "١٢",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 25:28:00 GMT",
            "\u{0}",
            "12\u{0}",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
        assert_eq!(parse_retry_after_at(None, now), None);
        // The status classification carries the parsed value, and survives the same inputs.
        for v in ["1e300", "-5", "NaN", "inf", "99999999999999999999999"] {
            let e = classify_status(429, Some(v), "");
            assert!(e.retry_after().is_none_or(|d| d <= RETRY_AFTER_CEILING));
        }
        // With the real clock: a date long past is now.
        let _ = SystemTime::now();
        assert_eq!(
            parse_retry_after(Some("Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn an_endpoint_spec_never_prints_its_secrets() {
        let mut spec = EndpointSpec::new(
            "erp",
            "tryton",
            "http://127.0.0.1:8011",
            serde_json::json!({"database": "db", "password": "hunter2",
                               "auth": {"token": "tok-9"}}),
        );
        spec.webhook_secret = Some("whsec-1".into());
        let shown = format!("{spec:?}");
        assert!(
            shown.contains("password") && shown.contains("auth"),
            "{shown}"
        );
        for secret in ["hunter2", "tok-9", "whsec-1"] {
            assert!(!shown.contains(secret), "{secret} printed: {shown}");
        }
    }
}

/// What a connector is built from: one `[endpoints.NAME]` table of the config, checked and with
/// `${ENV}` references already resolved. Building does no I/O. Its `Debug` never prints a
/// secret: the webhook secret is a [`Secret`], the URL is redacted and option values under
/// secret-looking names (`password`, `token`, `api_key`, …) are masked.
#[derive(Clone, PartialEq)]
pub struct EndpointSpec {
    pub name: String,
    /// Connector type (`sandbox-erp`, `sandbox-shop`, `tryton`, `vendure`, …).
    pub connector: String,
    /// Base URL of the API.
    pub url: String,
    /// Shared secret for webhook HMACs, when the endpoint pushes.
    pub webhook_secret: Option<Secret>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Largest response body the connector reads from this endpoint
    /// ([`crate::outbound::send`]); a larger one is an error.
    pub max_response_bytes: usize,
    /// Credentials may go over plain `http://` to a host other than loopback (checked at
    /// config load by [`crate::outbound::check_transport`]).
    pub allow_insecure_http: bool,
    /// Connector-specific settings (`[endpoints.NAME.options]`), as JSON.
    pub options: Value,
}

impl EndpointSpec {
    /// A spec with the defaults of everything the config may leave out (tests, tools).
    pub fn new(name: &str, connector: &str, url: &str, options: Value) -> EndpointSpec {
        EndpointSpec {
            name: name.to_string(),
            connector: connector.to_string(),
            url: url.to_string(),
            webhook_secret: None,
            timeout: Duration::from_secs(10),
            max_response_bytes: crate::outbound::DEFAULT_MAX_RESPONSE_BYTES,
            allow_insecure_http: false,
            options,
        }
    }
}

impl std::fmt::Debug for EndpointSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSpec")
            .field("name", &self.name)
            .field("connector", &self.connector)
            .field("url", &crate::outbound::redact_url(&self.url))
            .field("webhook_secret", &self.webhook_secret)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("options", &crate::secret::redact_json(&self.options))
            .finish()
    }
}

/// An outbound call's failure, classified the engine's way: a timeout or a broken connection is
/// transient, no connection at all is unavailable, and a refused redirect, an oversize answer
/// or an unbuildable client will not change by retrying (permanent).
impl From<crate::outbound::OutboundError> for DeliveryError {
    fn from(e: crate::outbound::OutboundError) -> DeliveryError {
        use crate::outbound::OutboundError as O;
        let reason = e.to_string();
        match e {
            O::Timeout(_) | O::Transport(_) => DeliveryError::Transient {
                reason,
                retry_after: None,
            },
            O::Connect(_) => DeliveryError::Unavailable {
                reason,
                retry_after: None,
            },
            O::Redirect { .. } | O::TooLarge { .. } | O::Build(_) => {
                DeliveryError::Permanent { reason }
            }
        }
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;
    use serde_json::json;

    /// Regression: `Debug` of a spec printed connector passwords (issue 12).
    #[test]
    fn debug_of_a_spec_prints_no_secret() {
        let mut spec = EndpointSpec::new(
            "erp",
            "tryton",
            "https://ann:url-pass@erp.example.com/?api_key=url-key",
            json!({"database": "prod", "user": "ann", "password": "opt-pass",
                   "auth": {"client_secret": "nested-secret"}}),
        );
        spec.webhook_secret = Some(Secret::from("hook-secret"));
        let text = format!("{spec:?}");
        for secret in [
            "url-pass",
            "url-key",
            "opt-pass",
            "nested-secret",
            "hook-secret",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(
            text.contains("prod") && text.contains("erp.example.com"),
            "{text}"
        );
    }
}
