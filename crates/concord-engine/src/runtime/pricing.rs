//! Prices at run time: the in-memory price index behind `GET /v1/prices`, and the check of
//! channel orders' line prices against it.
//!
//! - The store is the source of truth: the index holds a copy of every `price` entity (parsed
//!   into `concord_core::pricing::Rule`s, grouped by SKU) and every customer's group (from
//!   `customer` entities). [`load`] rebuilds it from the store at start, before the processor
//!   runs; the processor applies each batch's price and customer entity writes to it right after
//!   the batch commits ([`PriceIndex::apply`]). A crash loses nothing: the next start reloads.
//! - Lookups ([`super::Engine::price`]) take a read lock, pick the candidates of one SKU and ask
//!   `concord_core::pricing::quote` — no store read, no connector call.
//! - Orders captured from their own channel are checked once, when first seen: each line whose
//!   `unit_price_minor` differs from the hub's unit price by more than
//!   `[pricing] tolerance_minor` yields a [`Mismatch`]; the processor records a `price_mismatch`
//!   audit event per line and names the lines in the order's journal note. The order is never
//!   blocked. Lines with no applicable price are not flagged (the note says so). The check sees
//!   the index as of the previous batch: a price processed in the same batch as the order is
//!   not yet in it.
//!
//! Must never call a connector or hold the lock across an await.

use super::{Engine, Inner};
use crate::config::PricingConfig;
use concord_core::pricing::{quote, NoPrice, Query, Quote, Rule};
use concord_core::{Kind, Millis};
use concord_store::{EntityWrite, StoreError};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::RwLock;

/// Errors of `/v1/prices`, each mapped to an HTTP status by the server.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    /// No `[pricing]` section: 404.
    #[error("price lookups are not configured (no [pricing] section)")]
    NotConfigured,
    /// 400, naming the field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// 404, saying which filter excluded the candidates.
    #[error("no price applies: {0}")]
    NoPrice(NoPrice),
    /// 503.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, message: impl Into<String>) -> PricingError {
    PricingError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A lookup as the API receives it.
#[derive(Debug, Clone, Default)]
pub struct PriceRequest {
    pub channel: String,
    /// Canonical customer key (e-mail; lower-cased here).
    pub customer: Option<String>,
    pub sku: String,
    pub quantity: i64,
    /// `None`: `[pricing] currency`, else any.
    pub currency: Option<String>,
}

/// The answer of `/v1/prices`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PriceAnswer {
    pub channel: String,
    pub customer: Option<String>,
    /// The customer's group as the hub knows it (from the customer entity).
    pub customer_group: Option<String>,
    #[serde(flatten)]
    pub quote: Quote,
}

/// One order line whose price is off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub line: usize,
    pub line_id: Option<String>,
    pub sku: String,
    pub quantity: i64,
    pub expected_minor: i64,
    pub actual_minor: i64,
    pub list: String,
    pub rule: String,
}

/// What the check of one order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderCheck {
    pub mismatches: Vec<Mismatch>,
    /// Lines with no applicable price (not flagged as mismatches).
    pub unpriced: Vec<usize>,
}

#[derive(Default)]
struct IndexState {
    /// SKU → (entity key, rule), one entry per price entity.
    by_sku: HashMap<String, Vec<(String, Rule)>>,
    /// Entity key → SKU, to move or drop an entry when its entity changes.
    sku_of: HashMap<String, String>,
    /// Customer key → group.
    groups: HashMap<String, Option<String>>,
}

/// The in-memory copy of the hub's price lists and customer groups (see the module docs).
#[derive(Default)]
pub struct PriceIndex {
    state: RwLock<IndexState>,
}

impl PriceIndex {
    /// Apply entity states (in order): `price` and `customer` ones update the index, other kinds
    /// are ignored. A price state that does not parse is dropped from the index (and logged).
    pub fn apply<'a>(&self, writes: impl IntoIterator<Item = (Kind, &'a str, &'a Value)>) {
        let mut st = match self.state.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (kind, key, state) in writes {
            match kind {
                Kind::Price => st.put_price(key, state),
                Kind::Customer => {
                    let group = state
                        .get("group")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    st.groups.insert(key.to_string(), group);
                }
                _ => {}
            }
        }
    }

    /// Number of prices and customers indexed.
    pub fn len(&self) -> (usize, usize) {
        let st = match self.state.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        (st.sku_of.len(), st.groups.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// Price one line. `customer` must already be lower-cased.
    pub fn quote(
        &self,
        channel: &str,
        customer: Option<&str>,
        sku: &str,
        quantity: i64,
        currency: Option<&str>,
        now: Millis,
    ) -> (Option<String>, Result<Quote, NoPrice>) {
        let st = match self.state.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let group = customer.and_then(|c| st.groups.get(c).cloned().flatten());
        let q = Query {
            channel,
            customer,
            group: group.as_deref(),
            sku,
            quantity,
            currency,
            now,
        };
        let rules = st.by_sku.get(sku).map(Vec::as_slice).unwrap_or(&[]);
        let result = quote(rules.iter().map(|(_, r)| r), &q);
        (group, result)
    }
}

impl IndexState {
    fn put_price(&mut self, key: &str, state: &Value) {
        if let Some(old_sku) = self.sku_of.remove(key) {
            if let Some(v) = self.by_sku.get_mut(&old_sku) {
                v.retain(|(k, _)| k != key);
                if v.is_empty() {
                    self.by_sku.remove(&old_sku);
                }
            }
        }
        let rule = serde_json::from_value::<concord_core::model::Price>(state.clone())
            .map_err(|e| e.to_string())
            .and_then(Rule::new);
        match rule {
            Ok(rule) => {
                let sku = rule.price.sku.clone();
                self.sku_of.insert(key.to_string(), sku.clone());
                self.by_sku
                    .entry(sku)
                    .or_default()
                    .push((key.to_string(), rule));
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "price entity is not a canonical price; not served by /v1/prices");
            }
        }
    }
}

/// Rebuild the index from the store (every `price` and `customer` entity, paged by key).
pub(crate) async fn load(inner: &Inner, index: &PriceIndex) -> Result<(), StoreError> {
    const PAGE: usize = 20_000;
    for kind in [Kind::Customer, Kind::Price] {
        let mut after: Option<String> = None;
        loop {
            let page = inner
                .store
                .entities_of_kind(kind, after.as_deref(), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            index.apply(page.iter().map(|e| (e.kind, e.key.as_str(), &e.state)));
            if page.len() < PAGE {
                break;
            }
        }
    }
    let (prices, customers) = index.len();
    tracing::info!(prices, customers, "price index loaded from the store");
    Ok(())
}

/// The index updates of a batch's entity writes (price and customer ones), in order.
pub(crate) fn updates_of(writes: &[EntityWrite]) -> Vec<(Kind, String, Value)> {
    writes
        .iter()
        .filter(|w| matches!(w.kind, Kind::Price | Kind::Customer))
        .map(|w| (w.kind, w.key.clone(), w.state.clone()))
        .collect()
}

/// Check an order's line prices (see the module docs). `order` is the validated canonical order.
pub fn check_order(
    index: &PriceIndex,
    cfg: &PricingConfig,
    order: &Value,
    now: Millis,
) -> OrderCheck {
    let mut out = OrderCheck::default();
    let channel = order.get("channel").and_then(Value::as_str).unwrap_or("");
    let customer = order
        .pointer("/customer/email")
        .and_then(Value::as_str)
        .map(str::to_lowercase);
    let currency = order
        .get("currency")
        .and_then(Value::as_str)
        .or(cfg.currency.as_deref());
    let Some(lines) = order.get("lines").and_then(Value::as_array) else {
        return out;
    };
    for (i, line) in lines.iter().enumerate() {
        let (Some(sku), Some(qty)) = (
            line.get("sku").and_then(Value::as_str),
            line.get("quantity").and_then(Value::as_i64),
        ) else {
            continue;
        };
        let actual = line
            .get("unit_price_minor")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        match index
            .quote(channel, customer.as_deref(), sku, qty, currency, now)
            .1
        {
            Ok(q) => {
                if actual.abs_diff(q.unit_minor) > cfg.tolerance_minor.unsigned_abs() {
                    out.mismatches.push(Mismatch {
                        line: i,
                        line_id: line
                            .get("line_id")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        sku: sku.to_string(),
                        quantity: qty,
                        expected_minor: q.unit_minor,
                        actual_minor: actual,
                        list: q.list,
                        rule: q.rule,
                    });
                }
            }
            Err(_) => out.unpriced.push(i),
        }
    }
    out
}

impl Engine {
    /// `GET /v1/prices`: served from the in-memory price index, never by calling the ERP.
    pub fn price(&self, req: &PriceRequest) -> Result<PriceAnswer, PricingError> {
        let inner = &self.inner;
        let (Some(cfg), Some(index)) = (&inner.config.pricing, &inner.prices) else {
            return Err(PricingError::NotConfigured);
        };
        if req.channel.trim().is_empty() {
            return Err(invalid("channel", "required"));
        }
        if !inner.config.endpoints.contains_key(&req.channel) {
            return Err(invalid(
                "channel",
                format!("`{}` is not a configured endpoint", req.channel),
            ));
        }
        if req.sku.trim().is_empty() {
            return Err(invalid("sku", "required"));
        }
        // The bounded domain (concord_core::limits): a SKU is an identifier, a quantity at most
        // 10⁹ units (so `unit × qty` of any list price within bounds fits in i64).
        let limit = |e: concord_core::limits::LimitError| invalid(&e.field, e.message);
        concord_core::limits::key("sku", &req.sku).map_err(limit)?;
        concord_core::limits::line_quantity("qty", req.quantity).map_err(limit)?;
        if let Some(c) = &req.customer {
            concord_core::limits::key_chars("customer", c).map_err(limit)?;
        }
        let currency = req.currency.as_deref().or(cfg.currency.as_deref());
        if let Some(c) = currency {
            if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(invalid(
                    "currency",
                    format!(
                        "must be a three-letter ISO 4217 code such as USD, got {}",
                        concord_core::limits::excerpt(c)
                    ),
                ));
            }
        }
        let customer = match &req.customer {
            Some(c) if c.trim().is_empty() => return Err(invalid("customer", "must not be empty")),
            Some(c) => Some(c.trim().to_lowercase()),
            None => None,
        };
        let (group, result) = index.quote(
            &req.channel,
            customer.as_deref(),
            req.sku.trim(),
            req.quantity,
            currency,
            inner.now(),
        );
        let quote = result.map_err(PricingError::NoPrice)?;
        Ok(PriceAnswer {
            channel: req.channel.clone(),
            customer,
            customer_group: group,
            quote,
        })
    }

    /// The price index, when `[pricing]` is configured (for benchmarks and tests).
    pub fn price_index(&self) -> Option<&PriceIndex> {
        self.inner.prices.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn index_follows_entity_changes_and_checks_orders() {
        let index = PriceIndex::default();
        let base = json!({"sku": "A", "list": "default", "currency": "USD", "amount_minor": 1000,
                          "tiers": [{"min_quantity": 10, "amount_minor": 900}]});
        let vip = json!({"sku": "A", "list": "vip", "currency": "USD", "amount_minor": 700,
                         "customer_group": "vip"});
        let ann = json!({"email": "ann@example.com", "group": "vip"});
        index.apply([
            (Kind::Price, "default:A", &base),
            (Kind::Price, "vip:A", &vip),
            (Kind::Customer, "ann@example.com", &ann),
        ]);
        assert_eq!(index.len(), (2, 1));
        let (group, q) = index.quote("web", Some("ann@example.com"), "A", 1, None, 0);
        assert_eq!(group.as_deref(), Some("vip"));
        assert_eq!(q.unwrap().unit_minor, 700);
        // The base list changes: the index replaces, never duplicates, the entry.
        let cheaper =
            json!({"sku": "A", "list": "default", "currency": "USD", "amount_minor": 950});
        index.apply([(Kind::Price, "default:A", &cheaper)]);
        assert_eq!(index.len(), (2, 1));
        let (_, q) = index.quote("web", None, "A", 10, Some("USD"), 0);
        assert_eq!(q.unwrap().unit_minor, 950);

        let cfg = PricingConfig {
            currency: None,
            tolerance_minor: 5,
            check_orders: true,
        };
        let order = json!({"channel": "web", "number": "1", "customer": {"email": "Ann@example.com"},
            "currency": "USD", "lines": [
                {"sku": "A", "quantity": 2, "unit_price_minor": 704},
                {"sku": "A", "quantity": 2, "unit_price_minor": 800, "line_id": "l2"},
                {"sku": "NOPE", "quantity": 1, "unit_price_minor": 1}]});
        let check = check_order(&index, &cfg, &order, 0);
        assert_eq!(check.unpriced, vec![2]);
        assert_eq!(check.mismatches.len(), 1, "within tolerance is not flagged");
        let m = &check.mismatches[0];
        assert_eq!(
            (
                m.line,
                m.line_id.as_deref(),
                m.expected_minor,
                m.actual_minor
            ),
            (1, Some("l2"), 700, 800)
        );
    }
}
