//! Order cancellation: `cancelOrder` on every line (Vendure releases the stock).
//!
//! Must never treat an order already cancelled as a failure, nor a refusal (a shipped order)
//! as something a retry could fix: that is permanent, with Vendure's reason.

use super::done;
use crate::vendure::client::ok;
use crate::vendure::VendureConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};

impl VendureConnector {
    /// Cancel an order in Vendure (all lines; stock is released by Vendure). An order already
    /// cancelled is done; one Vendure refuses to cancel (shipped) is permanent, with its reason.
    pub(super) async fn cancel_order(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let order = match &op.external_id {
            Some(id) => {
                let mut o = op.clone();
                o.refs.insert(format!("order:{}", op.key), id.clone());
                self.order_by_key(&op.key, &o).await?
            }
            None => self.order_by_key(&op.key, op).await?,
        };
        let id = order
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if order.get("state").and_then(Value::as_str) == Some("Cancelled") {
            return Ok(done(id));
        }
        let data = self
            .gql
            .query(
                "mutation($i:CancelOrderInput!){ cancelOrder(input:$i){ __typename \
                 ... on Order { id state } ... on ErrorResult { errorCode message } } }",
                json!({"i": {"orderId": id, "reason": "cancelled through Concord", "cancelShipping": true}}),
            )
            .await?;
        ok(&data, "cancelOrder")?;
        Ok(done(id))
    }
}
