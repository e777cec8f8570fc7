//! The conformance suite: what every [`Store`] implementation must do, written only against
//! `&dyn Store` so that SQLite today and PostgreSQL later run the very same checks.
//!
//! Each `pub async fn` is one behaviour of the contract in `lib.rs`; it panics with a message
//! saying which promise broke. [`store_conformance_tests!`](crate::store_conformance_tests)
//! expands to one `#[tokio::test]` per check, each on a fresh store from the caller's factory:
//!
//! ```ignore
//! async fn fixture() -> concord_store::conformance::Fixture { /* fresh, empty store */ }
//! concord_store::store_conformance_tests!(fixture);
//! ```
//!
//! The crate using the macro needs `tokio` (with `macros` and `rt-multi-thread`) as a dependency.
//! Checks here must never reach behind the trait (no SQL, no implementation types): anything an
//! implementation must provide beyond the trait goes through [`Fixture`].
//!
//! This file holds only the [`Fixture`], the macro and the builders the areas share; the checks
//! live in one file per area (`journal`, `apply`, `outbox`, `settlement`, `dead_letters`,
//! `observability`, `lookups`, `reservations`, `levels`, `admin`, `retention`) and are
//! re-exported here, so the macro's `$crate::conformance::<check>` paths resolve. A new check goes in its area's file, is
//! re-exported below and is listed in the macro.

mod admin;
mod alerts;
mod apply;
mod dead_letters;
mod journal;
mod levels;
mod lookups;
mod observability;
mod orders;
mod outbox;
mod reservations;
mod retention;
mod settlement;

pub use admin::{
    connector_state_is_kept_per_endpoint, dashboard_sessions_are_kept_until_they_expire_or_end,
    paused_flows_are_skipped_by_claim, ping_answers_on_a_working_store,
    reconcile_runs_are_kept_and_listed, search_journal_filters_and_pages,
};
pub use alerts::{alert_episodes_open_once_and_resolve, oversold_positions_are_listed};
pub use apply::{apply_commits_a_processing_step, apply_never_changes_existing_xrefs};
pub use dead_letters::{
    dead_letter_filters, drop_dead_letters_only_drops_open_ones,
    replay_replays_open_dead_letters_once,
};
pub use journal::{
    concurrent_ingests_all_commit, failed_ingest_moves_no_cursor,
    group_commit_isolates_a_failing_write, ingest_dead_letters_rejected_captures,
    ingest_dedupes_a_repeated_version, ingest_moves_the_cursor_with_the_captures,
    ingest_stores_a_b_a_as_three_changes, journal_lookups_and_filters,
    pending_journal_is_oldest_first_and_limited,
};
pub use levels::{
    accepted_order_is_released_once_by_a_newer_figure,
    cancel_and_replace_holds_the_order_until_the_replacement_is_in_the_figures,
    delivered_order_marks_acceptance_for_its_source_only, dirty_marks_and_generation_guarded_clean,
    figure_ahead_of_the_acceptance_releases_at_the_acceptance,
    release_falls_back_to_time_when_versions_are_not_comparable, stale_figures_are_ignored,
};
pub use lookups::{batched_lookups_match_single_ones, entities_of_kind_pages_by_key};
pub use observability::{
    audit_log_is_newest_first, claim_ignores_finished_history, items_are_listed_oldest_first,
    stats_counters_equal_fresh_counts, stats_counters_survive_random_operations,
    stats_reflect_the_store,
};
pub use orders::{
    a_refused_amend_follows_the_edit_policy_in_its_settlement,
    order_lifecycle_rows_are_listed_and_counted, order_reservations_follow_cancellations_and_edits,
    parked_items_say_what_they_wait_on, settle_logs_attempts_and_accepts_orders,
};
pub use outbox::{
    at_most_one_item_in_flight_per_key, command_items_keep_order_and_never_overtake,
    inflight_items_are_never_coalesced, items_wait_until_due,
    parked_item_blocks_its_key_until_apply_adds_the_xref,
    parked_item_is_released_by_a_delivered_xref, pending_state_items_coalesce,
    satisfied_dependencies_are_not_waited_for,
};
pub use reservations::{
    backorders_are_limited_and_never_exceed_incoming, concurrent_reservations_never_oversell,
    expiry_returns_each_reservation_once, reservation_transitions_and_wrong_states,
    reserve_is_all_or_nothing_and_names_the_shortage, reserve_is_idempotent_on_the_client_key,
    reserve_respects_buffers, reserve_routes_one_location_first_else_splits,
};
pub use retention::{
    audit_rows_are_bounded, prune_history_keeps_the_journal_that_is_referred_to,
    prune_history_prunes_old_audit_events, prune_history_prunes_old_reconcile_runs,
};
pub use settlement::{
    dead_item_opens_a_dead_letter_and_resets_the_plan,
    delivered_item_records_written_hash_and_xref, expired_leases_are_recovered,
    retry_counts_only_counted_attempts, skipped_item_is_done_with_an_audit_event,
    stale_token_settlements_are_ignored,
};

use crate::{
    Capture, Claimed, Feed, IngestOutcome, ItemState, LevelOutcome, LevelUpdate, NewItem,
    ProcessBatch, Reservation, ReservationState, ReserveOutcome, ReserveRequest, Settlement,
    StockLevel, Store, Xref,
};
use concord_core::inventory::Line;
use concord_core::{Kind, Millis};
use serde_json::json;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Makes the store fail, at the database level, to journal any capture whose external id is the
/// given one (e.g. a trigger raising an error). Used to prove that a failed write leaves nothing
/// behind — the cursor above all.
pub type FaultInjector =
    Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A fresh, empty store plus what it needs to stay alive for one check.
pub struct Fixture {
    pub store: Arc<dyn Store>,
    /// Whatever backs the store (a temp dir, a throw-away database); dropped after the store.
    pub guard: Box<dyn Any + Send + Sync>,
    /// When `None`, the checks that need a failing write only check what they can without one.
    pub fault_injector: Option<FaultInjector>,
}

impl Fixture {
    pub fn new(store: Arc<dyn Store>, guard: impl Any + Send + Sync) -> Fixture {
        Fixture {
            store,
            guard: Box::new(guard),
            fault_injector: None,
        }
    }

    pub fn with_fault_injector(mut self, injector: FaultInjector) -> Fixture {
        self.fault_injector = Some(injector);
        self
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

/// Expands to one `#[tokio::test]` per conformance check. `$factory` is called as
/// `($factory)().await` and must yield a fresh [`Fixture`]. With `optional $factory` it yields
/// an `Option<Fixture>`: `None` skips the check (for a backend on an external server that is
/// not configured here; the factory must say so loudly, or fail under CI).
#[macro_export]
macro_rules! store_conformance_tests {
    (@all $mode:ident $factory:expr) => {
        $crate::store_conformance_tests!(@$mode $factory;
            ingest_dedupes_a_repeated_version,
            ingest_stores_a_b_a_as_three_changes,
            ingest_dead_letters_rejected_captures,
            ingest_moves_the_cursor_with_the_captures,
            failed_ingest_moves_no_cursor,
            group_commit_isolates_a_failing_write,
            concurrent_ingests_all_commit,
            pending_journal_is_oldest_first_and_limited,
            journal_lookups_and_filters,
            apply_commits_a_processing_step,
            apply_never_changes_existing_xrefs,
            pending_state_items_coalesce,
            inflight_items_are_never_coalesced,
            command_items_keep_order_and_never_overtake,
            at_most_one_item_in_flight_per_key,
            items_wait_until_due,
            parked_item_blocks_its_key_until_apply_adds_the_xref,
            parked_item_is_released_by_a_delivered_xref,
            satisfied_dependencies_are_not_waited_for,
            stale_token_settlements_are_ignored,
            expired_leases_are_recovered,
            retry_counts_only_counted_attempts,
            dead_item_opens_a_dead_letter_and_resets_the_plan,
            skipped_item_is_done_with_an_audit_event,
            delivered_item_records_written_hash_and_xref,
            replay_replays_open_dead_letters_once,
            drop_dead_letters_only_drops_open_ones,
            dead_letter_filters,
            stats_reflect_the_store,
            stats_counters_equal_fresh_counts,
            stats_counters_survive_random_operations,
            audit_log_is_newest_first,
            items_are_listed_oldest_first,
            claim_ignores_finished_history,
            reserve_is_all_or_nothing_and_names_the_shortage,
            reserve_is_idempotent_on_the_client_key,
            reserve_routes_one_location_first_else_splits,
            reserve_respects_buffers,
            backorders_are_limited_and_never_exceed_incoming,
            stale_figures_are_ignored,
            accepted_order_is_released_once_by_a_newer_figure,
            figure_ahead_of_the_acceptance_releases_at_the_acceptance,
            cancel_and_replace_holds_the_order_until_the_replacement_is_in_the_figures,
            release_falls_back_to_time_when_versions_are_not_comparable,
            reservation_transitions_and_wrong_states,
            expiry_returns_each_reservation_once,
            dirty_marks_and_generation_guarded_clean,
            delivered_order_marks_acceptance_for_its_source_only,
            concurrent_reservations_never_oversell,
            batched_lookups_match_single_ones,
            entities_of_kind_pages_by_key,
            order_lifecycle_rows_are_listed_and_counted,
            settle_logs_attempts_and_accepts_orders,
            a_refused_amend_follows_the_edit_policy_in_its_settlement,
            parked_items_say_what_they_wait_on,
            order_reservations_follow_cancellations_and_edits,
            alert_episodes_open_once_and_resolve,
            oversold_positions_are_listed,
            search_journal_filters_and_pages,
            paused_flows_are_skipped_by_claim,
            prune_history_keeps_the_journal_that_is_referred_to,
            prune_history_prunes_old_audit_events,
            prune_history_prunes_old_reconcile_runs,
            audit_rows_are_bounded,
            connector_state_is_kept_per_endpoint,
            dashboard_sessions_are_kept_until_they_expire_or_end,
            ping_answers_on_a_working_store,
            reconcile_runs_are_kept_and_listed,
        );
    };
    (@checks $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture: $crate::conformance::Fixture = ($factory)().await;
                $crate::conformance::$check(&fixture).await;
            }
        )+
    };
    (@optional_checks $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture: ::std::option::Option<$crate::conformance::Fixture> =
                    ($factory)().await;
                if let ::std::option::Option::Some(fixture) = fixture {
                    $crate::conformance::$check(&fixture).await;
                }
            }
        )+
    };
    // A factory answering `Option<Fixture>`: `None` (the backend is not reachable here, and the
    // factory said so loudly) skips the check.
    (optional $factory:expr) => {
        $crate::store_conformance_tests!(@all optional_checks $factory);
    };
    ($factory:expr) => {
        $crate::store_conformance_tests!(@all checks $factory);
    };
}

// ---- builders ----

const SHOP: &str = "shop";

const ERP: &str = "erp";

fn capture(endpoint: &str, kind: Kind, external_id: &str, version: &str) -> Capture {
    Capture {
        endpoint: endpoint.into(),
        kind,
        external_id: external_id.into(),
        version: version.into(),
        payload: json!({ "id": external_id, "v": version, "nested": { "list": [1, 2.5, null] } }),
        received_at: 1_000,
        rejected: None,
    }
}

/// An item due at once; state kinds coalesce, command kinds do not.
fn item(dest: &str, kind: Kind, key: &str, hash: &str) -> NewItem {
    NewItem {
        dest: dest.into(),
        kind,
        key: key.into(),
        op: if kind.is_state() { "upsert" } else { "create" }.into(),
        payload: json!({ "key": key, "hash": hash }),
        hash: hash.into(),
        flow: format!("{}-to-{dest}", kind.as_str()),
        journal_id: None,
        captured_at: 500,
        waiting_on: Vec::new(),
        coalesce: kind.is_state(),
        not_before: 0,
    }
}

fn xref(endpoint: &str, kind: Kind, external_id: &str, key: &str) -> Xref {
    Xref {
        endpoint: endpoint.into(),
        kind,
        external_id: external_id.into(),
        key: key.into(),
    }
}

async fn enqueue(store: &dyn Store, items: Vec<NewItem>, now: Millis) {
    store
        .apply(
            ProcessBatch {
                items,
                ..ProcessBatch::default()
            },
            now,
        )
        .await
        .expect("apply(items) failed");
}

async fn claim(store: &dyn Store, dest: &str, limit: usize, now: Millis) -> Vec<Claimed> {
    store
        .claim(dest, limit, now, now + 60_000)
        .await
        .expect("claim failed")
}

fn keys(claimed: &[Claimed]) -> Vec<(Kind, String, String)> {
    claimed
        .iter()
        .map(|c| (c.item.kind, c.item.key.clone(), c.item.hash.clone()))
        .collect()
}

fn delivered(c: &Claimed, external_id: Option<&str>, at: Millis) -> Settlement {
    Settlement::Delivered {
        id: c.item.id,
        token: c.token,
        external_id: external_id.map(str::to_owned),
        version: None,
        at,
    }
}

async fn settle(store: &dyn Store, outcomes: Vec<Settlement>) -> usize {
    store.settle(outcomes).await.expect("settle failed")
}

async fn item_by_id(store: &dyn Store, id: i64) -> crate::OutboxItem {
    for state in [
        ItemState::Pending,
        ItemState::Inflight,
        ItemState::Parked,
        ItemState::Done,
        ItemState::Dead,
    ] {
        let items = store
            .items(None, state, 10_000)
            .await
            .expect("items failed");
        if let Some(found) = items.into_iter().find(|i| i.id == id) {
            return found;
        }
    }
    panic!("item {id} not found in any state");
}

async fn count_items(store: &dyn Store, dest: &str, state: ItemState) -> usize {
    store
        .items(Some(dest), state, 100_000)
        .await
        .expect("items failed")
        .len()
}

fn stored(outcome: IngestOutcome) -> i64 {
    match outcome {
        IngestOutcome::Stored(id) => id,
        IngestOutcome::Duplicate => panic!("expected Stored, got Duplicate"),
    }
}

fn waiting(mut it: NewItem, deps: &[(Kind, &str)]) -> NewItem {
    it.waiting_on = deps.iter().map(|(k, key)| (*k, key.to_string())).collect();
    it
}

// ---- capture ----

// ---- processing ----

// ---- outbox ----

// ---- settlement ----

// ---- dead letters ----

// ---- observability ----

// ---- batched lookups ----

// ---- inventory (design §5) ----

const WEB: &str = "web";

const B2B: &str = "b2b";

fn figure(sku: &str, location: &str, on_hand: i64, committed: i64, version: &str) -> LevelUpdate {
    LevelUpdate {
        sku: sku.into(),
        location: location.into(),
        on_hand,
        committed,
        incoming: json!([]),
        version: version.into(),
        captured_at: 1_000,
    }
}

fn line(sku: &str, quantity: i64) -> Line {
    Line {
        sku: sku.into(),
        quantity,
    }
}

/// A request of `channel` with key `key` (id `r-{key}`), every SKU fed by `feeds` (location,
/// buffer) in that priority order; held until 61 000.
fn request(
    channel: &str,
    key: &str,
    lines: &[(&str, i64)],
    feeds: &[(&str, i64)],
) -> ReserveRequest {
    let feeds: Vec<Feed> = feeds
        .iter()
        .map(|(l, b)| Feed {
            location: (*l).into(),
            buffer: *b,
        })
        .collect();
    ReserveRequest {
        id: format!("r-{key}"),
        channel: channel.into(),
        client_key: key.into(),
        lines: lines.iter().map(|(s, q)| line(s, *q)).collect(),
        feeds: lines
            .iter()
            .map(|(s, _)| ((*s).to_owned(), feeds.clone()))
            .collect(),
        backorder_limit: None,
        source: ERP.into(),
        now: 1_000,
        expires_at: 61_000,
    }
}

async fn set_levels(store: &dyn Store, figures: Vec<LevelUpdate>) -> Vec<LevelOutcome> {
    store
        .update_levels(figures, 60_000, 1_000)
        .await
        .expect("update_levels failed")
}

async fn reserve_ok(store: &dyn Store, req: ReserveRequest) -> Reservation {
    match store.reserve(req).await.expect("reserve failed") {
        ReserveOutcome::Reserved(r) => r,
        other => panic!("expected Reserved, got {other:?}"),
    }
}

/// The position, or an all-zero one when the store has none.
async fn position(store: &dyn Store, sku: &str, location: &str) -> StockLevel {
    store
        .levels(&[sku.to_owned()])
        .await
        .expect("levels failed")
        .into_iter()
        .find(|l| l.location == location)
        .unwrap_or(StockLevel {
            sku: sku.into(),
            location: location.into(),
            on_hand: 0,
            committed: 0,
            held: 0,
            backordered: 0,
            incoming: json!([]),
            version: None,
            updated_at: 0,
        })
}

fn allocations(r: &Reservation) -> Vec<(String, String, i64, bool)> {
    r.lines
        .iter()
        .map(|l| (l.sku.clone(), l.location.clone(), l.quantity, l.backorder))
        .collect()
}

/// `held` (and `backordered`) of every position equals the sum of the unreleased lines there.
async fn check_ledger(store: &dyn Store) {
    let all = store
        .reservations(None, None, 100_000)
        .await
        .expect("reservations failed");
    let mut expected: std::collections::BTreeMap<(String, String), (i64, i64)> = Default::default();
    let mut skus = std::collections::BTreeSet::new();
    for r in &all {
        for l in &r.lines {
            skus.insert(l.sku.clone());
            let e = expected
                .entry((l.sku.clone(), l.location.clone()))
                .or_default();
            if l.released_at.is_none() {
                assert!(
                    r.state.is_active(),
                    "reservation {} is {:?} with an unreleased line",
                    r.id,
                    r.state
                );
                if l.backorder {
                    e.1 += l.quantity;
                } else {
                    e.0 += l.quantity;
                }
            }
        }
        if r.state == ReservationState::Released {
            assert!(r.lines.iter().all(|l| l.released_at.is_some()));
        }
    }
    let skus: Vec<String> = skus.into_iter().collect();
    for level in store.levels(&skus).await.expect("levels failed") {
        let (held, backordered) = expected
            .get(&(level.sku.clone(), level.location.clone()))
            .copied()
            .unwrap_or_default();
        assert_eq!(
            (level.held, level.backordered),
            (held, backordered),
            "held/backordered of ({}, {}) = the sum of its unreleased lines",
            level.sku,
            level.location
        );
    }
}

/// Deliver an order item for `order` to `dest` with the destination's `version`.
async fn deliver_order(
    store: &dyn Store,
    dest: &str,
    order: &str,
    version: Option<&str>,
    at: Millis,
) {
    enqueue(store, vec![item(dest, Kind::Order, order, "h")], at).await;
    let claimed = claim(store, dest, 100, at).await;
    let mine: Vec<Settlement> = claimed
        .iter()
        .filter(|c| c.item.key == order)
        .map(|c| Settlement::Delivered {
            id: c.item.id,
            token: c.token,
            external_id: None,
            version: version.map(str::to_owned),
            at,
        })
        .collect();
    assert_eq!(mine.len(), 1, "the order item was claimed");
    settle(store, mine).await;
}
