//! Small standalone writes on PostgreSQL: the audit trail, the operator's flow pauses and the
//! state connectors ask the engine to keep.
//!
//! Each runs inside the caller's transaction and must leave the database consistent on its own;
//! none opens, commits or rolls back a transaction itself.

use super::codec::{db, to_json};
use crate::{AuditEvent, Result};
use concord_core::Millis;
use tokio_postgres::Transaction;

pub(crate) async fn record_audit(tx: &Transaction<'_>, events: &[AuditEvent]) -> Result<()> {
    for e in events {
        // Bounded whatever the caller put in it (`AuditEvent::bounded`).
        let e = e.clone().bounded();
        tx.execute(
            "INSERT INTO audit (at, event, endpoint, kind, key, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &e.at,
                &e.event,
                &e.endpoint,
                &e.kind.map(|k| k.as_str()),
                &e.key,
                &to_json(&e.detail),
            ],
        )
        .await
        .map_err(db("insert audit event"))?;
    }
    Ok(())
}

pub(crate) async fn set_flow_paused(
    tx: &Transaction<'_>,
    flow: &str,
    paused: bool,
    now: Millis,
) -> Result<bool> {
    let changed = if paused {
        tx.execute(
            "INSERT INTO paused_flows (flow, paused_at) VALUES ($1, $2)
             ON CONFLICT (flow) DO NOTHING",
            &[&flow, &now],
        )
        .await
    } else {
        tx.execute("DELETE FROM paused_flows WHERE flow = $1", &[&flow])
            .await
    }
    .map_err(db("pause or resume a flow"))?;
    Ok(changed > 0)
}

pub(crate) async fn create_session(
    tx: &Transaction<'_>,
    hash: &str,
    name: &str,
    expires_at: Millis,
    now: Millis,
) -> Result<()> {
    tx.execute("DELETE FROM admin_sessions WHERE expires_at <= $1", &[&now])
        .await
        .map_err(db("delete expired dashboard sessions"))?;
    tx.execute(
        "INSERT INTO admin_sessions (hash, name, created_at, expires_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (hash) DO UPDATE SET name = excluded.name,
             created_at = excluded.created_at, expires_at = excluded.expires_at",
        &[&hash, &name, &now, &expires_at],
    )
    .await
    .map_err(db("keep a dashboard session"))?;
    Ok(())
}

pub(crate) async fn delete_session(tx: &Transaction<'_>, hash: &str) -> Result<()> {
    tx.execute("DELETE FROM admin_sessions WHERE hash = $1", &[&hash])
        .await
        .map_err(db("end a dashboard session"))?;
    Ok(())
}

pub(crate) async fn set_connector_state(
    tx: &Transaction<'_>,
    endpoint: &str,
    value: &str,
    now: Millis,
) -> Result<()> {
    tx.execute(
        "INSERT INTO connector_state (endpoint, value, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (endpoint) DO UPDATE SET value = excluded.value,
             updated_at = excluded.updated_at",
        &[&endpoint, &value, &now],
    )
    .await
    .map_err(db("keep connector state"))?;
    Ok(())
}
