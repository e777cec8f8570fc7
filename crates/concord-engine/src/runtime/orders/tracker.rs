//! The lifecycle rows one processor batch reads (prefetched in one store call) and writes (an
//! overlay, so a later entry of the batch sees what an earlier one decided).
//!
//! Must never write to the store: the rows it holds are written by the batch they belong to.

use crate::runtime::{EngineError, Inner};
use concord_core::lifecycle::OrderFacts;
use concord_core::model::OrderStatus;
use concord_store::{OrderSummary, StoreError};
use std::collections::{BTreeSet, HashMap};

/// An order's lifecycle as the processor sees it during one batch.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub channel: String,
    pub status: OrderStatus,
    pub facts: OrderFacts,
}

/// The lifecycle rows a batch reads (prefetched) and writes (overlay).
#[derive(Default)]
pub(crate) struct Tracker {
    pub(super) rows: HashMap<String, Option<Row>>,
}

/// A stored lifecycle row. A state or facts the engine cannot read (a newer schema, a hand
/// edit) is logged as an error naming the order and read as the default; when only the facts
/// are unreadable, the stored state still guards the transition check (a cancelled order stays
/// cancelled).
fn row_from(s: &OrderSummary) -> Row {
    let status = OrderStatus::parse(&s.state).unwrap_or_else(|| {
        tracing::error!(order = %s.key, state = %s.state, "stored order state is unknown; read as placed");
        OrderStatus::default()
    });
    let facts = serde_json::from_value(s.facts.clone()).unwrap_or_else(|e| {
        tracing::error!(order = %s.key, error = %e, "stored order facts could not be decoded; read as none");
        OrderFacts::default()
    });
    Row {
        channel: s.channel.clone(),
        status,
        facts,
    }
}

impl Tracker {
    /// Read the lifecycle rows of these order keys in one store call.
    pub async fn prefetch(&mut self, inner: &Inner, keys: Vec<String>) -> Result<(), EngineError> {
        let keys: Vec<String> = keys
            .into_iter()
            .filter(|k| !self.rows.contains_key(k))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        match inner.store.order_lifecycles(&keys).await {
            Ok(found) => {
                for (k, row) in keys.into_iter().zip(found) {
                    self.rows.insert(k, row.as_ref().map(row_from));
                }
                Ok(())
            }
            // A store without the lifecycle tables: every order starts afresh.
            Err(StoreError::Unsupported(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn get(
        &mut self,
        inner: &Inner,
        key: &str,
    ) -> Result<Option<Row>, EngineError> {
        if !self.rows.contains_key(key) {
            self.prefetch(inner, vec![key.to_string()]).await?;
        }
        Ok(self.rows.get(key).cloned().flatten())
    }

    pub(super) fn set(&mut self, key: &str, row: Row) {
        self.rows.insert(key.to_string(), Some(row));
    }

    /// The reference the ERP order of `key` currently has, when it is not the key.
    pub fn reference(&self, key: &str) -> Option<String> {
        self.rows
            .get(key)
            .and_then(Option::as_ref)
            .and_then(|r| r.facts.reference.clone())
    }
}
