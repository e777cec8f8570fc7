//! Customers, correlated by e-mail: found → names and phone updated; not found → created with
//! its addresses.
//!
//! Must never create a second customer for one e-mail (it is looked up first, unless the hub
//! already knows the customer's id).

use super::{done, permanent, str_at};
use crate::vendure::client::ok;
use crate::vendure::mapping::{address_input, split_name};
use crate::vendure::VendureConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};

impl VendureConnector {
    /// The customer with this e-mail: its id.
    pub(super) async fn find_customer(&self, email: &str) -> Result<Option<String>, DeliveryError> {
        let data = self
            .gql
            .query(
                "query($e:String!){ customers(options:{filter:{emailAddress:{eq:$e}}, take:1}){ items { id } } }",
                json!({"e": email}),
            )
            .await?;
        Ok(data
            .pointer("/customers/items/0/id")
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// Customers are correlated by e-mail: found → names and phone updated; not found →
    /// created with its addresses.
    pub(super) async fn upsert_customer(
        &self,
        op: &WriteOp,
    ) -> Result<WriteOutcome, DeliveryError> {
        let p = &op.payload;
        let email = str_at(p, "/email")
            .ok_or_else(|| permanent("payload field `email` is required"))?
            .to_lowercase();
        let (first, last) = split_name(str_at(p, "/name").unwrap_or(""));
        let phone = str_at(p, "/phone");
        let found = match &op.external_id {
            Some(id) => Some(id.clone()),
            None => self.find_customer(&email).await?,
        };
        const UNION: &str =
            "__typename ... on Customer { id } ... on ErrorResult { errorCode message }";
        if let Some(id) = found {
            let mut input = json!({"id": id});
            if !first.is_empty() {
                input["firstName"] = json!(first);
                input["lastName"] = json!(last);
            }
            if let Some(ph) = phone {
                input["phoneNumber"] = json!(ph);
            }
            let data = self
                .gql
                .query(
                    &format!("mutation($i:UpdateCustomerInput!){{ updateCustomer(input:$i){{ {UNION} }} }}"),
                    json!({"i": input}),
                )
                .await?;
            ok(&data, "updateCustomer")?;
            return Ok(done(id));
        }
        if op.op == "update_only" {
            return Ok(WriteOutcome::NoMatch);
        }
        let mut input = json!({"emailAddress": email, "firstName": first, "lastName": last});
        if let Some(ph) = phone {
            input["phoneNumber"] = json!(ph);
        }
        let data = self
            .gql
            .query(
                &format!(
                    "mutation($i:CreateCustomerInput!){{ createCustomer(input:$i){{ {UNION} }} }}"
                ),
                json!({"i": input}),
            )
            .await?;
        let id = ok(&data, "createCustomer")?
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| permanent("createCustomer answered no id"))?
            .to_string();
        let name = str_at(p, "/name").unwrap_or(&email).to_string();
        for a in p
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.gql
                .query(
                    "mutation($c:ID!,$i:CreateAddressInput!){ createCustomerAddress(customerId:$c, input:$i){ id } }",
                    json!({"c": id, "i": address_input(a, &name)}),
                )
                .await?;
        }
        Ok(done(id))
    }
}
