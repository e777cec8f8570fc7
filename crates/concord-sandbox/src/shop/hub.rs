//! Checkout through the hub's stock pool (design §5): the storefront asks the hub, not its own
//! inventory copy, whether it may sell.
//!
//! 1. `POST {hub}/v1/reservations {"channel","key": <fresh cart id>,"lines"}`: 409 → the
//!    checkout is refused ([`ShopError::OutOfStock`] naming the first short SKU with what the
//!    hub has; counted in `hub_refused`, distinct from the store's own `oversell_refused`).
//! 2. 201/200 → an order number is taken and `POST {hub}/v1/reservations/{id}/commit
//!    {"order": number}` commits the reservation *before* the order exists: the order's webhook
//!    can then never reach the hub (and the ERP) ahead of the commit, which would leave the
//!    reservation committed after its order was already accepted. A failed commit cancels the
//!    reservation (best effort) and fails the checkout; no order is placed.
//! 3. The order is placed without re-checking the store's inventory copy (the hub said yes;
//!    the copy may lag), one line per reserved (sku, location) with `location` set, so the ERP
//!    commits the units where the hub held them. The order records its reservation id.
//!
//! The store's inventory copy is not decremented: it is the hub's figure, and the hub pushes
//! the new available-to-sell right after every reservation. A local decrement would race with
//! that push and could be left standing whenever the hub's next figure equals the last one it
//! sent (it skips unchanged figures), so the copy would disagree with the hub for good.
//!
//! Must never: hold the state lock across an `.await`.

use super::state::PlacedOrder;
use super::{ShopError, ShopInner};
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

fn unavailable(e: impl std::fmt::Display) -> ShopError {
    ShopError::Unavailable(e.to_string())
}

impl ShopInner {
    /// Add the hub's storefront key, when one is configured.
    fn with_key(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.opts.hub.as_ref().and_then(|h| h.key.as_deref()) {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    pub async fn checkout(
        &self,
        email: &str,
        name: Option<&str>,
        lines: &[(String, i64)],
    ) -> Result<PlacedOrder, ShopError> {
        let Some(hub) = self.opts.hub.clone() else {
            return self.place_order(email, name, lines);
        };
        let (cust, lines, _) = self.prepare(email, name, lines)?;
        let base = hub.base_url.trim_end_matches('/').to_string();
        let key = format!("cart-{}-{:016x}", self.opts.name, fastrand::u64(..));
        let body = json!({
            "channel": hub.channel,
            "key": key,
            "lines": lines.iter().map(|(s, q)| json!({"sku": s, "quantity": q})).collect::<Vec<_>>(),
        });
        let resp = self
            .with_key(self.http.post(format!("{base}/v1/reservations")))
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.map_err(unavailable)?;
        match status {
            200 | 201 => {}
            409 => {
                self.core.counters.hub_refused.fetch_add(1, Relaxed);
                let short = v.pointer("/short/0");
                let field = |f: &str| short.and_then(|s| s.get(f));
                return Err(ShopError::OutOfStock {
                    sku: field("sku")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    requested: field("requested").and_then(Value::as_i64).unwrap_or(0),
                    available: field("available").and_then(Value::as_i64).unwrap_or(0),
                });
            }
            _ => return Err(unavailable(format!("POST /v1/reservations: {status} {v}"))),
        }
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| unavailable(format!("reservation without `id`: {v}")))?
            .to_string();
        let reserved: Vec<(String, i64, Option<String>)> = v
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| {
                Some((
                    l.get("sku")?.as_str()?.to_string(),
                    l.get("quantity")?.as_i64()?,
                    l.get("location")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                ))
            })
            .collect();
        if reserved.is_empty() {
            return Err(unavailable(format!("reservation without lines: {v}")));
        }
        let n = self.next_number();
        let number = (1000 + n).to_string();
        if let Err(e) = self.commit(&base, &id, &number).await {
            let _ = self
                .with_key(self.http.delete(format!("{base}/v1/reservations/{id}")))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            return Err(e);
        }
        Ok(self.place_reserved(n, cust, &reserved, &id))
    }

    /// Commit reservation `id` for order `number`, retrying transport errors a few times.
    async fn commit(&self, base: &str, id: &str, number: &str) -> Result<(), ShopError> {
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let sent = self
                .with_key(
                    self.http
                        .post(format!("{base}/v1/reservations/{id}/commit")),
                )
                .json(&json!({ "order": number }))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_server_error() => last = format!("commit: {}", r.status()),
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    return Err(unavailable(format!("commit of {id}: {status} {text}")));
                }
                Err(e) => last = format!("commit of {id}: {e}"),
            }
        }
        Err(unavailable(last))
    }
}
