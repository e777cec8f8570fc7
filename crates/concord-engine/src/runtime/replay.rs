//! Dead-letter replay: turn open dead letters back into work — outbound ones into outbox items
//! (state kinds re-planned from the current entity state through the flow's outbound mapping),
//! inbound ones into captures validated again — and hand them to `Store::replay_dead_letters`
//! in one call, then audit, wake the processor and the destinations.
//!
//! Reached only through [`Engine::replay_dead_letters`](super::Engine::replay_dead_letters).
//! It must never resend an old payload of a state kind that has a current entity (an old payload
//! must never overwrite a newer one), never close a dead letter whose record still fails, and
//! never write to the store other than through that one `replay_dead_letters` call and its audit.

use super::process::{operation, set_reference};
use super::{EngineError, Inner};
use crate::config::FlowConfig;
use crate::mapping::{filter_then_map, Filtered, MapVars};
use concord_core::{content_hash, Kind};
use concord_store::{
    AuditEvent, DeadLetter, DeadLetterId, DeadLetterState, Direction, NewItem, Replay, StoreError,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// An order replayed to a destination other than its channel (the ERP): addressed by the
/// order's current reference there (`{key}~{n}` after cancel-and-replace, as `process/plan.rs`
/// does), and an edit replayed as the `amend` it was — as `update` an ERP connector would find
/// the order and answer done without applying the edit.
async fn order_replay(
    inner: &Inner,
    dl: &DeadLetter,
    state: &Value,
    op: &mut String,
    payload: &mut Value,
) -> Result<(), EngineError> {
    if state.get("channel").and_then(Value::as_str) == Some(dl.endpoint.as_str()) {
        return Ok(());
    }
    if op == "update" && dl.op.as_deref() == Some("amend") {
        *op = "amend".into();
    }
    let reference = match inner
        .store
        .order_lifecycles(std::slice::from_ref(&dl.key))
        .await
    {
        Ok(rows) => rows.into_iter().flatten().next().and_then(|r| {
            r.facts
                .get("reference")
                .and_then(Value::as_str)
                .map(str::to_string)
        }),
        Err(StoreError::Unsupported(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(r) = reference {
        set_reference(payload, Some(&r));
    }
    Ok(())
}

/// The flow an outbound dead letter belongs to: the one it names, else (older dead letters
/// opened while planning did not record it) the flow that takes its kind from the journal
/// entry's endpoint to the dead letter's.
fn flow_of<'a>(inner: &'a Inner, dl: &DeadLetter, source: Option<&str>) -> Option<&'a FlowConfig> {
    match (&dl.flow, source) {
        (Some(name), _) => inner.config.flows.iter().find(|f| &f.name == name),
        (None, Some(src)) if dl.op.is_none() => inner
            .config
            .flows_for(dl.kind, src)
            .find(|f| f.destinations_for(src).any(|d| d == dl.endpoint)),
        _ => None,
    }
}

/// Replay open dead letters (see [`super::Engine::replay_dead_letters`]).
pub(crate) async fn replay(
    inner: &Arc<Inner>,
    ids: Vec<DeadLetterId>,
) -> Result<Vec<DeadLetterId>, EngineError> {
    let now = inner.now();
    let mut replays = Vec::new();
    let mut dests = BTreeSet::new();
    for id in ids {
        let Some(dl) = inner.store.dead_letter(id).await? else {
            continue;
        };
        if dl.state != DeadLetterState::Open {
            continue;
        }
        match dl.direction {
            Direction::Outbound => {
                // Opened while planning (no op: never an outbox item): the payload is the
                // canonical record, not the destination's shape.
                let planning = dl.op.is_none();
                let source = match dl.journal_id {
                    Some(j) => inner.store.journal_entry(j).await?.map(|e| e.endpoint),
                    None => None,
                };
                let flow = flow_of(inner, &dl, source.as_deref());
                // State kinds are re-planned from the current state: an old payload must never
                // overwrite a newer one. Without an entity (e.g. a pool channel's
                // available-to-sell, which is computed, not stored) the stored payload is
                // resent; the next ledger change re-plans it anyway.
                let current = if dl.kind.is_state() {
                    inner.store.entity(dl.kind, &dl.key).await?
                } else {
                    None
                };
                let canonical = match &current {
                    Some(entity) => Some(&entity.state),
                    None if planning => Some(&dl.payload),
                    None => None,
                };
                let (mut op, mut payload) = match canonical {
                    // Re-planned through the flow's filter and mapping, never around them.
                    Some(state) => {
                        let Some(flow) = flow else {
                            tracing::warn!(id, flow = ?dl.flow, "replay: the dead letter's flow is not configured; dead letter kept open");
                            continue;
                        };
                        let vars = MapVars {
                            dest: dl.endpoint.clone(),
                            source: source.clone().unwrap_or_default(),
                            kind: dl.kind.as_str().to_string(),
                        };
                        let filtered = filter_then_map(
                            flow.filter.as_ref(),
                            flow.map_out_for(&dl.endpoint),
                            state,
                            &vars,
                        );
                        let payload = match filtered.await {
                            Ok(Filtered::Kept(payload)) => payload,
                            Ok(Filtered::Dropped) => {
                                tracing::warn!(id, flow = %flow.name, "replay: the flow's filter no longer sends this record; dead letter kept open");
                                continue;
                            }
                            Err((stage, err)) => {
                                tracing::warn!(id, ?stage, error = %err, "replay: the flow's filter or mapping still fails; dead letter kept open");
                                continue;
                            }
                        };
                        let sent_before = current.is_some()
                            || inner
                                .store
                                .hashes(&dl.endpoint, dl.kind, &dl.key)
                                .await?
                                .0
                                .is_some();
                        (operation(flow, dl.kind, state, sent_before), payload)
                    }
                    None => (
                        dl.op.clone().unwrap_or_else(|| "upsert".into()),
                        dl.payload.clone(),
                    ),
                };
                if let (Kind::Order, Some(state)) = (dl.kind, canonical) {
                    order_replay(inner, &dl, state, &mut op, &mut payload).await?;
                }
                let item = NewItem {
                    dest: dl.endpoint.clone(),
                    kind: dl.kind,
                    key: dl.key.clone(),
                    op,
                    hash: content_hash(&payload),
                    payload,
                    flow: dl.flow.clone().unwrap_or_default(),
                    journal_id: dl.journal_id,
                    captured_at: now,
                    waiting_on: Vec::new(),
                    coalesce: dl.kind.is_state(),
                    not_before: now,
                };
                dests.insert(dl.endpoint.clone());
                replays.push((id, Replay::Outbound(item)));
            }
            Direction::Inbound => {
                let (external_id, version) = match dl.journal_id {
                    Some(j) => match inner.store.journal_entry(j).await? {
                        Some(entry) => (entry.external_id, entry.version),
                        None => (dl.key.clone(), content_hash(&dl.payload)),
                    },
                    None => (dl.key.clone(), content_hash(&dl.payload)),
                };
                let captured = crate::connector::Captured {
                    kind: dl.kind,
                    external_id,
                    version: Some(version),
                    record: dl.payload.clone(),
                };
                match super::capture::to_capture(inner, &dl.endpoint, captured, now).await {
                    Ok(capture) => replays.push((id, Replay::Inbound(capture))),
                    Err(reason) => {
                        tracing::warn!(id, %reason, "replay: record is still invalid; dead letter kept open");
                    }
                }
            }
        }
    }
    let done = inner.store.replay_dead_letters(replays, now).await?;
    inner
        .store
        .record_audit(
            done.iter()
                .map(|id| AuditEvent {
                    at: now,
                    event: "dlq.replay".into(),
                    endpoint: None,
                    kind: None,
                    key: None,
                    detail: json!({"dead_letter": id}),
                })
                .collect(),
        )
        .await?;
    inner.journal_notify.notify_one();
    inner.wake(dests);
    Ok(done)
}
