//! Dry run (issue 16): the engine captures and plans against the real endpoints but writes
//! nothing to them. Two locks, each enough alone:
//! - the dispatchers are not started ([`Engine::set_dry_run`] before [`Engine::start`]): what
//!   is planned stays queued, listed by [`Engine::planned_writes`];
//! - every connector is wrapped by [`without_writes`]: a `write` never reaches the endpoint
//!   (it answers a permanent failure naming the dry run), whatever calls it.
//!
//! What is planned in a dry run must never be delivered later by a real run. The planned items
//! live in the store the dry run was given, and that store is marked ([`DRY_RUN_MARK`], kept
//! with the connector states under a name no endpoint can have): the CLI gives a dry run its
//! own store file (never the configured one) and refuses to run for real on a marked store.
//!
//! Must never: call a connector's `write`; notify alert receivers (no alerts task runs).

use super::{Engine, EngineError};
use crate::connector::{
    Capabilities, Captured, Connector, DeliveryError, Page, ReadRequest, WebhookError, WriteOp,
    WriteOutcome,
};
use async_trait::async_trait;
use concord_core::reconcile::{field_differences, FieldDiff};
use concord_store::{ItemState, OutboxItem};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The connector-state name that marks a store as a dry run's (endpoint names are
/// `[a-z0-9_-]+`, so no endpoint can have it).
pub const DRY_RUN_MARK: &str = "#dry-run";

impl Engine {
    /// Make this engine a dry run: [`Engine::start`] then starts no dispatcher and no alert
    /// task, and the store is marked ([`DRY_RUN_MARK`]). Call before `start`.
    pub async fn set_dry_run(&self) -> Result<(), EngineError> {
        self.inner.dry_run.store(true, Ordering::Release);
        let now = self.inner.now();
        self.inner
            .store
            .set_connector_state(DRY_RUN_MARK, "planned writes here are never delivered", now)
            .await?;
        Ok(())
    }

    pub fn is_dry_run(&self) -> bool {
        self.inner.dry_run.load(Ordering::Acquire)
    }

    /// Is this store a dry run's (marked by [`Engine::set_dry_run`])?
    pub async fn store_is_dry_run(&self) -> Result<bool, EngineError> {
        Ok(self
            .inner
            .store
            .connector_state(DRY_RUN_MARK)
            .await?
            .is_some())
    }

    /// What would be written: queued items (pending and waiting for dependencies), oldest
    /// first, at most `limit`.
    pub async fn planned_writes(&self, limit: usize) -> Result<Vec<OutboxItem>, EngineError> {
        let mut items = self
            .inner
            .store
            .items(None, ItemState::Pending, limit)
            .await?;
        let left = limit.saturating_sub(items.len());
        if left > 0 {
            items.extend(
                self.inner
                    .store
                    .items(None, ItemState::Parked, left)
                    .await?,
            );
        }
        items.sort_by_key(|i| i.id);
        Ok(items)
    }
}

/// A planned write with what the destination holds now under its key, where its connector can
/// list that kind.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlannedWrite {
    pub item: OutboxItem,
    /// The destination's current record (`None`: it has none, or it cannot be listed — see
    /// `compared`).
    pub current: Option<serde_json::Value>,
    /// Whether the destination's listing was read for this write.
    pub compared: bool,
    /// The fields the write would change (on the fields both carry; empty for a new record).
    pub differences: Vec<FieldDiff>,
}

impl Engine {
    /// [`Engine::planned_writes`], each with the destination's current record and the fields
    /// it would change: one listing read per (flow, destination) that has planned writes and
    /// whose connector can list the kind (paced like reconciliation's reads). A listing that
    /// fails leaves its writes uncompared.
    pub async fn planned_differences(
        &self,
        limit: usize,
    ) -> Result<Vec<PlannedWrite>, EngineError> {
        let items = self.planned_writes(limit).await?;
        let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            groups
                .entry((item.flow.clone(), item.dest.clone()))
                .or_default()
                .push(i);
        }
        let mut out: Vec<PlannedWrite> = items
            .into_iter()
            .map(|item| PlannedWrite {
                item,
                current: None,
                compared: false,
                differences: Vec::new(),
            })
            .collect();
        for ((flow, dest), members) in groups {
            let Some(flow) = self.inner.config.flow(&flow).cloned() else {
                continue;
            };
            let listable = self
                .inner
                .connectors
                .get(&dest)
                .is_some_and(|c| c.capabilities().kind(flow.kind).read.snapshot);
            if !listable || flow.kind.is_order_scoped() {
                continue;
            }
            let target = super::reconcile::Target {
                flow,
                dest,
                check: super::reconcile::Check::Destination,
            };
            let actual = match super::reconcile::sides::read_endpoint(&self.inner, &target).await {
                Ok((actual, _, _)) => actual,
                Err(EngineError::ShuttingDown) => return Err(EngineError::ShuttingDown),
                Err(e) => {
                    tracing::warn!(dest = %target.dest, error = %e, "dry run: the destination's current records could not be read");
                    continue;
                }
            };
            for i in members {
                let w = &mut out[i];
                w.compared = true;
                w.current = actual.get(&w.item.key).cloned();
                if let Some(current) = &w.current {
                    w.differences = field_differences(&w.item.payload, current);
                }
            }
        }
        Ok(out)
    }
}

/// Every connector wrapped so that it never writes.
pub fn without_writes(
    connectors: BTreeMap<String, Arc<dyn Connector>>,
) -> BTreeMap<String, Arc<dyn Connector>> {
    connectors
        .into_iter()
        .map(|(name, c)| {
            let wrapped: Arc<dyn Connector> = Arc::new(NoWrites(c));
            (name, wrapped)
        })
        .collect()
}

/// A connector that reads through and never writes.
struct NoWrites(Arc<dyn Connector>);

#[async_trait]
impl Connector for NoWrites {
    fn connector_type(&self) -> &'static str {
        self.0.connector_type()
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    async fn parse_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Vec<Captured>, WebhookError> {
        self.0.parse_webhook(headers, body).await
    }

    async fn read_changes(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        self.0.read_changes(req).await
    }

    async fn read_snapshot(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        self.0.read_snapshot(req).await
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteOutcome> {
        ops.iter()
            .map(|_| {
                WriteOutcome::Failed(DeliveryError::Permanent {
                    reason: "dry run: nothing is written to the endpoint".into(),
                })
            })
            .collect()
    }

    fn state_updates(&self) -> Option<tokio::sync::watch::Receiver<Option<String>>> {
        self.0.state_updates()
    }

    fn restore_state(&self, saved: &str) {
        self.0.restore_state(saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::{KindCaps, WriteModes};
    use concord_core::Kind;
    use std::sync::atomic::AtomicUsize;

    struct Counting(AtomicUsize);

    #[async_trait]
    impl Connector for Counting {
        fn connector_type(&self) -> &'static str {
            "counting"
        }
        fn capabilities(&self) -> Capabilities {
            let mut c = Capabilities::default();
            c.kinds.insert(
                Kind::Product,
                KindCaps {
                    write: WriteModes {
                        upsert: true,
                        max_batch: 1,
                        amend: false,
                    },
                    ..KindCaps::default()
                },
            );
            c
        }
        async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteOutcome> {
            self.0.fetch_add(ops.len(), Ordering::SeqCst);
            vec![]
        }
    }

    #[tokio::test]
    async fn a_wrapped_connector_never_writes_and_keeps_its_capabilities() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let mut map: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
        map.insert("shop".into(), inner.clone());
        let wrapped = without_writes(map);
        let c = &wrapped["shop"];
        assert_eq!(c.connector_type(), "counting");
        assert!(c.capabilities().kind(Kind::Product).write.upsert);
        let op = WriteOp {
            item_id: 1,
            kind: Kind::Product,
            key: "A".into(),
            op: "upsert".into(),
            payload: serde_json::json!({"sku": "A"}),
            external_id: None,
            refs: BTreeMap::new(),
        };
        let out = c.write(vec![op.clone(), op]).await;
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|o| matches!(o, WriteOutcome::Failed(e) if e.is_permanent())));
        assert_eq!(inner.0.load(Ordering::SeqCst), 0);
    }
}
