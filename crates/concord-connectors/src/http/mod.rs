//! The `http` connector: any REST (or GraphQL-over-HTTP) API by configuration, no Rust.
//!
//! An endpoint with `connector = "http"` declares in its options what it can do, per kind:
//! - `read.<kind>`: a request polled with a pagination kind (`cursor`, `link`, `page`,
//!   `offset`, `graphql`) and optionally an incremental cursor (a field of the records, an
//!   inclusive lower bound with look-back, deduplicated by the journal): [`paginate`];
//! - `read.<kind>.bulk`: full listings (`read_snapshot`) through an asynchronous export job —
//!   start, poll by id, stream the JSON-lines result from another origin without credentials:
//!   [`bulk`];
//! - `write.<kind>`: the steps of each op (`create`, `update`, `upsert`, `cancel`, `delete`,
//!   `amend`), a lookup-before-create, an idempotency header, bulk requests: [`write`];
//! - `webhook`: HMAC signature verification (SHA-256/SHA-1/SHA-512, hex/base64, prefix,
//!   timestamp with tolerance, several secrets), a dedupe key, jq routes from payload to
//!   canonical records: [`webhook`];
//! - `auth` (bearer, basic, API key, OAuth2 client credentials / refresh token with rotation
//!   kept in the store, login with session token or cookie): [`auth`];
//! - `rate_limit` (a declared budget feeding the engine's token bucket and AIMD,
//!   remaining/reset headers, Retry-After capped) and `errors` (classification rules):
//!   [`limits`]; `rate_limit.pace` reads a wait from any response body (a GraphQL query
//!   cost);
//! - `preset`: a vendor's whole configuration shipped in the binary (Shopify, …), completed and
//!   overridden by the endpoint's own options: [`preset`].
//!
//! The capabilities the engine checks flows against (`concord validate`) are derived from what
//! is declared ([`config::Options::capabilities`]). Every jq program and template is compiled
//! at load ([`config`]), so a typo fails with its field path before anything runs. The user
//! reference is the README's "Connect any HTTP API"; `examples/tryton-medusa.toml` and
//! `examples/http-inventory.toml` are complete configurations.
//!
//! Must never: touch the store (a rotated refresh token goes to the engine through
//! [`Connector::state_updates`]), sleep or retry (one resend after a renewed credential and
//! the declared, bounded poll of an export job apart), follow a redirect or a page link to another origin, read an unbounded body, or
//! print a credential.

pub mod auth;
pub mod bulk;
pub mod client;
pub mod config;
pub mod jq;
pub mod limits;
pub mod oauth1;
pub mod paginate;
pub mod preset;
pub mod template;
pub mod webhook;
pub mod write;

use async_trait::async_trait;
use client::{Client, Exchange};
use concord_core::Kind;
use concord_engine::connector::{
    BuildError, Capabilities, Captured, Connector, DeliveryError, EndpointSpec, Page, ReadRequest,
    WebhookError, WriteOp, WriteOutcome,
};
use config::Options;
use std::sync::Arc;

/// An endpoint spoken to by configuration.
#[derive(Debug)]
pub struct HttpConnector {
    opts: Arc<Options>,
    client: Client,
    caps: Capabilities,
    exports: bulk::Exports,
}

impl HttpConnector {
    /// No I/O: checks the options, compiles every program, builds the client.
    pub fn new(spec: &EndpointSpec) -> Result<HttpConnector, BuildError> {
        // A `preset = "NAME"` brings a vendor's options, under the endpoint's own.
        let options = preset::resolve(&spec.options)?;
        let opts = Arc::new(Options::parse(
            &options,
            spec.webhook_secret.as_ref().map(|s| s.expose()),
        )?);
        let client = Client::new(spec, opts.clone())?;
        Ok(HttpConnector {
            caps: opts.capabilities(),
            opts,
            client,
            exports: bulk::Exports::default(),
        })
    }

    /// Record every request and answer (credentials redacted), for `concord try`.
    pub fn enable_trace(&mut self) {
        self.client.enable_trace();
    }

    /// The exchanges recorded since the last call.
    pub fn take_trace(&self) -> Vec<Exchange> {
        self.client.take_trace()
    }

    /// Tokens fetched so far (logins, OAuth2 token requests).
    pub fn logins(&self) -> u64 {
        self.client.auth().logins()
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn read_cfg(&self, kind: Kind) -> Result<&config::Read, DeliveryError> {
        self.opts
            .read
            .get(&kind)
            .ok_or_else(|| DeliveryError::Permanent {
                reason: format!("this endpoint has no options.read.{kind}"),
            })
    }
}

#[async_trait]
impl Connector for HttpConnector {
    fn connector_type(&self) -> &'static str {
        "http"
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    async fn parse_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Vec<Captured>, WebhookError> {
        let hook = self
            .opts
            .webhook
            .as_ref()
            .ok_or(WebhookError::NotSupported)?;
        webhook::parse(
            hook,
            &self.opts.vars,
            &self.client.env(None),
            headers,
            body,
            std::time::SystemTime::now(),
            Some(&self.client),
        )
        .await
    }

    async fn read_changes(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        let cfg = self.read_cfg(req.kind)?;
        paginate::read_page(&self.client, req.kind, cfg, &req, false).await
    }

    async fn read_snapshot(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        let cfg = self.read_cfg(req.kind)?;
        if let Some(b) = &cfg.bulk {
            return bulk::read_snapshot(&self.client, &self.exports, req.kind, cfg, b, &req).await;
        }
        paginate::read_page(&self.client, req.kind, cfg, &req, true).await
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteOutcome> {
        let Some(first) = ops.first() else {
            return Vec::new();
        };
        let kind = first.kind;
        let Some(cfg) = self.opts.write.get(&kind) else {
            let e = DeliveryError::Permanent {
                reason: format!("this endpoint has no options.write.{kind}"),
            };
            return ops
                .iter()
                .map(|_| WriteOutcome::Failed(e.clone()))
                .collect();
        };
        if let Some(b) = cfg.bulk.as_ref().filter(|b| b.ops.contains(&first.op)) {
            if ops.iter().all(|o| o.op == first.op && o.kind == kind) {
                return write::write_bulk(&self.client, kind, b, &ops).await;
            }
        }
        let mut out = Vec::with_capacity(ops.len());
        for op in &ops {
            out.push(
                write::write_one(&self.client, op.kind, cfg, op)
                    .await
                    .unwrap_or_else(WriteOutcome::Failed),
            );
        }
        out
    }

    fn state_updates(&self) -> Option<tokio::sync::watch::Receiver<Option<String>>> {
        self.client.auth().updates()
    }

    fn restore_state(&self, saved: &str) {
        self.client.auth().restore(saved);
    }
}
