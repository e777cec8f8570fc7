//! `Store::update_levels` (and `ProcessBatch::levels`) on PostgreSQL: ERP figures stored, and
//! the accepted lines each one releases — judged and chosen by [`crate::ledger::release`].
//!
//! Locks: every SKU of the batch first (sorted, one statement), then, per figure, the
//! reservations whose lines it may release (`FOR UPDATE OF r`, by id). Must never compare
//! versions or decide a release here; the only figure computed is `free` for the outcome, with
//! `concord_core::inventory::Position::free`, in Rust.

use super::super::codec::{db, get, to_json};
use super::lock::Locked;
use super::write;
use crate::ledger::release::{self, Figure, Releasable};
use crate::ledger::LineRow;
use crate::{LevelOutcome, LevelUpdate, Result};
use concord_core::inventory::Position;
use concord_core::Millis;
use tokio_postgres::Transaction;

/// Accepted, still active, unreleased lines at one position (`$1` SKU, `$2` location), their
/// reservations locked: the candidates for release by a figure there.
const RELEASABLE_LINES: &str =
    "SELECT l.reservation_id, l.seq, l.quantity, l.backorder, r.accepted_at, r.accepted_version
     FROM reservation_lines l JOIN reservations r ON r.id = l.reservation_id
     WHERE l.sku = $1 AND l.location = $2 AND l.released_at IS NULL
       AND r.state IN ('held', 'committed') AND r.accepted_at IS NOT NULL
     ORDER BY r.id, l.seq
     FOR UPDATE OF r";

/// Apply ERP figures in order. `grace: None` disables the time-based release fallback.
pub(crate) async fn update_levels(
    tx: &Transaction<'_>,
    updates: &[LevelUpdate],
    grace: Option<i64>,
    now: Millis,
) -> Result<Vec<LevelOutcome>> {
    let mut locked = Locked::default();
    locked
        .skus(tx, updates.iter().map(|u| u.sku.as_str()))
        .await?;
    let mut out = Vec::with_capacity(updates.len());
    for u in updates {
        out.push(update_level(tx, u, grace, now).await?);
    }
    Ok(out)
}

async fn update_level(
    tx: &Transaction<'_>,
    u: &LevelUpdate,
    grace: Option<i64>,
    now: Millis,
) -> Result<LevelOutcome> {
    let stored = super::load::position_version(tx, &u.sku, &u.location).await?;
    match release::judge(stored.as_deref(), &u.version) {
        Figure::Stale => return Ok(LevelOutcome::Stale),
        Figure::Repeat => {
            return Ok(LevelOutcome::Applied {
                released: Vec::new(),
                free: free_at(tx, &u.sku, &u.location).await?,
            })
        }
        Figure::Apply => {}
    }
    tx.execute(
        "INSERT INTO stock_levels
             (sku, location, on_hand, committed, held, backordered, incoming, version, updated_at)
         VALUES ($1, $2, $3, $4, 0, 0, $5, $6, $7)
         ON CONFLICT (sku, location) DO UPDATE SET on_hand = excluded.on_hand,
             committed = excluded.committed, incoming = excluded.incoming,
             version = excluded.version, updated_at = excluded.updated_at",
        &[
            &u.sku,
            &u.location,
            &u.on_hand,
            &u.committed,
            &to_json(&u.incoming),
            &u.version,
            &now,
        ],
    )
    .await
    .map_err(db("apply ledger figure"))?;
    let rows = tx
        .query(RELEASABLE_LINES, &[&u.sku, &u.location])
        .await
        .map_err(db("read releasable lines"))?;
    let open = rows
        .iter()
        .map(|r| {
            Ok(Releasable {
                line: LineRow {
                    reservation_id: get(r, 0)?,
                    seq: get(r, 1)?,
                    sku: u.sku.clone(),
                    location: u.location.clone(),
                    quantity: get(r, 2)?,
                    backorder: get::<i64>(r, 3)? != 0,
                    released: false,
                },
                accepted_at: get(r, 4)?,
                accepted_version: get(r, 5)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let decided = release::by_figure(u, grace, &open);
    write::write(tx, &decided.steps, now).await?;
    Ok(LevelOutcome::Applied {
        released: decided.released,
        free: free_at(tx, &u.sku, &u.location).await?,
    })
}

/// `free` of a position, computed in Rust (`Position::free`), not in SQL.
async fn free_at(tx: &Transaction<'_>, sku: &str, location: &str) -> Result<i64> {
    let r = tx
        .query_one(
            "SELECT on_hand, committed, held FROM stock_levels WHERE sku = $1 AND location = $2",
            &[&sku, &location],
        )
        .await
        .map_err(db("read free stock"))?;
    Ok(Position {
        on_hand: get(&r, 0)?,
        committed: get(&r, 1)?,
        held: get(&r, 2)?,
    }
    .free())
}
