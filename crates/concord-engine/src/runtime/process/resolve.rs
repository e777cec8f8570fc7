//! Resolve: which canonical record a journal entry is about, and whether it is to be merged.
//!
//! The key is the entry's xref (endpoint, kind, external id) if one is known, else its natural
//! key (correlation: a record seen for the first time is matched to the one already there
//! rather than created twice); order-scoped records are keyed `{order}:{id}`. Then the entry
//! is settled without a merge when it is stale (older than the version already applied from
//! its endpoint), when it reports an ERP order that cancel-and-replace superseded, or when it
//! is an order-scoped record whose order changed (refused, visibly).
//!
//! It never changes an entity: what it decides is journal notes, rejections and new xrefs.

use super::planner::Planner;
use crate::runtime::orders::{legacy_miscorrelation, other_order, superseded};
use crate::runtime::EngineError;
use concord_core::{natural_key, Kind};
use concord_store::{Entity, JournalEntry, JournalStatus, Xref};
use serde_json::Value;
use std::ops::ControlFlow;

/// A journal entry resolved to the record it is about.
pub(super) struct Resolved {
    /// The record's canonical key.
    pub(super) key: String,
    /// The entity stored (or decided earlier in the batch) under `key`, if any.
    pub(super) current: Option<Entity>,
}

impl Planner<'_> {
    /// Resolve the entry `e` (whose record as processed is `record`, see [`record_of`]).
    /// `Break` when the entry has been settled here (journaled processed with a note, or
    /// rejected) and is not to be merged.
    pub(super) async fn resolve(
        &mut self,
        e: &JournalEntry,
        record: &Value,
    ) -> Result<ControlFlow<(), Resolved>, EngineError> {
        // Resolve: known xref, else correlate by natural key.
        let xk = (e.endpoint.clone(), e.kind, e.external_id.clone());
        let known = match (self.cache.xref_keys.get(&xk), self.cache.pre_keys.get(&xk)) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(pre)) => pre.clone(),
            (None, None) => {
                self.inner
                    .store
                    .xref_key(&e.endpoint, e.kind, &e.external_id)
                    .await?
            }
        };
        let mut key = match known {
            Some(k) => k,
            None => match natural_key(e.kind, record, &e.endpoint) {
                Ok(k) => {
                    self.cache.xref_keys.insert(xk, k.clone());
                    self.cache
                        .known_at
                        .insert((e.endpoint.clone(), e.kind, k.clone()));
                    self.batch.xrefs.push(Xref {
                        endpoint: e.endpoint.clone(),
                        kind: e.kind,
                        external_id: e.external_id.clone(),
                        key: k.clone(),
                    });
                    k
                }
                Err(err) => {
                    let reason = format!("cannot identify the record: {err}");
                    self.reject(e, reason);
                    return Ok(ControlFlow::Break(()));
                }
            },
        };
        let mut current = self.entity(e.kind, &key).await?;
        // A store from before order-scoped keys may map this endpoint's id to another order's
        // record keyed by the bare id (see `legacy_miscorrelation`): the record is its own.
        if let Some(own) = current
            .as_ref()
            .and_then(|cur| legacy_miscorrelation(e.kind, &key, cur, &e.endpoint, record))
        {
            key = own;
            current = self.entity(e.kind, &key).await?;
        }
        if let Some(cur) = &current {
            if let Some(prev) = cur.versions.get(&e.endpoint) {
                if is_older(&e.version, prev) {
                    let note = format!(
                        "stale: version {} is older than {} already applied",
                        e.version, prev
                    );
                    self.done(e, JournalStatus::Processed, note, Some(key));
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        // An ERP order superseded by cancel-and-replace reports the fate of that ERP order (its
        // cancellation, for the replacement), not of the canonical order: skipped, not merged.
        if let Some(note) = superseded(
            e.kind,
            &key,
            &e.endpoint,
            self.orders.reference(&key).as_deref(),
            record,
        ) {
            self.done(e, JournalStatus::Processed, note, Some(key));
            return Ok(ControlFlow::Break(()));
        }
        // Order-scoped records are keyed `{order}:{id}`, so the same id under two orders is
        // two records. Only an xref can resolve a record to a key of another order (a record
        // whose `order` changed at its source, or an endpoint reusing an external id): refused
        // visibly rather than moved or merged.
        if let Some(reason) = current
            .as_ref()
            .and_then(|cur| other_order(e.kind, &key, &cur.state, record))
        {
            self.reject(e, reason);
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(Resolved { key, current }))
    }
}

/// The entry's record as processed: orders remember the channel they were sold through.
pub(super) fn record_of(e: &JournalEntry) -> Value {
    let mut record = e.payload.clone();
    if e.kind == Kind::Order && record.get("channel").is_none_or(Value::is_null) {
        if let Some(obj) = record.as_object_mut() {
            obj.insert("channel".into(), Value::String(e.endpoint.clone()));
        }
    }
    record
}

/// Is the change's version older than the one already applied from its endpoint? The one
/// order of versions, [`concord_core::version::compare`]: integers of any length numerically,
/// RFC 3339 date-times as instants (offsets, daylight saving); what cannot be ordered (content
/// hashes, mixed shapes) is never older, so the change is applied.
fn is_older(new: &str, applied: &str) -> bool {
    concord_core::version::is_older(new, applied)
}

#[cfg(test)]
mod tests {
    use super::is_older;

    #[test]
    fn versions_order_only_when_comparable() {
        assert!(is_older("9", "10"));
        assert!(!is_older("10", "9"));
        assert!(is_older("2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z"));
        assert!(!is_older("abc", "abd"), "content hashes are unordered");
        // Offsets: 10:00+02:00 is 08:00 UTC, older than 09:30 UTC — it must not roll back.
        assert!(is_older(
            "2026-03-01T10:00:00+02:00",
            "2026-03-01T09:30:00+00:00"
        ));
        // Daylight-saving fall-back: 02:10+01:00 is after 02:30+02:00 — applied, not stale.
        assert!(!is_older(
            "2026-10-25T02:10:00+01:00",
            "2026-10-25T02:30:00+02:00"
        ));
        assert!(is_older("99999999999999999999", "100000000000000000000"));
    }
}
