//! The order lifecycle on PostgreSQL: lifecycle rows, their events and children, the
//! delivery-attempt log, an order's acceptance, and the operator's views of them (orders by
//! state, one order's history, parked items) — mirrors `sqlite/orders.rs`.
//!
//! Owned by the ledger module (see the contract in `postgres/mod.rs`). Write functions run
//! inside the caller's transaction (`apply`, `settle`, a refused amend) and never open or end
//! one; a write that merges with the stored row locks it first (`FOR UPDATE`, or an insert that
//! waits for a concurrent one), so two instances never lose each other's acceptance or
//! replacement. Decisions are `crate::sync::lifecycle`'s. Read functions run in one read-only
//! snapshot. Must never derive or check a status here.

use super::codec::{self, db, get, to_json};
use crate::sync::lifecycle;
use crate::{
    DeadLetter, DeliveryAttempt, JournalEntry, NewOrderEvent, OrderEvent, OrderFilter,
    OrderHistory, OrderSummary, OrderWrite, ParkedItem, Result,
};
use concord_core::lifecycle::OrderFacts;
use concord_core::{Kind, Millis};
use std::collections::BTreeMap;
use tokio_postgres::{GenericClient, Row, Transaction};

// ---- writes ----

async fn insert_event(tx: &Transaction<'_>, key: &str, e: &NewOrderEvent) -> Result<()> {
    tx.execute(
        "INSERT INTO order_events (key, at, from_state, to_state, applied, event, cause_kind,
             cause_key, reason, journal_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &key,
            &e.at,
            &e.from,
            &e.to,
            &i64::from(e.applied),
            &e.event,
            &e.cause_kind.map(Kind::as_str),
            &e.cause_key,
            &e.reason,
            &e.journal_id,
        ],
    )
    .await
    .map_err(db("insert order event"))?;
    Ok(())
}

/// Record one lifecycle event of `key` (settlements that change an order's course).
pub(crate) async fn record_event(tx: &Transaction<'_>, key: &str, e: &NewOrderEvent) -> Result<()> {
    insert_event(tx, key, e).await
}

/// An order's lifecycle state and facts, its row locked until the caller's transaction ends
/// (a refused amend reads them to give out the next replacement number).
pub(crate) async fn lifecycle_facts(
    tx: &Transaction<'_>,
    key: &str,
) -> Result<Option<(String, OrderFacts)>> {
    let row = tx
        .query_opt(
            "SELECT state, facts FROM order_lifecycle WHERE key = $1 FOR UPDATE",
            &[&key],
        )
        .await
        .map_err(db("read order lifecycle"))?;
    let Some(row) = row else { return Ok(None) };
    let state: String = get(&row, 0)?;
    let facts = serde_json::from_value(codec::json(get(&row, 1)?)?).unwrap_or_else(|e| {
        tracing::error!(order = key, error = %e, "stored order facts could not be decoded; read as none");
        OrderFacts::default()
    });
    Ok(Some((state, facts)))
}

/// Set an order's ERP `reference` and `replacements` count in its lifecycle facts, leaving the
/// rest of the stored facts (and the state) as they are.
pub(crate) async fn set_replacement(
    tx: &Transaction<'_>,
    key: &str,
    reference: &str,
    replacements: u32,
    at: Millis,
) -> Result<()> {
    let stored = tx
        .query_opt(
            "SELECT facts FROM order_lifecycle WHERE key = $1 FOR UPDATE",
            &[&key],
        )
        .await
        .map_err(db("read order facts"))?;
    let Some(stored) = stored else { return Ok(()) };
    let facts =
        lifecycle::with_replacement(codec::json(get(&stored, 0)?)?, reference, replacements);
    tx.execute(
        "UPDATE order_lifecycle SET facts = $2, updated_at = $3 WHERE key = $1",
        &[&key, &to_json(&facts), &at],
    )
    .await
    .map_err(db("write order facts"))?;
    Ok(())
}

/// Apply the lifecycle changes of one processing batch. When the ERP's acceptance landed (in a
/// settlement) after the engine read the row, the write keeps it: `accepted` stays true in the
/// facts and a derived `placed` becomes `accepted`. Likewise a cancel-and-replace a settlement
/// decided after the read (more `replacements` stored than written) keeps its `reference`.
pub(crate) async fn write_orders(
    tx: &Transaction<'_>,
    writes: &[OrderWrite],
    now: Millis,
) -> Result<()> {
    for w in writes {
        if let (Some(state), Some(facts)) = (&w.state, &w.facts) {
            write_lifecycle(tx, w, state, facts, now).await?;
        }
        if let Some((kind, key)) = &w.child {
            tx.execute(
                "INSERT INTO order_children (order_key, kind, key) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&w.key, &kind.as_str(), key],
            )
            .await
            .map_err(db("remember order child"))?;
        }
        if let Some(e) = &w.event {
            insert_event(tx, &w.key, e).await?;
        }
    }
    Ok(())
}

/// One lifecycle row: a new one is inserted as written (waiting for a concurrent insert of the
/// same key, if any); an existing one is locked, merged with [`lifecycle::keep_settled`] and
/// updated.
async fn write_lifecycle(
    tx: &Transaction<'_>,
    w: &OrderWrite,
    state: &str,
    facts: &serde_json::Value,
    now: Millis,
) -> Result<()> {
    let inserted = tx
        .execute(
            "INSERT INTO order_lifecycle (key, channel, state, facts, accepted_at, updated_at)
             VALUES ($1, $2, $3, $4, NULL, $5) ON CONFLICT (key) DO NOTHING",
            &[&w.key, &w.channel, &state, &to_json(facts), &now],
        )
        .await
        .map_err(db("write order lifecycle"))?;
    if inserted == 1 {
        return Ok(());
    }
    let row = tx
        .query_one(
            "SELECT accepted_at, facts FROM order_lifecycle WHERE key = $1 FOR UPDATE",
            &[&w.key],
        )
        .await
        .map_err(db("read order acceptance"))?;
    let accepted = get::<Option<Millis>>(&row, 0)?.is_some();
    let stored = codec::json(get(&row, 1)?)?;
    let (state, facts) = lifecycle::keep_settled(Some((accepted, &stored)), state, facts);
    tx.execute(
        "UPDATE order_lifecycle SET state = $2, facts = $3, updated_at = $4 WHERE key = $1",
        &[&w.key, &state, &to_json(&facts), &now],
    )
    .await
    .map_err(db("write order lifecycle"))?;
    Ok(())
}

/// An order was delivered (`op` other than `cancel`) to `dest`: when `dest` is not the order's
/// channel, the ERP accepted it. The first acceptance moves `placed → accepted` and is recorded
/// as an event; later ones change nothing.
pub(crate) async fn accept(tx: &Transaction<'_>, key: &str, dest: &str, at: Millis) -> Result<()> {
    let row = tx
        .query_opt(
            "SELECT channel, state, facts, accepted_at FROM order_lifecycle WHERE key = $1
             FOR UPDATE",
            &[&key],
        )
        .await
        .map_err(db("read order lifecycle"))?;
    let Some(row) = row else { return Ok(()) };
    let channel: &str = get(&row, 0)?;
    let state: &str = get(&row, 1)?;
    let accepted_at: Option<Millis> = get(&row, 3)?;
    if !lifecycle::is_acceptance(channel, accepted_at, dest) {
        return Ok(());
    }
    let accepted = lifecycle::accept(state, codec::json(get(&row, 2)?)?, dest, at);
    tx.execute(
        "UPDATE order_lifecycle SET accepted_at = $2, state = $3, facts = $4, updated_at = $2
         WHERE key = $1",
        &[&key, &at, &accepted.state, &to_json(&accepted.facts)],
    )
    .await
    .map_err(db("mark order accepted"))?;
    insert_event(tx, key, &accepted.event).await
}

/// Log one delivery attempt (called by `settle` for every settlement it applies).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn log_attempt(
    tx: &Transaction<'_>,
    item_id: i64,
    dest: &str,
    kind: &str,
    key: &str,
    op: &str,
    at: Millis,
    outcome: &str,
    error: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO delivery_attempts (item_id, dest, kind, key, op, at, outcome, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[&item_id, &dest, &kind, &key, &op, &at, &outcome, &error],
    )
    .await
    .map_err(db("log delivery attempt"))?;
    Ok(())
}

// ---- reads ----

const ORDER_COLS: &str = "key, channel, state, facts, accepted_at, updated_at";

fn order_from(r: &Row) -> Result<OrderSummary> {
    Ok(OrderSummary {
        key: get(r, 0)?,
        channel: get(r, 1)?,
        state: get(r, 2)?,
        facts: codec::json(get(r, 3)?)?,
        accepted_at: get(r, 4)?,
        updated_at: get(r, 5)?,
    })
}

async fn one_order<C: GenericClient + Sync>(c: &C, key: &str) -> Result<Option<OrderSummary>> {
    c.query_opt(
        &format!("SELECT {ORDER_COLS} FROM order_lifecycle WHERE key = $1"),
        &[&key],
    )
    .await
    .map_err(db("read order lifecycle"))?
    .map(|r| order_from(&r))
    .transpose()
}

/// The lifecycle rows of these keys (one result per key, in order).
pub(crate) async fn order_lifecycles<C: GenericClient + Sync>(
    c: &C,
    keys: &[String],
) -> Result<Vec<Option<OrderSummary>>> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        out.push(one_order(c, k).await?);
    }
    Ok(out)
}

/// Orders in key order (byte order, as SQLite's), filtered by state / channel, after a key.
pub(crate) async fn orders<C: GenericClient + Sync>(
    c: &C,
    filter: &OrderFilter,
) -> Result<Vec<OrderSummary>> {
    let limit = if filter.limit == 0 { 100 } else { filter.limit };
    let rows = c
        .query(
            &format!(
                "SELECT {ORDER_COLS} FROM order_lifecycle
                 WHERE ($1::text IS NULL OR state = $1)
                   AND ($2::text IS NULL OR channel = $2)
                   AND ($3::text IS NULL OR key COLLATE \"C\" > $3)
                 ORDER BY key COLLATE \"C\" LIMIT $4"
            ),
            &[
                &filter.state,
                &filter.channel,
                &filter.after,
                &codec::limit(limit),
            ],
        )
        .await
        .map_err(db("list orders"))?;
    rows.iter().map(order_from).collect()
}

pub(crate) async fn order_counts<C: GenericClient + Sync>(c: &C) -> Result<BTreeMap<String, u64>> {
    let rows = c
        .query(
            "SELECT state, COUNT(*) FROM order_lifecycle GROUP BY state",
            &[],
        )
        .await
        .map_err(db("count orders by state"))?;
    rows.iter()
        .map(|r| Ok((get(r, 0)?, codec::count(get(r, 1)?)?)))
        .collect()
}

async fn events<C: GenericClient + Sync>(c: &C, key: &str) -> Result<Vec<OrderEvent>> {
    let rows = c
        .query(
            "SELECT id, at, from_state, to_state, applied, event, cause_kind, cause_key, reason,
                    journal_id
             FROM order_events WHERE key = $1 ORDER BY id",
            &[&key],
        )
        .await
        .map_err(db("read order events"))?;
    rows.iter()
        .map(|r| {
            let cause_kind: Option<&str> = get(r, 6)?;
            Ok(OrderEvent {
                id: get(r, 0)?,
                key: key.to_owned(),
                event: NewOrderEvent {
                    at: get(r, 1)?,
                    from: get(r, 2)?,
                    to: get(r, 3)?,
                    applied: get::<i64>(r, 4)? != 0,
                    event: get(r, 5)?,
                    cause_kind: cause_kind.map(codec::kind).transpose()?,
                    cause_key: get(r, 7)?,
                    reason: get(r, 8)?,
                    journal_id: get(r, 9)?,
                },
            })
        })
        .collect()
}

async fn children<C: GenericClient + Sync>(c: &C, key: &str) -> Result<Vec<(Kind, String)>> {
    let rows = c
        .query(
            "SELECT kind, key FROM order_children WHERE order_key = $1
             ORDER BY kind COLLATE \"C\", key COLLATE \"C\"",
            &[&key],
        )
        .await
        .map_err(db("read order children"))?;
    rows.iter()
        .map(|r| Ok((codec::kind(get(r, 0)?)?, get(r, 1)?)))
        .collect()
}

async fn journal_of<C: GenericClient + Sync>(
    c: &C,
    kind: Kind,
    key: &str,
) -> Result<Vec<JournalEntry>> {
    let rows = c
        .query(
            &format!(
                "SELECT {} FROM journal WHERE kind = $1 AND key = $2 ORDER BY id",
                codec::JOURNAL_COLS
            ),
            &[&kind.as_str(), &key],
        )
        .await
        .map_err(db("read journal of a record"))?;
    rows.iter().map(codec::journal_entry).collect()
}

async fn attempts_of<C: GenericClient + Sync>(
    c: &C,
    kind: Kind,
    key: &str,
) -> Result<Vec<DeliveryAttempt>> {
    let rows = c
        .query(
            "SELECT id, item_id, dest, key, op, at, outcome, error FROM delivery_attempts
             WHERE kind = $1 AND key = $2 ORDER BY id",
            &[&kind.as_str(), &key],
        )
        .await
        .map_err(db("read delivery attempts"))?;
    rows.iter()
        .map(|r| {
            Ok(DeliveryAttempt {
                id: get(r, 0)?,
                item_id: get(r, 1)?,
                dest: get(r, 2)?,
                kind,
                key: get(r, 3)?,
                op: get(r, 4)?,
                at: get(r, 5)?,
                outcome: get(r, 6)?,
                error: get(r, 7)?,
            })
        })
        .collect()
}

async fn dead_letters_of<C: GenericClient + Sync>(
    c: &C,
    kind: Kind,
    key: &str,
) -> Result<Vec<DeadLetter>> {
    let rows = c
        .query(
            &format!(
                "SELECT {} FROM dead_letters WHERE kind = $1 AND key = $2 ORDER BY id",
                codec::DL_COLS
            ),
            &[&kind.as_str(), &key],
        )
        .await
        .map_err(db("read dead letters of a record"))?;
    rows.iter().map(codec::dead_letter).collect()
}

/// One order's lifecycle row, events, and the journal entries, delivery attempts and dead
/// letters of the order and its children (call inside one snapshot).
pub(crate) async fn order_history<C: GenericClient + Sync>(
    c: &C,
    key: &str,
) -> Result<Option<OrderHistory>> {
    let Some(order) = one_order(c, key).await? else {
        return Ok(None);
    };
    let children = children(c, key).await?;
    let records: Vec<(Kind, &str)> = std::iter::once((Kind::Order, key))
        .chain(children.iter().map(|(k, ch)| (*k, ch.as_str())))
        .collect();
    let (mut journal, mut attempts, mut dead_letters) = (Vec::new(), Vec::new(), Vec::new());
    for (kind, k) in &records {
        journal.extend(journal_of(c, *kind, k).await?);
        attempts.extend(attempts_of(c, *kind, k).await?);
        dead_letters.extend(dead_letters_of(c, *kind, k).await?);
    }
    journal.sort_by_key(|e: &JournalEntry| e.id);
    attempts.sort_by_key(|a: &DeliveryAttempt| a.id);
    dead_letters.sort_by_key(|d: &DeadLetter| d.id);
    let events = events(c, key).await?;
    Ok(Some(OrderHistory {
        order,
        events,
        journal,
        attempts,
        dead_letters,
        children,
    }))
}

/// Parked outbox items (oldest first) with what each still waits on (call inside one
/// snapshot).
pub(crate) async fn parked<C: GenericClient + Sync>(
    c: &C,
    limit: usize,
) -> Result<Vec<ParkedItem>> {
    let rows = c
        .query(
            "SELECT id, dest, kind, key, op, created_at FROM outbox
             WHERE state = 'parked' ORDER BY id LIMIT $1",
            &[&codec::limit(limit)],
        )
        .await
        .map_err(db("read parked items"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let item_id: i64 = get(r, 0)?;
        let deps = c
            .query(
                "SELECT kind, key FROM outbox_deps WHERE item_id = $1 ORDER BY seq",
                &[&item_id],
            )
            .await
            .map_err(db("read what a parked item waits on"))?;
        out.push(ParkedItem {
            item_id,
            dest: get(r, 1)?,
            kind: codec::kind(get(r, 2)?)?,
            key: get(r, 3)?,
            op: get(r, 4)?,
            waiting_on: deps
                .iter()
                .map(|d| Ok((codec::kind(get(d, 0)?)?, get(d, 1)?)))
                .collect::<Result<Vec<_>>>()?,
            since: get(r, 5)?,
        });
    }
    Ok(out)
}
