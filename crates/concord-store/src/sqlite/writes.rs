//! Small standalone writes on SQLite: the audit trail, the operator's flow pauses and the
//! state connectors ask the engine to keep.
//!
//! Each runs on the writer thread inside the job's savepoint and must leave the database
//! consistent on its own; none opens, commits or rolls back a transaction itself. The write
//! path's stages have their own files: `journal` (ingest), `apply`, `enqueue`, `outbox` (claim
//! and settle), `amend`, `dead_letters`, and `ledger/` for the stock ledger.

use super::codec::{db, to_json};
use crate::{AuditEvent, Result};
use concord_core::{Kind, Millis};
use rusqlite::{params, Connection};

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

pub(crate) fn create_session(
    conn: &Connection,
    hash: &str,
    name: &str,
    expires_at: Millis,
    now: Millis,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM admin_sessions WHERE expires_at <= ?1")
        .and_then(|mut s| s.execute(params![now]))
        .map_err(db("delete expired dashboard sessions"))?;
    conn.prepare_cached(
        "INSERT INTO admin_sessions (hash, name, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (hash) DO UPDATE SET name = excluded.name, created_at = excluded.created_at,
             expires_at = excluded.expires_at",
    )
    .and_then(|mut s| s.execute(params![hash, name, now, expires_at]))
    .map_err(db("keep a dashboard session"))?;
    Ok(())
}

pub(crate) fn delete_session(conn: &Connection, hash: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM admin_sessions WHERE hash = ?1")
        .and_then(|mut s| s.execute(params![hash]))
        .map_err(db("end a dashboard session"))?;
    Ok(())
}

pub(crate) fn set_connector_state(
    conn: &Connection,
    endpoint: &str,
    value: &str,
    now: Millis,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO connector_state (endpoint, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (endpoint) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .and_then(|mut s| s.execute(params![endpoint, value, now]))
    .map_err(db("keep connector state"))?;
    Ok(())
}
