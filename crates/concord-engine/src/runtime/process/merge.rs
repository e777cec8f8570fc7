//! Merge: a resolved record into the canonical entity, under field ownership.
//!
//! One owner per field (`[ownership]`): a change to a field by another endpoint is ignored and
//! recorded as a `conflict` audit event. An order's (or order-scoped record's) lifecycle is
//! tracked here, in the same batch and before the entity is written; a refused order change is
//! not applied at all. The merged entity, its versions and — for the stock pool's source —
//! the ledger's figure are added to the batch.
//!
//! It never plans a delivery (that is `plan.rs`) and never writes to the store itself: the
//! batch is committed by the one `Store::apply` in `mod.rs`.

use super::planner::Planner;
use crate::runtime::inventory::Pool;
use crate::runtime::orders::Tracked;
use crate::runtime::{EngineError, Inner};
use concord_core::{content_hash, merge, Kind, Millis};
use concord_store::{AuditEvent, Entity, EntityWrite, JournalEntry, LevelUpdate};
use serde_json::{json, Value};
use std::ops::ControlFlow;

/// What the merge decided for one entry.
pub(super) struct Merged {
    /// The entity's state after the merge.
    pub(super) state: Value,
    /// Whether the state differs from the one before (a new entity counts as changed).
    pub(super) changed: bool,
    /// How many fields owned by another endpoint were ignored.
    pub(super) conflicts: usize,
    /// The order lifecycle's note for the journal (empty when there is none).
    pub(super) order_note: String,
}

impl Planner<'_> {
    /// Merge the entry `e`'s `record` into `current` (the entity under `key`). `Break` when
    /// the order lifecycle refused the change (the entry is journaled as rejected).
    pub(super) async fn merge(
        &mut self,
        e: &JournalEntry,
        record: &Value,
        key: &str,
        current: Option<&Entity>,
    ) -> Result<ControlFlow<(), Merged>, EngineError> {
        let ownership = self
            .inner
            .config
            .ownership
            .get(&e.kind)
            .cloned()
            .unwrap_or_default();
        let outcome = merge(current.map(|c| &c.state), record, &e.endpoint, &ownership);
        for c in &outcome.conflicts {
            self.batch.audit.push(AuditEvent {
                at: self.now,
                event: "conflict".into(),
                endpoint: Some(e.endpoint.clone()),
                kind: Some(e.kind),
                key: Some(key.to_string()),
                detail: json!({"field": c.field, "owner": c.owner, "attempted": c.attempted,
                               "kept": c.kept, "journal_id": e.id}),
            });
        }
        // The order lifecycle: tracked in this same batch, before the entity is written. A
        // refused order change is not applied at all (see `orders.rs`).
        let mut order_note = String::new();
        self.edit = None;
        if outcome.changed || current.is_none() {
            if e.kind == Kind::Order {
                match self.track_order(e, key, current, &outcome.state).await? {
                    Tracked::Apply { note } => order_note = note,
                    Tracked::Reject(reason) => {
                        self.reject_order(e, key, reason);
                        return Ok(ControlFlow::Break(()));
                    }
                }
            } else if e.kind.is_order_scoped() {
                order_note = self.track_child(e, key, &outcome.state).await?;
            }
        }
        let mut versions = current.map(|c| c.versions.clone()).unwrap_or_default();
        versions.insert(e.endpoint.clone(), e.version.clone());
        let hash = content_hash(&outcome.state);
        let entity = Entity {
            kind: e.kind,
            key: key.to_string(),
            state: outcome.state.clone(),
            hash: hash.clone(),
            versions,
            updated_at: self.now,
        };
        self.cache
            .entities
            .insert((e.kind, key.to_string()), entity);
        // The stock pool's ledger takes every figure of its source, changed or not: a figure's
        // version may release reservations even when the numbers look the same.
        if let Some(pool) = ledger_pool(self.inner, e) {
            // `[inventory] release_grace`: for orders whose acceptance carried no version
            // comparable with the figures, time decides (see `Store::update_levels`).
            self.batch.release_grace_ms =
                Some(i64::try_from(pool.cfg.release_grace.as_millis()).unwrap_or(i64::MAX));
            if let Some(update) = level_update(record, &e.version, e.received_at) {
                self.batch.levels.push(update);
            }
        }
        self.batch.entities.push(EntityWrite {
            kind: e.kind,
            key: key.to_string(),
            state: outcome.state.clone(),
            hash,
            endpoint: e.endpoint.clone(),
            version: e.version.clone(),
            at: self.now,
        });
        Ok(ControlFlow::Continue(Merged {
            state: outcome.state,
            changed: outcome.changed,
            conflicts: outcome.conflicts.len(),
            order_note,
        }))
    }
}

/// The stock pool, when `e` is a stock figure of the pool's source (the ledger's input).
pub(super) fn ledger_pool<'i>(inner: &'i Inner, e: &JournalEntry) -> Option<&'i Pool> {
    inner
        .pool
        .as_ref()
        .filter(|p| e.kind == Kind::Stock && p.cfg.source == e.endpoint)
}

/// The ledger figure in a validated canonical stock record.
fn level_update(record: &Value, version: &str, captured_at: Millis) -> Option<LevelUpdate> {
    Some(LevelUpdate {
        sku: record.get("sku")?.as_str()?.to_string(),
        location: record.get("location")?.as_str()?.to_string(),
        on_hand: record.get("on_hand")?.as_i64()?,
        committed: record.get("committed").and_then(Value::as_i64).unwrap_or(0),
        incoming: record
            .get("incoming")
            .cloned()
            .unwrap_or_else(|| Value::Array(vec![])),
        version: version.to_string(),
        captured_at,
    })
}
