//! Parties (customers), correlated by e-mail: a party with the order's e-mail *is* its customer
//! (a natural key, see [`crate::identity`]). A customer write updates the found party's name
//! (Tryton keeps its own addresses) or creates the party with its e-mail, phone and addresses;
//! an order's party and its shipping and billing addresses are found among the party's, or
//! added.
//!
//! Must never create a second party for an e-mail Tryton already has, nor a second address
//! equal (street, postal code, city, normalised) to one the party has.

use super::{permanent, str_at};
use crate::tryton::mapping::address_to_tryton;
use crate::tryton::TrytonConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};

/// Tryton's `party.address.street` of a canonical address, for comparing addresses.
fn street_of(a: &Value) -> String {
    [str_at(a, "/line1"), str_at(a, "/line2")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
}

fn norm(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

impl TrytonConnector {
    /// The party of an order payload: by the engine's ref, else by e-mail, else created.
    pub(in crate::tryton) async fn order_party(&self, op: &WriteOp) -> Result<i64, DeliveryError> {
        let p = &op.payload;
        let email = str_at(p, "/customer/email")
            .ok_or_else(|| permanent("payload field `customer.email` is required"))?
            .to_lowercase();
        let party = match op
            .refs
            .get(&format!("customer:{email}"))
            .and_then(|id| id.parse::<i64>().ok())
        {
            Some(id) => id,
            None => match self.find_party(&email).await? {
                Some(id) => id,
                None => {
                    let customer = json!({
                        "email": email,
                        "name": p.pointer("/customer/name").cloned().unwrap_or(Value::Null),
                        "addresses": p.get("shipping_address").map(|a| vec![a.clone()]).unwrap_or_default(),
                    });
                    self.create_party(&customer).await?
                }
            },
        };
        Ok(party)
    }

    /// The (invoice, shipment) addresses of an order payload at `party`: each found among the
    /// party's addresses (same street, postal code and city) or added to it; without a
    /// shipping address, the party's first address; without a billing address, the shipping one.
    pub(in crate::tryton) async fn order_addresses(
        &self,
        party: i64,
        p: &Value,
    ) -> Result<(i64, i64), DeliveryError> {
        let shipping = p.get("shipping_address").filter(|a| a.is_object());
        let ship = match shipping {
            Some(a) => self.matching_address(party, a).await?,
            None => self.party_address(party, None).await?,
        };
        let invoice = match p.get("billing_address").filter(|a| a.is_object()) {
            Some(a) => self.matching_address(party, a).await?,
            None => ship,
        };
        Ok((invoice, ship))
    }

    /// The party's address equal to canonical address `a` (street, postal code, city), created
    /// when it has none.
    async fn matching_address(&self, party: i64, a: &Value) -> Result<i64, DeliveryError> {
        let rows = self
            .rpc
            .search_read(
                "party.address",
                json!([["party", "=", party]]),
                None,
                json!([["sequence", "ASC"], ["id", "ASC"]]),
                &["street", "postal_code", "city"],
            )
            .await?;
        let want = (
            norm(&street_of(a)),
            norm(str_at(a, "/postal_code").unwrap_or("")),
            norm(str_at(a, "/city").unwrap_or("")),
        );
        let s = |r: &Value, k: &str| norm(r.get(k).and_then(Value::as_str).unwrap_or(""));
        if let Some(id) = rows
            .iter()
            .find(|r| (s(r, "street"), s(r, "postal_code"), s(r, "city")) == want)
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64)
        {
            return Ok(id);
        }
        let mut addr = address_to_tryton(a, self.country(a).await?);
        addr["party"] = json!(party);
        self.create_one("party.address", addr).await
    }

    /// The party's first address; one is created (from `fallback`, else empty) when it has none.
    async fn party_address(
        &self,
        party: i64,
        fallback: Option<&Value>,
    ) -> Result<i64, DeliveryError> {
        let rows = self
            .rpc
            .search_read(
                "party.address",
                json!([["party", "=", party]]),
                Some(1),
                json!([["sequence", "ASC"], ["id", "ASC"]]),
                &["id"],
            )
            .await?;
        if let Some(id) = rows
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64)
        {
            return Ok(id);
        }
        let mut addr = match fallback {
            Some(a) => address_to_tryton(a, self.country(a).await?),
            None => json!({}),
        };
        addr["party"] = json!(party);
        self.create_one("party.address", addr).await
    }

    /// The Tryton country id of a canonical address's country, when Tryton has it.
    async fn country(&self, address: &Value) -> Result<Option<i64>, DeliveryError> {
        let Some(code) = str_at(address, "/country") else {
            return Ok(None);
        };
        self.rpc
            .first_id(
                "country.country",
                json!([["code", "=", code.to_uppercase()]]),
            )
            .await
    }

    /// The party with this e-mail (case-insensitive), if any.
    async fn find_party(&self, email: &str) -> Result<Option<i64>, DeliveryError> {
        let rows = self
            .rpc
            .search_read(
                "party.contact_mechanism",
                json!([["type", "=", "email"], ["value", "ilike", email]]),
                Some(1),
                json!([["id", "ASC"]]),
                &["party"],
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("party"))
            .and_then(Value::as_i64))
    }

    async fn create_party(&self, c: &Value) -> Result<i64, DeliveryError> {
        let email =
            str_at(c, "/email").ok_or_else(|| permanent("payload field `email` is required"))?;
        let name = str_at(c, "/name").unwrap_or(email);
        let mut mechs = vec![json!({"type": "email", "value": email})];
        if let Some(phone) = str_at(c, "/phone") {
            mechs.push(json!({"type": "phone", "value": phone}));
        }
        let mut addresses = Vec::new();
        for a in c
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            addresses.push(address_to_tryton(a, self.country(a).await?));
        }
        let mut party = json!({"name": name, "contact_mechanisms": [["create", mechs]]});
        if !addresses.is_empty() {
            party["addresses"] = json!([["create", addresses]]);
        }
        self.create_one("party.party", party).await
    }

    /// Customers are correlated by e-mail: found → its name is updated when it differs (Tryton
    /// keeps its own addresses); not found → created.
    pub(super) async fn upsert_party(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let email = str_at(&op.payload, "/email")
            .ok_or_else(|| permanent("payload field `email` is required"))?
            .to_lowercase();
        let found = match op
            .external_id
            .as_deref()
            .and_then(|i| i.parse::<i64>().ok())
        {
            Some(id) => Some(id),
            None => self.find_party(&email).await?,
        };
        let id = match found {
            Some(id) => {
                if let Some(name) = str_at(&op.payload, "/name") {
                    let cur = self
                        .rpc
                        .read_ctx("party.party", &[id], &["name"], &json!({}))
                        .await?;
                    if cur
                        .first()
                        .and_then(|r| r.get("name"))
                        .and_then(Value::as_str)
                        != Some(name)
                    {
                        self.rpc
                            .model(
                                "party.party",
                                "write",
                                vec![json!([id]), json!({"name": name})],
                            )
                            .await?;
                    }
                }
                id
            }
            None if op.op == "update_only" => return Ok(WriteOutcome::NoMatch),
            None => self.create_party(&op.payload).await?,
        };
        Ok(WriteOutcome::Done {
            external_id: Some(id.to_string()),
            version: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_compare_by_normalised_street() {
        let a = json!({"line1": "1  Main Street", "line2": "Flat 2", "city": "X"});
        assert_eq!(street_of(&a), "1  Main Street\nFlat 2");
        assert_eq!(norm(&street_of(&a)), norm("1 main street\nflat 2"));
    }
}
