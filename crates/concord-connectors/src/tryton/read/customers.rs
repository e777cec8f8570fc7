//! Customers: parties with an e-mail contact mechanism, with their phone, addresses (the
//! connector's `default_country` filling a missing country) and, with `sale_price_list`, their
//! price list's name as `group`.
//!
//! Must never read a party without an e-mail as a customer (the company and suppliers are
//! parties too).

use super::id_of;
use crate::tryton::mapping::{address_record, format_ts};
use crate::tryton::TrytonConnector;
use chrono::NaiveDateTime;
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError};
use serde_json::{json, Value};

impl TrytonConnector {
    pub(super) async fn customers_of(
        &self,
        parties: &[i64],
        version: Option<NaiveDateTime>,
    ) -> Result<Vec<Captured>, DeliveryError> {
        if parties.is_empty() {
            return Ok(Vec::new());
        }
        let mechs = self
            .rpc
            .search_read(
                "party.contact_mechanism",
                json!([
                    ["party", "in", parties],
                    ["type", "in", ["email", "phone", "mobile"]]
                ]),
                None,
                json!([["sequence", "ASC"], ["id", "ASC"]]),
                &["party", "type", "value"],
            )
            .await?;
        let addresses = self
            .rpc
            .search_read(
                "party.address",
                json!([["party", "in", parties]]),
                None,
                json!([["sequence", "ASC"], ["id", "ASC"]]),
                &[
                    "party",
                    "street",
                    "city",
                    "postal_code",
                    "country.code",
                    "party_name",
                ],
            )
            .await?;
        let (_, party_lists) = self.price_list_modules().await?;
        let mut fields = vec!["name", "code"];
        if party_lists {
            fields.push("sale_price_list.name");
        }
        let rows = self
            .rpc
            .read_ctx("party.party", parties, &fields, &json!({}))
            .await?;
        let version = version.map(format_ts);
        let mut out = Vec::new();
        for r in &rows {
            let Some(pid) = id_of(r) else { continue };
            let of = |t: &[&str]| {
                mechs
                    .iter()
                    .filter(|m| m.get("party").and_then(Value::as_i64) == Some(pid))
                    .find(|m| {
                        m.get("type")
                            .and_then(Value::as_str)
                            .is_some_and(|x| t.contains(&x))
                    })
                    .and_then(|m| m.get("value").and_then(Value::as_str))
                    .map(str::to_string)
            };
            // Parties without an e-mail (the company, suppliers) are not customers for Concord.
            let Some(email) = of(&["email"]) else {
                continue;
            };
            let mut rec = json!({"email": email.trim().to_lowercase()});
            if let Some(n) = r.get("name").and_then(Value::as_str) {
                rec["name"] = json!(n);
            }
            if let Some(c) = r.get("code").and_then(Value::as_str) {
                rec["customer_number"] = json!(c);
            }
            // The customer's price list is its group (see `prices`: a list several parties use
            // is a `customer_group` list named after it).
            if let Some(g) = r
                .pointer("/sale_price_list./name")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|g| !g.is_empty())
            {
                rec["group"] = json!(g);
            }
            if let Some(p) = of(&["phone", "mobile"]) {
                rec["phone"] = json!(p);
            }
            let addrs: Vec<Value> = addresses
                .iter()
                .filter(|a| a.get("party").and_then(Value::as_i64) == Some(pid))
                .filter_map(address_record)
                .map(|mut a| {
                    if a["country"] == "" {
                        if let Some(c) = &self.opts.default_country {
                            a["country"] = json!(c);
                        }
                    }
                    a
                })
                .collect();
            if !addrs.is_empty() {
                rec["addresses"] = Value::Array(addrs);
            }
            out.push(Captured {
                kind: Kind::Customer,
                external_id: pid.to_string(),
                version: version.clone(),
                record: rec,
            });
        }
        Ok(out)
    }
}
