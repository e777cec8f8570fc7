//! The write side of the store: every transactional unit the writer thread runs.
//!
//! Each function runs inside the savepoint the writer opened for its job and must leave the
//! database consistent on its own (the savepoint is all-or-nothing). Functions here must never
//! open, commit or roll back transactions themselves, and must only be called on the writer
//! thread (they take the write connection).

use super::codec::{self, db, to_json};
use super::ledger;
use super::orders;
use super::writer::WriterCtx;
use crate::{
    AuditEvent, Capture, Claimed, CursorUpdate, DeadLetterId, EditFallback, IngestOutcome, ItemId,
    ItemState, JournalId, JournalStatus, NewDeadLetter, NewItem, NewOrderEvent, ProcessBatch,
    Replay, Result, Settlement, StoreError, Xref,
};
use concord_core::{content_hash, Kind, Millis};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use std::collections::BTreeMap;

// ---- capture ----

pub(crate) fn ingest(
    conn: &Connection,
    captures: &[Capture],
    cursor: Option<&CursorUpdate>,
) -> Result<Vec<IngestOutcome>> {
    let mut outcomes = Vec::with_capacity(captures.len());
    for capture in captures {
        outcomes.push(match journal_capture(conn, capture, true)? {
            Some(id) => IngestOutcome::Stored(id),
            None => IngestOutcome::Duplicate,
        });
    }
    if let Some(c) = cursor {
        conn.prepare_cached(
            "INSERT INTO cursors (endpoint, stream, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (endpoint, stream) DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut s| s.execute(params![c.endpoint, c.stream, c.value]))
        .map_err(db("store cursor"))?;
    }
    Ok(outcomes)
}

/// Journal one capture. With `dedupe`, a capture whose version equals the last one journaled for
/// its record is not stored (`None`). Rejected captures are journaled `rejected` with an inbound
/// dead letter.
fn journal_capture(conn: &Connection, c: &Capture, dedupe: bool) -> Result<Option<JournalId>> {
    let kind = c.kind.as_str();
    if dedupe {
        let last: Option<String> = conn
            .prepare_cached(
                "SELECT version FROM inbox_last
                 WHERE endpoint = ?1 AND kind = ?2 AND external_id = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![c.endpoint, kind, c.external_id], |r| r.get(0))
                    .optional()
            })
            .map_err(db("read last journaled version"))?;
        if last.as_deref() == Some(c.version.as_str()) {
            return Ok(None);
        }
    }
    let status = if c.rejected.is_some() {
        JournalStatus::Rejected
    } else {
        JournalStatus::Pending
    };
    let payload = to_json(&c.payload);
    conn.prepare_cached(
        "INSERT INTO journal (endpoint, kind, external_id, version, payload, received_at, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            c.endpoint,
            kind,
            c.external_id,
            c.version,
            payload,
            c.received_at,
            codec::journal_status_str(status)
        ])
    })
    .map_err(db("insert journal entry"))?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached(
        "INSERT INTO inbox_last (endpoint, kind, external_id, version) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (endpoint, kind, external_id) DO UPDATE SET version = excluded.version",
    )
    .and_then(|mut s| s.execute(params![c.endpoint, kind, c.external_id, c.version]))
    .map_err(db("update last journaled version"))?;
    if let Some(reason) = &c.rejected {
        insert_dead_letter(
            conn,
            &NewDeadLetter {
                direction: crate::Direction::Inbound,
                endpoint: c.endpoint.clone(),
                kind: c.kind,
                key: c.external_id.clone(),
                payload: c.payload.clone(),
                reason: reason.clone(),
                journal_id: Some(id),
                at: c.received_at,
            },
        )?;
    }
    Ok(Some(id))
}

// ---- processing ----

pub(crate) fn apply(
    conn: &Connection,
    ctx: &mut WriterCtx,
    batch: &ProcessBatch,
    now: Millis,
) -> Result<()> {
    for (id, status, note, key) in &batch.journal {
        // A `None` key keeps the one resolved earlier: processing never forgets a resolution.
        conn.prepare_cached(
            "UPDATE journal SET status = ?2, note = ?3, key = COALESCE(?4, key) WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![id, codec::journal_status_str(*status), note, key]))
        .map_err(db("update journal entry"))?;
    }
    for e in &batch.entities {
        let kind = e.kind.as_str();
        let existing: Option<String> = conn
            .prepare_cached("SELECT versions FROM entities WHERE kind = ?1 AND key = ?2")
            .and_then(|mut s| s.query_row(params![kind, e.key], |r| r.get(0)).optional())
            .map_err(db("read entity versions"))?;
        let mut versions: BTreeMap<String, String> = match existing {
            Some(text) => serde_json::from_str(&text)
                .map_err(|err| codec::decode_err(format_args!("entity versions: {err}")))?,
            None => BTreeMap::new(),
        };
        versions.insert(e.endpoint.clone(), e.version.clone());
        let versions = serde_json::to_string(&versions)
            .map_err(|err| StoreError::Db(format!("encode entity versions: {err}")))?;
        conn.prepare_cached(
            "INSERT INTO entities (kind, key, state, hash, versions, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (kind, key) DO UPDATE SET state = excluded.state, hash = excluded.hash,
                 versions = excluded.versions, updated_at = excluded.updated_at",
        )
        .and_then(|mut s| {
            s.execute(params![
                kind,
                e.key,
                to_json(&e.state),
                e.hash,
                versions,
                e.at
            ])
        })
        .map_err(db("upsert entity"))?;
    }
    // Xrefs before items: an item depending on a key made known in this same batch is not parked.
    for x in &batch.xrefs {
        insert_xref(conn, x, now)?;
    }
    for item in &batch.items {
        enqueue(conn, item, now)?;
    }
    for dl in &batch.dead_letters {
        insert_dead_letter(conn, dl)?;
    }
    // Figures before clean marks: a SKU this batch's own figures changed stays dirty.
    ledger::levels::update_levels(conn, ctx, &batch.levels, batch.release_grace_ms, now)?;
    for dirty in &batch.clean {
        ledger::clean(conn, dirty)?;
    }
    // The lifecycle commits with the entity changes that caused it; a cancelled order's
    // reservations are released in the same transaction.
    orders::write_orders(conn, &batch.orders, now)?;
    for order in &batch.cancel_reservations {
        ledger::orders::cancel_order_reservations(conn, ctx, order, now)?;
    }
    record_audit(conn, &batch.audit)
}

/// Insert the xref unless either side is already mapped; when inserted, un-park what waited for
/// the key at that endpoint. Returns whether it was inserted.
fn insert_xref(conn: &Connection, x: &Xref, now: Millis) -> Result<bool> {
    let kind = x.kind.as_str();
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO xref (endpoint, kind, external_id, key) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![x.endpoint, kind, x.external_id, x.key]))
        .map_err(db("insert xref"))?
        > 0;
    if inserted {
        unpark(conn, &x.endpoint, x.kind, &x.key, now)?;
    }
    Ok(inserted)
}

/// (`kind`, `key`) is now known at `dest`: drop that dependency and make items with none left
/// deliverable.
fn unpark(conn: &Connection, dest: &str, kind: Kind, key: &str, now: Millis) -> Result<()> {
    let kind = kind.as_str();
    let waiting: Vec<ItemId> = conn
        .prepare_cached(
            "SELECT DISTINCT item_id FROM outbox_deps WHERE dest = ?1 AND kind = ?2 AND key = ?3",
        )
        .and_then(|mut s| {
            s.query_map(params![dest, kind, key], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("find items waiting on a dependency"))?;
    if waiting.is_empty() {
        return Ok(());
    }
    conn.prepare_cached("DELETE FROM outbox_deps WHERE dest = ?1 AND kind = ?2 AND key = ?3")
        .and_then(|mut s| s.execute(params![dest, kind, key]))
        .map_err(db("remove satisfied dependency"))?;
    for id in waiting {
        // Due now, unless the item was enqueued with a later `not_before`.
        conn.prepare_cached(
            "UPDATE outbox SET state = 'pending', next_at = MAX(next_at, ?2), updated_at = ?2
             WHERE id = ?1 AND state = 'parked'
               AND NOT EXISTS (SELECT 1 FROM outbox_deps WHERE item_id = ?1)",
        )
        .and_then(|mut s| s.execute(params![id, now]))
        .map_err(db("un-park item"))?;
    }
    Ok(())
}

fn xref_known(conn: &Connection, endpoint: &str, kind: Kind, key: &str) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM xref WHERE endpoint = ?1 AND kind = ?2 AND key = ?3")
        .and_then(|mut s| {
            s.query_row(params![endpoint, kind.as_str(), key], |_| Ok(()))
                .optional()
        })
        .map(|found| found.is_some())
        .map_err(db("look up xref"))
}

/// Enqueue one item (parking, coalescing) and set its planned hash. Returns the item's id (the
/// existing one when coalesced).
fn enqueue(conn: &Connection, item: &NewItem, now: Millis) -> Result<ItemId> {
    let kind = item.kind.as_str();
    // Dependencies already known at the destination are not waited for.
    let mut remaining: Vec<(Kind, &str)> = Vec::new();
    for (k, key) in &item.waiting_on {
        if !remaining.contains(&(*k, key.as_str())) && !xref_known(conn, &item.dest, *k, key)? {
            remaining.push((*k, key.as_str()));
        }
    }
    let payload = to_json(&item.payload);

    let mut coalesced = None;
    if item.coalesce && remaining.is_empty() {
        // Only the newest unfinished item of the key may absorb the new state: replacing an older
        // one while a later item of the same key waits would reorder them.
        let newest: Option<(ItemId, String, bool)> = conn
            .prepare_cached(
                "SELECT id, state, coalesce FROM outbox
                 WHERE dest = ?1 AND kind = ?2 AND key = ?3
                   AND state IN ('pending', 'inflight', 'parked')
                 ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![item.dest, kind, item.key], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            })
            .map_err(db("find item to coalesce with"))?;
        if let Some((id, state, true)) = newest {
            if codec::item_state(&state)? == ItemState::Pending {
                conn.prepare_cached(
                    "UPDATE outbox SET op = ?2, payload = ?3, hash = ?4, flow = ?5,
                         journal_id = ?6, captured_at = ?7, attempts = 0,
                         next_at = MIN(next_at, ?8), last_error = NULL, updated_at = ?9
                     WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        item.op,
                        payload,
                        item.hash,
                        item.flow,
                        item.journal_id,
                        item.captured_at,
                        item.not_before,
                        now
                    ])
                })
                .map_err(db("coalesce item"))?;
                coalesced = Some(id);
            }
        }
    }

    let id = match coalesced {
        Some(id) => id,
        None => {
            let state = if remaining.is_empty() {
                ItemState::Pending
            } else {
                ItemState::Parked
            };
            conn.prepare_cached(
                "INSERT INTO outbox (dest, kind, key, op, payload, hash, flow, journal_id,
                     captured_at, state, attempts, next_at, created_at, updated_at, coalesce)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?12, ?12, ?13)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    item.dest,
                    kind,
                    item.key,
                    item.op,
                    payload,
                    item.hash,
                    item.flow,
                    item.journal_id,
                    item.captured_at,
                    codec::item_state_str(state),
                    item.not_before,
                    now,
                    item.coalesce
                ])
            })
            .map_err(db("insert outbox item"))?;
            let id = conn.last_insert_rowid();
            for (seq, (k, key)) in remaining.iter().enumerate() {
                conn.prepare_cached(
                    "INSERT INTO outbox_deps (item_id, seq, dest, kind, key)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![id, codec::limit(seq), item.dest, k.as_str(), key])
                })
                .map_err(db("insert item dependency"))?;
            }
            id
        }
    };
    conn.prepare_cached(
        "INSERT INTO hashes (dest, kind, key, planned) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (dest, kind, key) DO UPDATE SET planned = excluded.planned",
    )
    .and_then(|mut s| s.execute(params![item.dest, kind, item.key, item.hash]))
    .map_err(db("set planned hash"))?;
    Ok(id)
}

fn insert_dead_letter(conn: &Connection, dl: &NewDeadLetter) -> Result<DeadLetterId> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (direction, endpoint, kind, key, payload, reason, attempts,
             journal_id, state, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, 'open', ?8, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            codec::direction_str(dl.direction),
            dl.endpoint,
            dl.kind.as_str(),
            dl.key,
            to_json(&dl.payload),
            dl.reason,
            dl.journal_id,
            dl.at
        ])
    })
    .map_err(db("insert dead letter"))?;
    Ok(conn.last_insert_rowid())
}

pub(crate) fn record_audit(conn: &Connection, events: &[AuditEvent]) -> Result<()> {
    for e in events {
        // Bounded whatever the caller put in it (`AuditEvent::bounded`).
        let e = e.clone().bounded();
        conn.prepare_cached(
            "INSERT INTO audit (at, event, endpoint, kind, key, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                e.at,
                e.event,
                e.endpoint,
                e.kind.map(Kind::as_str),
                e.key,
                to_json(&e.detail)
            ])
        })
        .map_err(db("insert audit event"))?;
    }
    Ok(())
}

pub(crate) fn set_flow_paused(
    conn: &Connection,
    flow: &str,
    paused: bool,
    now: Millis,
) -> Result<bool> {
    let changed = if paused {
        conn.prepare_cached("INSERT OR IGNORE INTO paused_flows (flow, paused_at) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![flow, now]))
    } else {
        conn.prepare_cached("DELETE FROM paused_flows WHERE flow = ?1")
            .and_then(|mut s| s.execute(params![flow]))
    }
    .map_err(db("pause or resume a flow"))?;
    Ok(changed > 0)
}

// ---- delivery ----

/// Due pending items of `?1` at `?2` in enqueue order, minus any with an earlier unfinished item
/// of its key (no overtaking) or an in-flight one (one in flight per key); at most `?3`. Since an
/// earlier pending item of the key blocks the later ones, one claim never returns two items of a
/// key.
pub(crate) fn claim_sql() -> String {
    format!(
        "SELECT {cols} FROM outbox o
         WHERE o.dest = ?1 AND o.state = 'pending' AND o.next_at <= ?2
           AND o.flow NOT IN (SELECT flow FROM paused_flows)
           AND NOT EXISTS (
               SELECT 1 FROM outbox p
               WHERE p.dest = o.dest AND p.kind = o.kind AND p.key = o.key
                 AND p.state IN ('pending', 'inflight', 'parked')
                 AND (p.id < o.id OR p.state = 'inflight'))
         ORDER BY o.id LIMIT ?3",
        cols = codec::ITEM_COLS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub(crate) fn claim(
    conn: &Connection,
    ctx: &mut WriterCtx,
    dest: &str,
    limit: usize,
    now: Millis,
    lease_until: Millis,
) -> Result<Vec<Claimed>> {
    let sql = claim_sql();
    let raws = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(params![dest, now, codec::limit(limit)], codec::raw_item)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("select items to claim"))?;
    let mut claimed = Vec::with_capacity(raws.len());
    for raw in raws {
        let mut item = codec::outbox_item(conn, raw)?;
        let token = ctx.next_token();
        conn.prepare_cached(
            "UPDATE outbox SET state = 'inflight', token = ?2, lease_until = ?3, updated_at = ?4
             WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![item.id, token, lease_until, now]))
        .map_err(db("mark item in flight"))?;
        item.state = ItemState::Inflight;
        item.updated_at = now;
        claimed.push(crate::Claimed { item, token });
    }
    Ok(claimed)
}

struct Held {
    dest: String,
    kind: String,
    key: String,
    op: String,
    payload: String,
    hash: String,
    flow: String,
    attempts: i64,
    journal_id: Option<i64>,
    /// When the item was claimed (the attempt's start).
    claimed_at: Millis,
}

pub(crate) fn settle(
    conn: &Connection,
    ctx: &mut WriterCtx,
    outcomes: &[Settlement],
) -> Result<usize> {
    let mut applied = 0;
    for outcome in outcomes {
        let (id, token) = match outcome {
            Settlement::Delivered { id, token, .. }
            | Settlement::Retry { id, token, .. }
            | Settlement::Dead { id, token, .. }
            | Settlement::Skipped { id, token, .. }
            | Settlement::AmendRefused { id, token, .. } => (*id, *token),
        };
        // The token check is the whole point: a worker whose lease expired (and whose item was
        // re-claimed by another) settles nothing.
        let held: Option<Held> = conn
            .prepare_cached(
                "SELECT dest, kind, key, op, payload, hash, flow, attempts, journal_id, updated_at
                 FROM outbox WHERE id = ?1 AND state = 'inflight' AND token = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![id, token], |r| {
                    Ok(Held {
                        dest: r.get(0)?,
                        kind: r.get(1)?,
                        key: r.get(2)?,
                        op: r.get(3)?,
                        payload: r.get(4)?,
                        hash: r.get(5)?,
                        flow: r.get(6)?,
                        attempts: r.get(7)?,
                        journal_id: r.get(8)?,
                        claimed_at: r.get(9)?,
                    })
                })
                .optional()
            })
            .map_err(db("read claimed item"))?;
        let Some(held) = held else { continue };
        // Every applied settlement is one delivery attempt in the log (an order's history).
        let (outcome_name, at, error) = match outcome {
            Settlement::Delivered { at, .. } => ("delivered", *at, None),
            Settlement::Retry { error, .. } => ("retry", held.claimed_at, Some(error.as_str())),
            Settlement::Dead { reason, at, .. } => ("dead", *at, Some(reason.as_str())),
            Settlement::Skipped { reason, at, .. } => ("skipped", *at, Some(reason.as_str())),
            Settlement::AmendRefused { reason, at, .. } => ("refused", *at, Some(reason.as_str())),
        };
        orders::log_attempt(
            conn,
            id,
            &held.dest,
            &held.kind,
            &held.key,
            &held.op,
            at,
            outcome_name,
            error,
        )?;
        match outcome {
            Settlement::Delivered {
                external_id,
                version,
                at,
                ..
            } => {
                finish_item(conn, id, "done", None, *at)?;
                if held.kind == Kind::Order.as_str() && held.op != "cancel" {
                    // The source endpoint now has the order: its reservations are accepted.
                    // (Not by a cancel: the ERP's figures after a cancel do not hold the order,
                    // and during cancel-and-replace the replacement's create sets the watermark.)
                    ledger::accept::mark_accepted(
                        conn,
                        ctx,
                        &held.key,
                        &held.dest,
                        *at,
                        version.as_deref(),
                    )?;
                    orders::accept(conn, &held.key, &held.dest, *at)?;
                }
                conn.prepare_cached(
                    "INSERT INTO hashes (dest, kind, key, planned, written) VALUES (?1, ?2, ?3, ?4, ?4)
                     ON CONFLICT (dest, kind, key) DO UPDATE SET written = excluded.written",
                )
                .and_then(|mut s| s.execute(params![held.dest, held.kind, held.key, held.hash]))
                .map_err(db("record written hash"))?;
                if let Some(external_id) = external_id {
                    if held.kind == Kind::Order.as_str() && held.op == "create" {
                        // A create of an order names the key's record at `dest` from now on:
                        // after cancel-and-replace that is the replacement, not the cancelled
                        // original (a create that found the existing order returns its id).
                        conn.prepare_cached(
                            "DELETE FROM xref WHERE endpoint = ?1 AND kind = ?2 AND key = ?3
                               AND external_id <> ?4",
                        )
                        .and_then(|mut s| {
                            s.execute(params![held.dest, held.kind, held.key, external_id])
                        })
                        .map_err(db("re-point an order's xref"))?;
                    }
                    let xref = Xref {
                        endpoint: held.dest.clone(),
                        kind: codec::kind(&held.kind)?,
                        external_id: external_id.clone(),
                        key: held.key.clone(),
                    };
                    insert_xref(conn, &xref, *at)?;
                }
            }
            Settlement::Retry {
                next_at,
                error,
                count,
                ..
            } => {
                conn.prepare_cached(
                    "UPDATE outbox SET state = 'pending', token = NULL, lease_until = NULL,
                         next_at = ?2, last_error = ?3, attempts = attempts + ?4
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, next_at, error, i64::from(*count)]))
                .map_err(db("schedule retry"))?;
            }
            Settlement::Dead { reason, at, .. } => dead_letter(conn, id, &held, reason, *at)?,
            Settlement::AmendRefused {
                reason,
                fallback,
                at,
                ..
            } => amend_refused(conn, ctx, id, &held, reason, *fallback, *at)?,
            Settlement::Skipped { reason, at, .. } => {
                finish_item(conn, id, "done", None, *at)?;
                record_audit(
                    conn,
                    &[AuditEvent {
                        at: *at,
                        event: "delivery.skipped".into(),
                        endpoint: Some(held.dest.clone()),
                        kind: Some(codec::kind(&held.kind)?),
                        key: Some(held.key.clone()),
                        detail: serde_json::json!({
                            "reason": reason,
                            "item_id": id,
                            "op": held.op,
                            "flow": held.flow,
                        }),
                    }],
                )?;
            }
        }
        applied += 1;
    }
    Ok(applied)
}

/// Move a held item to the dead-letter queue with `reason` (nothing was written).
fn dead_letter(conn: &Connection, id: ItemId, held: &Held, reason: &str, at: Millis) -> Result<()> {
    finish_item(conn, id, "dead", Some(&reason.to_string()), at)?;
    conn.prepare_cached(
        "INSERT INTO dead_letters (direction, endpoint, kind, key, op, flow, payload,
             reason, attempts, journal_id, item_id, state, created_at, updated_at)
         VALUES ('outbound', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'open', ?11, ?11)",
    )
    .and_then(|mut s| {
        s.execute(params![
            held.dest,
            held.kind,
            held.key,
            held.op,
            held.flow,
            held.payload,
            reason,
            held.attempts,
            held.journal_id,
            id,
            at
        ])
    })
    .map_err(db("dead-letter item"))?;
    // Nothing was written: forget the plan so an equal state later is sent again.
    conn.prepare_cached(
        "UPDATE hashes SET planned = written WHERE dest = ?1 AND kind = ?2 AND key = ?3",
    )
    .and_then(|mut s| s.execute(params![held.dest, held.kind, held.key]))
    .map_err(db("reset planned hash"))?;
    Ok(())
}

/// Set (or, with `None`, remove) an order payload's `reference`.
fn set_reference(payload: &mut Value, reference: Option<&str>) {
    if let Some(obj) = payload.as_object_mut() {
        match reference {
            Some(r) => obj.insert("reference".into(), Value::String(r.to_string())),
            None => obj.remove("reference"),
        };
    }
}

/// An order's `amend` that `held.dest` cannot apply: the edit's fallback, planned inside the
/// settlement's transaction (see [`EditFallback`]). The order's lifecycle facts are read and
/// written here, on the writer, so the replacement number is never given out twice.
fn amend_refused(
    conn: &Connection,
    ctx: &mut WriterCtx,
    id: ItemId,
    held: &Held,
    reason: &str,
    fallback: EditFallback,
    at: Millis,
) -> Result<()> {
    let lifecycle = orders::lifecycle_facts(conn, &held.key)?;
    let edit_event = |applied: bool, reason: String| NewOrderEvent {
        at,
        from: lifecycle.as_ref().map(|(s, _)| s.clone()),
        to: lifecycle
            .as_ref()
            .map_or_else(|| "placed".to_string(), |(s, _)| s.clone()),
        applied,
        event: "edit".into(),
        cause_kind: Some(Kind::Order),
        cause_key: Some(held.key.clone()),
        reason: Some(reason),
        journal_id: held.journal_id,
    };
    if fallback == EditFallback::Reject {
        let reason = format!(
            "{reason}; [orders] edits = \"reject\": the edit is not applied at `{}`, which keeps \
             the order as it was",
            held.dest
        );
        dead_letter(conn, id, held, &reason, at)?;
        if lifecycle.is_some() {
            orders::record_event(conn, &held.key, &edit_event(false, reason))?;
        }
        return Ok(());
    }
    let mut facts = lifecycle
        .as_ref()
        .map(|(_, f)| f.clone())
        .unwrap_or_default();
    let payload = codec::json(&held.payload)?;
    // Items of the key planned after the refused one (later edits, a cancellation) still wait:
    // they name the old reference, so they are folded in here.
    let later: Vec<(ItemId, String, String)> = conn
        .prepare_cached(
            "SELECT id, op, payload FROM outbox
             WHERE dest = ?1 AND kind = ?2 AND key = ?3 AND id > ?4
               AND state IN ('pending', 'parked')
             ORDER BY id",
        )
        .and_then(|mut s| {
            s.query_map(params![held.dest, held.kind, held.key, id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read later items of an order"))?;
    // The replacement carries the newest state, unless the newest item cancels the order.
    let (newest_kept, replacement) = match later.last() {
        Some((_, op, _)) if op == "cancel" => (None, None),
        Some((nid, _, p)) => (Some(*nid), Some(codec::json(p)?)),
        None => (None, Some(payload.clone())),
    };
    let superseded = format!(
        "superseded: `{}` could not amend the order; cancel-and-replace carries the newest state",
        held.dest
    );
    for (lid, _, _) in later.iter().filter(|(l, ..)| Some(*l) != newest_kept) {
        finish_item(conn, *lid, "done", Some(&superseded), at)?;
    }
    // The refused item becomes the cancel of the order the destination has now.
    let old_reference = facts.reference.clone();
    let mut cancel = payload;
    set_reference(&mut cancel, old_reference.as_deref());
    if let Some(obj) = cancel.as_object_mut() {
        obj.insert("status".into(), Value::String("cancelled".into()));
    }
    let cancel_hash = content_hash(&cancel);
    conn.prepare_cached(
        "UPDATE outbox SET op = 'cancel', payload = ?2, hash = ?3, state = 'pending',
             token = NULL, lease_until = NULL, next_at = ?4, attempts = 0, last_error = ?5,
             coalesce = 0, updated_at = ?4
         WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, to_json(&cancel), cancel_hash, at, reason]))
    .map_err(db("turn a refused amend into a cancel"))?;
    let old = old_reference.unwrap_or_else(|| held.key.clone());
    let (planned, event_reason) = match replacement {
        None => (
            cancel_hash,
            format!(
                "{reason}; [orders] edits = \"cancel_and_replace\": `{old}` is cancelled and, as \
                 the order is being cancelled, not replaced"
            ),
        ),
        Some(mut body) => {
            facts.replacements = facts.replacements.saturating_add(1);
            let reference = format!("{}~{}", held.key, facts.replacements.saturating_add(1));
            set_reference(&mut body, Some(&reference));
            let hash = content_hash(&body);
            match newest_kept {
                Some(nid) => {
                    conn.prepare_cached(
                        "UPDATE outbox SET op = 'create', payload = ?2, hash = ?3, coalesce = 0,
                             updated_at = ?4
                         WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![nid, to_json(&body), hash, at]))
                    .map_err(db("turn a later edit into the replacement"))?;
                }
                None => {
                    let captured_at: Millis = conn
                        .prepare_cached("SELECT captured_at FROM outbox WHERE id = ?1")
                        .and_then(|mut s| s.query_row([id], |r| r.get(0)))
                        .map_err(db("read item capture time"))?;
                    enqueue(
                        conn,
                        &NewItem {
                            dest: held.dest.clone(),
                            kind: Kind::Order,
                            key: held.key.clone(),
                            op: "create".into(),
                            payload: body,
                            hash: hash.clone(),
                            flow: held.flow.clone(),
                            journal_id: held.journal_id,
                            captured_at,
                            waiting_on: Vec::new(),
                            coalesce: false,
                            not_before: at,
                        },
                        at,
                    )?;
                }
            }
            orders::set_replacement(conn, &held.key, &reference, facts.replacements, at)?;
            // Between the cancel and the replacement's acceptance the order is held here again.
            ledger::orders::rehold_order(conn, ctx, &held.key, at)?;
            (
                hash,
                format!(
                    "{reason}; [orders] edits = \"cancel_and_replace\": `{old}` is cancelled and \
                     replaced by `{reference}`"
                ),
            )
        }
    };
    conn.prepare_cached(
        "INSERT INTO hashes (dest, kind, key, planned) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (dest, kind, key) DO UPDATE SET planned = excluded.planned",
    )
    .and_then(|mut s| s.execute(params![held.dest, held.kind, held.key, planned]))
    .map_err(db("set planned hash"))?;
    if lifecycle.is_some() {
        orders::record_event(conn, &held.key, &edit_event(true, event_reason))?;
    }
    Ok(())
}

fn finish_item(
    conn: &Connection,
    id: ItemId,
    state: &str,
    error: Option<&String>,
    at: Millis,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET state = ?2, token = NULL, lease_until = NULL,
             last_error = COALESCE(?3, last_error), updated_at = ?4
         WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, state, error, at]))
    .map_err(db("finish item"))?;
    Ok(())
}

pub(crate) fn recover_expired(conn: &Connection, before: Millis) -> Result<usize> {
    conn.prepare_cached(
        "UPDATE outbox SET state = 'pending', token = NULL, lease_until = NULL
         WHERE state = 'inflight' AND lease_until < ?1",
    )
    .and_then(|mut s| s.execute([before]))
    .map_err(db("recover expired leases"))
}

// ---- dead letters ----

pub(crate) fn replay_dead_letters(
    conn: &Connection,
    replays: &[(DeadLetterId, Replay)],
    now: Millis,
) -> Result<Vec<DeadLetterId>> {
    let mut replayed = Vec::new();
    for (id, replay) in replays {
        // Claiming the dead letter first makes a repeated id (or a concurrent replay) a no-op.
        let changed = conn
            .prepare_cached(
                "UPDATE dead_letters SET state = 'replayed', updated_at = ?2
                 WHERE id = ?1 AND state = 'open'",
            )
            .and_then(|mut s| s.execute(params![id, now]))
            .map_err(db("mark dead letter replayed"))?;
        if changed == 0 {
            continue;
        }
        match replay {
            Replay::Outbound(item) => {
                enqueue(conn, item, now)?;
            }
            Replay::Inbound(capture) => {
                // The operator asked for it again: the inbox dedupe must not swallow it.
                journal_capture(conn, capture, false)?;
            }
        }
        replayed.push(*id);
    }
    Ok(replayed)
}

pub(crate) fn drop_dead_letters(
    conn: &Connection,
    ids: &[DeadLetterId],
    now: Millis,
) -> Result<Vec<DeadLetterId>> {
    let mut dropped = Vec::new();
    for id in ids {
        let changed = conn
            .prepare_cached(
                "UPDATE dead_letters SET state = 'dropped', updated_at = ?2
                 WHERE id = ?1 AND state = 'open'",
            )
            .and_then(|mut s| s.execute(params![id, now]))
            .map_err(db("drop dead letter"))?;
        if changed > 0 {
            dropped.push(*id);
        }
    }
    Ok(dropped)
}
