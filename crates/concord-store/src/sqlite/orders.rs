//! The order lifecycle, its event history, the delivery-attempt log and the operator's views of
//! them (orders by state, one order's history, parked items) on SQLite.
//!
//! Write functions run on the writer thread inside the job's savepoint (called from
//! `apply::apply` and `outbox::settle`, so a lifecycle change commits with the entity change
//! or the delivery that caused it); they never open or end transactions. Read functions run on
//! the reader pool, each inside one read transaction (one snapshot).

use super::codec::{self, db, to_json};
use crate::sync::lifecycle;
use crate::{
    DeadLetter, DeliveryAttempt, JournalEntry, NewOrderEvent, OrderEvent, OrderFilter,
    OrderHistory, OrderSummary, OrderWrite, ParkedItem, Result,
};
use concord_core::lifecycle::OrderFacts;
use concord_core::{Kind, Millis};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use std::collections::BTreeMap;

// ---- writes ----

fn insert_event(conn: &Connection, key: &str, e: &NewOrderEvent) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO order_events (key, at, from_state, to_state, applied, event, cause_kind,
             cause_key, reason, journal_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut s| {
        s.execute(params![
            key,
            e.at,
            e.from,
            e.to,
            e.applied,
            e.event,
            e.cause_kind.map(Kind::as_str),
            e.cause_key,
            e.reason,
            e.journal_id
        ])
    })
    .map_err(db("insert order event"))?;
    Ok(())
}

/// Record one lifecycle event of `key` (settlements that change an order's course).
pub(crate) fn record_event(conn: &Connection, key: &str, e: &NewOrderEvent) -> Result<()> {
    insert_event(conn, key, e)
}

/// An order's lifecycle state and facts, read on the writer (inside the current transaction).
pub(crate) fn lifecycle_facts(
    conn: &Connection,
    key: &str,
) -> Result<Option<(String, OrderFacts)>> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT state, facts FROM order_lifecycle WHERE key = ?1")
        .and_then(|mut s| {
            s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db("read order lifecycle"))?;
    row.map(|(state, facts)| {
        let facts = serde_json::from_value(codec::json(&facts)?).unwrap_or_else(|e| {
            tracing::error!(order = key, error = %e, "stored order facts could not be decoded; read as none");
            OrderFacts::default()
        });
        Ok((state, facts))
    })
    .transpose()
}

/// Set an order's ERP `reference` and `replacements` count in its lifecycle facts, leaving the
/// rest of the stored facts (and the state) as they are.
pub(crate) fn set_replacement(
    conn: &Connection,
    key: &str,
    reference: &str,
    replacements: u32,
    at: Millis,
) -> Result<()> {
    let stored: Option<String> = conn
        .prepare_cached("SELECT facts FROM order_lifecycle WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(db("read order facts"))?;
    let Some(stored) = stored else { return Ok(()) };
    let facts = lifecycle::with_replacement(codec::json(&stored)?, reference, replacements);
    conn.prepare_cached("UPDATE order_lifecycle SET facts = ?2, updated_at = ?3 WHERE key = ?1")
        .and_then(|mut s| s.execute(params![key, to_json(&facts), at]))
        .map_err(db("write order facts"))?;
    Ok(())
}

/// Apply the lifecycle changes of one processing batch. When the ERP's acceptance landed (in a
/// settlement) after the engine read the row, the write keeps it: `accepted` stays true in the
/// facts and a derived `placed` becomes `accepted`. Likewise a cancel-and-replace a settlement
/// decided after the read (more `replacements` stored than written) keeps its `reference`.
pub(crate) fn write_orders(conn: &Connection, writes: &[OrderWrite], now: Millis) -> Result<()> {
    for w in writes {
        if let (Some(state), Some(facts)) = (&w.state, &w.facts) {
            let stored: Option<(Option<Millis>, String)> = conn
                .prepare_cached("SELECT accepted_at, facts FROM order_lifecycle WHERE key = ?1")
                .and_then(|mut s| {
                    s.query_row([&w.key], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(db("read order acceptance"))?;
            let stored = match &stored {
                Some((accepted_at, facts)) => Some((accepted_at.is_some(), codec::json(facts)?)),
                None => None,
            };
            let (state, facts) = lifecycle::keep_settled(
                stored.as_ref().map(|(accepted, facts)| (*accepted, facts)),
                state,
                facts,
            );
            conn.prepare_cached(
                "INSERT INTO order_lifecycle (key, channel, state, facts, accepted_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5)
                 ON CONFLICT (key) DO UPDATE SET state = excluded.state, facts = excluded.facts,
                     updated_at = excluded.updated_at",
            )
            .and_then(|mut s| s.execute(params![w.key, w.channel, state, to_json(&facts), now]))
            .map_err(db("write order lifecycle"))?;
        }
        if let Some((kind, key)) = &w.child {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO order_children (order_key, kind, key) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![w.key, kind.as_str(), key]))
            .map_err(db("remember order child"))?;
        }
        if let Some(e) = &w.event {
            insert_event(conn, &w.key, e)?;
        }
    }
    Ok(())
}

/// An order was delivered (`op` other than `cancel`) to `dest`: when `dest` is not the order's
/// channel, the ERP accepted it. The first acceptance moves `placed → accepted` and is recorded
/// as an event; later ones change nothing.
pub(crate) fn accept(conn: &Connection, key: &str, dest: &str, at: Millis) -> Result<()> {
    let row: Option<(String, String, String, Option<Millis>)> = conn
        .prepare_cached(
            "SELECT channel, state, facts, accepted_at FROM order_lifecycle WHERE key = ?1",
        )
        .and_then(|mut s| {
            s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
        })
        .map_err(db("read order lifecycle"))?;
    let Some((channel, state, facts, accepted_at)) = row else {
        return Ok(());
    };
    if !lifecycle::is_acceptance(&channel, accepted_at, dest) {
        return Ok(());
    }
    let accepted = lifecycle::accept(&state, codec::json(&facts)?, dest, at);
    conn.prepare_cached(
        "UPDATE order_lifecycle SET accepted_at = ?2, state = ?3, facts = ?4, updated_at = ?2
         WHERE key = ?1",
    )
    .and_then(|mut s| s.execute(params![key, at, accepted.state, to_json(&accepted.facts)]))
    .map_err(db("mark order accepted"))?;
    insert_event(conn, key, &accepted.event)
}

/// Log one delivery attempt (called by `settle` for every settlement it applies).
#[allow(clippy::too_many_arguments)]
pub(crate) fn log_attempt(
    conn: &Connection,
    item_id: i64,
    dest: &str,
    kind: &str,
    key: &str,
    op: &str,
    at: Millis,
    outcome: &str,
    error: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO delivery_attempts (item_id, dest, kind, key, op, at, outcome, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| s.execute(params![item_id, dest, kind, key, op, at, outcome, error]))
    .map_err(db("log delivery attempt"))?;
    Ok(())
}

// ---- reads ----

const ORDER_COLS: &str = "key, channel, state, facts, accepted_at, updated_at";

type RawOrder = (String, String, String, String, Option<Millis>, Millis);

fn raw_order(r: &Row<'_>) -> rusqlite::Result<RawOrder> {
    r.try_into()
}

fn order_from(raw: RawOrder) -> Result<OrderSummary> {
    let (key, channel, state, facts, accepted_at, updated_at) = raw;
    Ok(OrderSummary {
        key,
        channel,
        state,
        facts: codec::json(&facts)?,
        accepted_at,
        updated_at,
    })
}

fn one_order(conn: &Connection, key: &str) -> Result<Option<OrderSummary>> {
    conn.prepare_cached(&format!(
        "SELECT {ORDER_COLS} FROM order_lifecycle WHERE key = ?1"
    ))
    .and_then(|mut s| s.query_row([key], raw_order).optional())
    .map_err(db("read order lifecycle"))?
    .map(order_from)
    .transpose()
}

/// The lifecycle rows of these keys (one result per key, in order).
pub(crate) fn order_lifecycles(
    conn: &Connection,
    keys: &[String],
) -> Result<Vec<Option<OrderSummary>>> {
    let tx = conn
        .unchecked_transaction()
        .map_err(db("begin orders snapshot"))?;
    let out = keys
        .iter()
        .map(|k| one_order(&tx, k))
        .collect::<Result<Vec<_>>>()?;
    tx.rollback().map_err(db("end orders snapshot"))?;
    Ok(out)
}

pub(crate) fn orders(conn: &Connection, filter: &OrderFilter) -> Result<Vec<OrderSummary>> {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    if let Some(state) = &filter.state {
        args.push(SqlValue::Text(state.clone()));
        clauses.push(format!("state = ?{}", args.len()));
    }
    if let Some(channel) = &filter.channel {
        args.push(SqlValue::Text(channel.clone()));
        clauses.push(format!("channel = ?{}", args.len()));
    }
    if let Some(after) = &filter.after {
        args.push(SqlValue::Text(after.clone()));
        clauses.push(format!("key > ?{}", args.len()));
    }
    let limit = if filter.limit == 0 { 100 } else { filter.limit };
    args.push(SqlValue::Integer(codec::limit(limit)));
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {ORDER_COLS} FROM order_lifecycle {filter_sql} ORDER BY key LIMIT ?{}",
        args.len()
    );
    let raws = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(params_from_iter(args), raw_order)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("list orders"))?;
    raws.into_iter().map(order_from).collect()
}

pub(crate) fn order_counts(conn: &Connection) -> Result<BTreeMap<String, u64>> {
    let rows = conn
        .prepare_cached("SELECT state, COUNT(*) FROM order_lifecycle GROUP BY state")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("count orders by state"))?;
    rows.into_iter()
        .map(|(s, n)| Ok((s, codec::count(n)?)))
        .collect()
}

fn events(conn: &Connection, key: &str) -> Result<Vec<OrderEvent>> {
    type Raw = (
        i64,
        Millis,
        Option<String>,
        String,
        bool,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let raws: Vec<Raw> = conn
        .prepare_cached(
            "SELECT id, at, from_state, to_state, applied, event, cause_kind, cause_key, reason,
                    journal_id
             FROM order_events WHERE key = ?1 ORDER BY id",
        )
        .and_then(|mut s| {
            s.query_map([key], |r| r.try_into())?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read order events"))?;
    raws.into_iter()
        .map(
            |(id, at, from, to, applied, event, ck, cause_key, reason, journal_id)| {
                Ok(OrderEvent {
                    id,
                    key: key.to_string(),
                    event: NewOrderEvent {
                        at,
                        from,
                        to,
                        applied,
                        event,
                        cause_kind: ck.as_deref().map(codec::kind).transpose()?,
                        cause_key,
                        reason,
                        journal_id,
                    },
                })
            },
        )
        .collect()
}

fn children(conn: &Connection, key: &str) -> Result<Vec<(Kind, String)>> {
    let raws = conn
        .prepare_cached(
            "SELECT kind, key FROM order_children WHERE order_key = ?1 ORDER BY kind, key",
        )
        .and_then(|mut s| {
            s.query_map([key], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read order children"))?;
    raws.into_iter()
        .map(|(k, key)| Ok((codec::kind(&k)?, key)))
        .collect()
}

fn journal_of(conn: &Connection, kind: Kind, key: &str) -> Result<Vec<JournalEntry>> {
    let raws = conn
        .prepare_cached(&format!(
            "SELECT {} FROM journal WHERE kind = ?1 AND key = ?2 ORDER BY id",
            codec::JOURNAL_COLS
        ))
        .and_then(|mut s| {
            s.query_map(params![kind.as_str(), key], codec::raw_journal)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read journal of a record"))?;
    raws.into_iter().map(codec::journal_entry).collect()
}

fn attempts_of(conn: &Connection, kind: Kind, key: &str) -> Result<Vec<DeliveryAttempt>> {
    type Raw = (
        i64,
        i64,
        String,
        String,
        String,
        Millis,
        String,
        Option<String>,
    );
    let raws: Vec<Raw> = conn
        .prepare_cached(
            "SELECT id, item_id, dest, key, op, at, outcome, error FROM delivery_attempts
             WHERE kind = ?1 AND key = ?2 ORDER BY id",
        )
        .and_then(|mut s| {
            s.query_map(params![kind.as_str(), key], |r| r.try_into())?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read delivery attempts"))?;
    Ok(raws
        .into_iter()
        .map(
            |(id, item_id, dest, key, op, at, outcome, error)| DeliveryAttempt {
                id,
                item_id,
                dest,
                kind,
                key,
                op,
                at,
                outcome,
                error,
            },
        )
        .collect())
}

fn dead_letters_of(conn: &Connection, kind: Kind, key: &str) -> Result<Vec<DeadLetter>> {
    let raws = conn
        .prepare_cached(&format!(
            "SELECT {} FROM dead_letters WHERE kind = ?1 AND key = ?2 ORDER BY id",
            codec::DL_COLS
        ))
        .and_then(|mut s| {
            s.query_map(params![kind.as_str(), key], codec::raw_dead_letter)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read dead letters of a record"))?;
    raws.into_iter().map(codec::dead_letter).collect()
}

pub(crate) fn order_history(conn: &Connection, key: &str) -> Result<Option<OrderHistory>> {
    let tx = conn
        .unchecked_transaction()
        .map_err(db("begin order history snapshot"))?;
    let Some(order) = one_order(&tx, key)? else {
        tx.rollback().map_err(db("end order history snapshot"))?;
        return Ok(None);
    };
    let children = children(&tx, key)?;
    let records: Vec<(Kind, &str)> = std::iter::once((Kind::Order, key))
        .chain(children.iter().map(|(k, c)| (*k, c.as_str())))
        .collect();
    let (mut journal, mut attempts, mut dead_letters) = (Vec::new(), Vec::new(), Vec::new());
    for (kind, k) in &records {
        journal.extend(journal_of(&tx, *kind, k)?);
        attempts.extend(attempts_of(&tx, *kind, k)?);
        dead_letters.extend(dead_letters_of(&tx, *kind, k)?);
    }
    journal.sort_by_key(|e: &JournalEntry| e.id);
    attempts.sort_by_key(|a: &DeliveryAttempt| a.id);
    dead_letters.sort_by_key(|d: &DeadLetter| d.id);
    let events = events(&tx, key)?;
    tx.rollback().map_err(db("end order history snapshot"))?;
    Ok(Some(OrderHistory {
        order,
        events,
        journal,
        attempts,
        dead_letters,
        children,
    }))
}

pub(crate) fn parked(conn: &Connection, limit: usize) -> Result<Vec<ParkedItem>> {
    type Raw = (i64, String, String, String, String, Millis);
    let tx = conn
        .unchecked_transaction()
        .map_err(db("begin parked snapshot"))?;
    let raws: Vec<Raw> = tx
        .prepare_cached(
            "SELECT id, dest, kind, key, op, created_at FROM outbox INDEXED BY outbox_state
             WHERE state = 'parked' ORDER BY id LIMIT ?1",
        )
        .and_then(|mut s| {
            s.query_map([codec::limit(limit)], |r| r.try_into())?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read parked items"))?;
    let mut out = Vec::with_capacity(raws.len());
    for (item_id, dest, kind, key, op, since) in raws {
        let deps = tx
            .prepare_cached("SELECT kind, key FROM outbox_deps WHERE item_id = ?1 ORDER BY seq")
            .and_then(|mut s| {
                s.query_map([item_id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db("read what a parked item waits on"))?;
        out.push(ParkedItem {
            item_id,
            dest,
            kind: codec::kind(&kind)?,
            key,
            op,
            waiting_on: deps
                .into_iter()
                .map(|(k, key)| Ok((codec::kind(&k)?, key)))
                .collect::<Result<Vec<_>>>()?,
            since,
        });
    }
    tx.rollback().map_err(db("end parked snapshot"))?;
    Ok(out)
}
