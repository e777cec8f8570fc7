//! The sandbox connectors: [`SandboxErpConnector`] (`sandbox-erp`) and [`SandboxShopConnector`]
//! (`sandbox-shop`) implement the engine's `Connector` trait against the HTTP APIs of the
//! sandbox emulators, which live in their own crate (`concord-sandbox`: `concord_sandbox::erp`
//! and `concord_sandbox::shop` document each API). Both speak canonical JSON, so payloads pass
//! through unmapped.
//!
//! Files: [`protocol`] is the wire contract both sides share (the feed and snapshot routes, the
//! webhook envelope, its headers and signature, the kinds each emulator serves); [`client`] the
//! HTTP client helpers; `erp.rs` and `shop.rs` one connector each. What both connectors share
//! lives here: endpoint options, webhook verification and parsing (the `{"events":[...]}`
//! envelope signed with `X-Sandbox-Signature`), reading the changes feed and the snapshot, and
//! the customer upsert (same API on both).
//!
//! Reading: the changes feed is keyed on a global, gapless `seq` assigned under the emulator's
//! lock, so a record committed "late" can never appear behind the cursor; `ReadRequest::overlap`
//! therefore does not apply and is ignored.
//!
//! Must never: sleep, retry, touch the store, or validate records (the engine validates canonical
//! records after mapping); depend on the emulators (`concord-sandbox` depends on this crate, for
//! [`protocol`], never the other way round).

pub mod client;
mod erp;
pub mod protocol;
mod shop;

pub use erp::SandboxErpConnector;
pub use shop::SandboxShopConnector;

use client::{Api, ApiError};
use concord_core::Kind;
use concord_engine::connector::{
    BuildError, Captured, DeliveryError, EndpointSpec, Page, ReadRequest, WebhookError, WriteOp,
    WriteOutcome,
};
use concord_engine::secret::Secret;
use protocol::{verify_signature, SIGNATURE_HEADER};
use serde_json::{json, Value};

/// What both sandbox connectors are built from.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub connector: &'static str,
    pub api: Api,
    pub secret: Option<Secret>,
    /// `options.location`: the location used when a stock payload names none.
    pub location: Option<String>,
    /// `options.amend` (sandbox-erp only, default true): declare that orders can be amended.
    /// `false` makes the connector behave like an ERP that cannot amend (the engine then follows
    /// `[orders] edits`), to try cancel-and-replace on the sandbox.
    pub amend: bool,
    pub kinds: &'static [Kind],
}

impl Common {
    /// Parse the spec: URL, options (`location`; `amend` for sandbox-erp; anything else is
    /// refused).
    pub fn build(
        spec: &EndpointSpec,
        connector: &'static str,
        kinds: &'static [Kind],
    ) -> Result<Common, BuildError> {
        let err = |path: &str, message: String| BuildError {
            path: path.to_string(),
            message,
        };
        let mut location = None;
        let mut amend = true;
        let expected = if connector == "sandbox-erp" {
            "location, amend"
        } else {
            "location"
        };
        match &spec.options {
            Value::Null => {}
            Value::Object(map) => {
                for (k, v) in map {
                    match k.as_str() {
                        "location" => match v.as_str().map(str::trim) {
                            Some(l) if !l.is_empty() => location = Some(l.to_string()),
                            _ => {
                                return Err(err(
                                    "options.location",
                                    "must be a non-empty string".into(),
                                ))
                            }
                        },
                        "amend" if connector == "sandbox-erp" => match v.as_bool() {
                            Some(b) => amend = b,
                            None => {
                                return Err(err(
                                    "options.amend",
                                    format!("must be true or false, got {v}"),
                                ))
                            }
                        },
                        other => {
                            return Err(err(
                                &format!("options.{other}"),
                                format!(
                                    "unknown option `{other}` for {connector}, expected: {expected}"
                                ),
                            ))
                        }
                    }
                }
            }
            _ => return Err(err("options", "must be a table".into())),
        }
        let api = Api::with_limit(&spec.url, spec.timeout, spec.max_response_bytes).map_err(
            |e| match e {
                ApiError::Client(m) => err("connector", m),
                other => err("url", other.to_string()),
            },
        )?;
        Ok(Common {
            connector,
            api,
            secret: spec.webhook_secret.clone().filter(|s| !s.is_empty()),
            location,
            amend,
            kinds,
        })
    }

    fn check_kind(&self, kind: Kind) -> Result<(), DeliveryError> {
        if self.kinds.contains(&kind) {
            Ok(())
        } else {
            Err(DeliveryError::Permanent {
                reason: format!("{} does not serve kind `{kind}`", self.connector),
            })
        }
    }

    /// Verify the HMAC, then parse the events envelope strictly (duplicate keys refused; records
    /// are validated by the engine, not here).
    pub fn parse_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Vec<Captured>, WebhookError> {
        let secret = self.secret.as_ref().ok_or_else(|| {
            WebhookError::Unauthorized(
                "no webhook_secret is configured for this endpoint, so no webhook can be verified; \
                 set webhook_secret to the emulator's secret"
                    .into(),
            )
        })?;
        let header = match headers.get(SIGNATURE_HEADER) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                WebhookError::Unauthorized(format!("{SIGNATURE_HEADER} is not ASCII"))
            })?),
        };
        verify_signature(secret.expose().as_bytes(), body, header)
            .map_err(|e| WebhookError::Unauthorized(e.to_string()))?;
        // Strict: a repeated key is refused, not resolved "last wins" (concord_core::json).
        let v: Value = concord_core::json::parse_strict(body)
            .map_err(|e| WebhookError::BadRequest(e.to_string()))?;
        let events = v.get("events").and_then(Value::as_array).ok_or_else(|| {
            WebhookError::BadRequest("`events`: expected an array of events".into())
        })?;
        events
            .iter()
            .enumerate()
            .map(|(i, ev)| self.parse_event(i, ev))
            .collect()
    }

    fn parse_event(&self, i: usize, ev: &Value) -> Result<Captured, WebhookError> {
        let bad = |field: &str, msg: String| {
            WebhookError::BadRequest(format!("events[{i}].{field}: {msg}"))
        };
        let name = ev
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("kind", "is required and must be a string".into()))?;
        let kind: Kind = name
            .parse()
            .map_err(|_| bad("kind", format!("unknown kind `{name}`")))?;
        if !self.kinds.contains(&kind) {
            return Err(bad(
                "kind",
                format!("`{kind}` is not sent by {}", self.connector),
            ));
        }
        let id = ev
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("id", "is required and must be a non-empty string".into()))?;
        let version = match ev.get("version") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            _ => {
                return Err(bad(
                    "version",
                    "is required (the sequence number as a string)".into(),
                ))
            }
        };
        let record = ev
            .get("record")
            .filter(|r| r.is_object())
            .cloned()
            .ok_or_else(|| bad("record", "is required and must be an object".into()))?;
        Ok(Captured {
            kind,
            external_id: id.to_string(),
            version: Some(version),
            record,
        })
    }

    /// `GET /api/changes?kind&after&limit`; the cursor is the last seq read.
    pub async fn read_changes(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        self.check_kind(req.kind)?;
        let after = req.cursor.unwrap_or("0");
        if after.parse::<u64>().is_err() {
            return Err(DeliveryError::Permanent {
                reason: format!("cursor `{after}` is not a sequence number"),
            });
        }
        let limit = req.limit.clamp(1, 1000).to_string();
        let body = self
            .api
            .get(
                &["api", "changes"],
                &[
                    ("kind", req.kind.as_str()),
                    ("after", after),
                    ("limit", &limit),
                ],
            )
            .await?
            .ok()?;
        let next = body.get("next").and_then(Value::as_str).map(str::to_string);
        self.page(req.kind, &body, next)
    }

    /// `GET /api/records?kind&after_id&limit`; the cursor is the last id read.
    pub async fn read_snapshot(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        self.check_kind(req.kind)?;
        let limit = req.limit.clamp(1, 1000).to_string();
        let mut query = vec![("kind", req.kind.as_str()), ("limit", limit.as_str())];
        if let Some(c) = req.cursor {
            query.push(("after_id", c));
        }
        let body = self.api.get(&["api", "records"], &query).await?.ok()?;
        let next = body.get("next").and_then(Value::as_str).map(str::to_string);
        self.page(req.kind, &body, next)
    }

    fn page(
        &self,
        kind: Kind,
        body: &Value,
        cursor: Option<String>,
    ) -> Result<Page, DeliveryError> {
        let malformed = |what: &str| DeliveryError::Transient {
            reason: format!("{} returned a malformed page: {what}", self.connector),
            retry_after: None,
        };
        let rows = body
            .get("records")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("no `records` array"))?;
        let records = rows
            .iter()
            .map(|r| {
                Ok(Captured {
                    kind,
                    external_id: r
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| malformed("a record without `id`"))?
                        .to_string(),
                    version: r.get("version").and_then(Value::as_str).map(str::to_string),
                    record: r.get("record").cloned().unwrap_or(Value::Null),
                })
            })
            .collect::<Result<Vec<_>, DeliveryError>>()?;
        Ok(Page {
            records,
            cursor,
            more: body.get("more").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    /// Customer upsert (same API on both emulators): find by id or e-mail, update when it
    /// differs, else create (the create is itself idempotent on e-mail).
    pub async fn upsert_customer(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let email = str_field(&op.payload, "email")?.trim().to_lowercase();
        let found = self
            .api
            .get(&["api", "customers"], &[("email", &email)])
            .await?
            .ok()?;
        let existing = found
            .get("customers")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .cloned();
        if let Some(mut c) = existing {
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_default();
            if let Some(obj) = c.as_object_mut() {
                obj.remove("id");
            }
            if c != op.payload {
                self.api
                    .put(&["api", "customers", &id], &op.payload)
                    .await?
                    .ok()?;
            }
            return Ok(done(id));
        }
        if op.op == "update_only" {
            return Ok(WriteOutcome::NoMatch);
        }
        let created = self
            .api
            .post(&["api", "customers"], &op.payload)
            .await?
            .ok()?;
        Ok(done(id_of(&created)?))
    }
}

pub(crate) fn done(id: impl Into<String>) -> WriteOutcome {
    WriteOutcome::Done {
        external_id: Some(id.into()),
        version: None,
    }
}

pub(crate) fn str_field<'a>(v: &'a Value, field: &str) -> Result<&'a str, DeliveryError> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| DeliveryError::Permanent {
            reason: format!("payload field `{field}` is required"),
        })
}

pub(crate) fn id_of(v: &Value) -> Result<String, DeliveryError> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| DeliveryError::Transient {
            reason: format!("response without `id`: {v}"),
            retry_after: None,
        })
}

pub(crate) fn unsupported(connector: &str, op: &WriteOp) -> WriteOutcome {
    WriteOutcome::Failed(DeliveryError::Permanent {
        reason: format!("{connector} cannot `{}` a {}", op.op, op.kind),
    })
}

/// The payload with `field` set from the key when missing.
pub(crate) fn with_default(payload: &Value, field: &str, value: &str) -> Value {
    let mut p = payload.clone();
    if let Some(obj) = p.as_object_mut() {
        obj.entry(field.to_string()).or_insert_with(|| json!(value));
    }
    p
}
