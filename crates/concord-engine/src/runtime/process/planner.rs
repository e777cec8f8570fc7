//! The planner: one batch's decisions, and one journal entry taken through its steps —
//! [`resolve`](super::resolve) (which record), [`merge`](super::merge) (into the entity, under
//! field ownership, with the order lifecycle) and [`plan`](super::plan) (the outbox items) —
//! ending in exactly one journal status for the entry.
//!
//! It decides and accumulates; it never writes to the store (the batch is committed by the one
//! `Store::apply` in `mod.rs`) and never delivers.

use super::cache::Cache;
use super::merge::Merged;
use super::resolve::{record_of, Resolved};
use crate::config::FlowConfig;
use crate::runtime::orders::{EditPlan, Tracker};
use crate::runtime::{pricing, EngineError, Inner};
use concord_core::{Kind, Millis};
use concord_store::{
    AuditEvent, Direction, JournalEntry, JournalStatus, NewDeadLetter, ProcessBatch,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::ops::ControlFlow;

/// Accumulates one batch's decisions, with an overlay ([`Cache`]) so that later entries of the
/// batch see what earlier ones decided.
pub(in crate::runtime) struct Planner<'a> {
    pub(in crate::runtime) inner: &'a Inner,
    pub(in crate::runtime) now: Millis,
    pub(in crate::runtime) batch: ProcessBatch,
    /// Order lifecycle rows read and written by this batch (see `orders/`).
    pub(in crate::runtime) orders: Tracker,
    /// How the current entry's order edit is to be planned (set by `track_order`).
    pub(in crate::runtime) edit: Option<EditPlan>,
    /// The batch's reads and what it decided so far.
    pub(super) cache: Cache,
    /// Destinations that got an item in this batch (their delivery loops are woken).
    pub(super) dests: BTreeSet<String>,
}

impl<'a> Planner<'a> {
    pub(super) fn new(inner: &'a Inner, now: Millis) -> Self {
        Planner {
            inner,
            now,
            batch: ProcessBatch::default(),
            orders: Tracker::default(),
            edit: None,
            cache: Cache::default(),
            dests: BTreeSet::new(),
        }
    }

    /// The batch to commit, and the destinations to wake once it is.
    pub(super) fn finish(self) -> (ProcessBatch, BTreeSet<String>) {
        (self.batch, self.dests)
    }

    /// Journal the entry `e` with `status` and `note` (and the key it resolved to, if any).
    pub(super) fn done(
        &mut self,
        e: &JournalEntry,
        status: JournalStatus,
        note: String,
        key: Option<String>,
    ) {
        self.batch.journal.push((e.id, status, Some(note), key));
    }

    /// Journal the entry `e` as rejected, with an inbound dead letter giving `reason`.
    pub(super) fn reject(&mut self, e: &JournalEntry, reason: String) {
        self.batch.dead_letters.push(NewDeadLetter {
            direction: Direction::Inbound,
            endpoint: e.endpoint.clone(),
            kind: e.kind,
            key: e.external_id.clone(),
            payload: e.payload.clone(),
            reason: reason.clone(),
            journal_id: Some(e.id),
            flow: None,
            at: self.now,
        });
        self.done(e, JournalStatus::Rejected, reason, None);
    }

    /// Take one journal entry through resolve → merge → plan.
    pub(super) async fn entry(&mut self, e: JournalEntry) -> Result<(), EngineError> {
        let flows: Vec<&FlowConfig> = self.inner.config.flows_for(e.kind, &e.endpoint).collect();
        if flows.is_empty() {
            self.done(
                &e,
                JournalStatus::Processed,
                "no flow takes this kind from this endpoint".into(),
                None,
            );
            return Ok(());
        }
        let record = record_of(&e);
        let ControlFlow::Continue(Resolved { key, current }) = self.resolve(&e, &record).await?
        else {
            return Ok(());
        };
        let ControlFlow::Continue(merged) = self.merge(&e, &record, &key, current.as_ref()).await?
        else {
            return Ok(());
        };
        let Merged {
            state,
            changed,
            conflicts,
            order_note,
        } = merged;
        if !changed {
            let note = if conflicts == 0 {
                "unchanged (echo or repeat)".to_string()
            } else {
                format!("unchanged: {conflicts} field(s) owned by another endpoint ignored")
            };
            self.done(&e, JournalStatus::Processed, note, Some(key));
            return Ok(());
        }
        let planned = self.plan_entry(&e, &flows, &key, &state).await?;
        let price_note = if e.kind == Kind::Order && current.is_none() {
            self.check_prices(&e, &key, &state)
        } else {
            String::new()
        };
        self.edit = None;
        self.done(
            &e,
            JournalStatus::Processed,
            format!("applied; {planned} delivery(ies) planned{price_note}{order_note}"),
            Some(key),
        );
        Ok(())
    }

    /// Check a newly seen channel order's line prices against the price index: a
    /// `price_mismatch` audit event per line off by more than the tolerance, and a note suffix
    /// naming them (see `runtime/pricing.rs`). Never blocks the order.
    fn check_prices(&mut self, e: &JournalEntry, key: &str, order: &Value) -> String {
        let (Some(cfg), Some(index)) = (&self.inner.config.pricing, &self.inner.prices) else {
            return String::new();
        };
        let from_channel = order.get("channel").and_then(Value::as_str) == Some(&e.endpoint);
        if !cfg.check_orders || !from_channel {
            return String::new();
        }
        let check = pricing::check_order(index, cfg, order, self.now);
        let mut parts = Vec::new();
        for m in &check.mismatches {
            self.batch.audit.push(AuditEvent {
                at: self.now,
                event: "price_mismatch".into(),
                endpoint: Some(e.endpoint.clone()),
                kind: Some(Kind::Order),
                key: Some(key.to_string()),
                detail: json!({"order": key, "line": m.line, "line_id": m.line_id, "sku": m.sku,
                               "quantity": m.quantity, "expected_minor": m.expected_minor,
                               "actual_minor": m.actual_minor, "list": m.list, "rule": m.rule,
                               "journal_id": e.id}),
            });
            parts.push(format!(
                "line {} ({}) expected {} got {}",
                m.line, m.sku, m.expected_minor, m.actual_minor
            ));
        }
        let mut note = String::new();
        if !parts.is_empty() {
            note.push_str(&format!("; price_mismatch: {}", parts.join(", ")));
        }
        if !check.unpriced.is_empty() {
            let lines: Vec<String> = check.unpriced.iter().map(|i| i.to_string()).collect();
            note.push_str(&format!("; no hub price for line(s) {}", lines.join(", ")));
        }
        note
    }
}
