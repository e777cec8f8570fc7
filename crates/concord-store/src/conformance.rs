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

use crate::{
    AuditEvent, Capture, Claimed, CursorUpdate, DeadLetterFilter, DeadLetterState, Direction,
    EntityWrite, Feed, IngestOutcome, ItemState, JournalStatus, LevelOutcome, LevelUpdate,
    NewDeadLetter, NewItem, ProcessBatch, Replay, Reservation, ReservationState, ReserveOutcome,
    ReserveRequest, Settlement, StockLevel, Store, TransitionError, Xref,
};
use concord_core::inventory::{Line, Shortage};
use concord_core::{Kind, Millis};
use serde_json::{json, Value};
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
/// `($factory)().await` and must yield a fresh [`Fixture`].
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!(@checks $factory;
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
            release_falls_back_to_time_when_versions_are_not_comparable,
            reservation_transitions_and_wrong_states,
            expiry_returns_each_reservation_once,
            dirty_marks_and_generation_guarded_clean,
            delivered_order_marks_acceptance_for_its_source_only,
            concurrent_reservations_never_oversell,
            batched_lookups_match_single_ones,
            entities_of_kind_pages_by_key,
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

// ---- capture ----

/// A, A: the second is a duplicate, within one call and across calls; the version is compared
/// per (endpoint, kind, external id).
pub async fn ingest_dedupes_a_repeated_version(fx: &Fixture) {
    let s = fx.store();
    let a = capture(SHOP, Kind::Product, "p1", "v1");
    let out = s.ingest(vec![a.clone(), a.clone()], None).await.unwrap();
    assert!(
        matches!(out[0], IngestOutcome::Stored(_)),
        "first capture must be stored: {out:?}"
    );
    assert_eq!(
        out[1],
        IngestOutcome::Duplicate,
        "same version twice in one call is a duplicate"
    );
    let again = s.ingest(vec![a.clone()], None).await.unwrap();
    assert_eq!(
        again,
        vec![IngestOutcome::Duplicate],
        "same version in a later call is a duplicate"
    );

    // Same version, different record / kind / endpoint: not duplicates.
    let others = vec![
        capture(SHOP, Kind::Product, "p2", "v1"),
        capture(SHOP, Kind::Stock, "p1", "v1"),
        capture(ERP, Kind::Product, "p1", "v1"),
    ];
    let out = s.ingest(others, None).await.unwrap();
    assert!(
        out.iter().all(|o| matches!(o, IngestOutcome::Stored(_))),
        "dedupe must be per (endpoint, kind, external id): {out:?}"
    );
    let journal = s.journal(None, None, None, 100).await.unwrap();
    assert_eq!(
        journal.len(),
        4,
        "journal must hold exactly the stored captures"
    );
}

/// A, B, A: three changes (the dedupe compares with the LAST journaled version only).
pub async fn ingest_stores_a_b_a_as_three_changes(fx: &Fixture) {
    let s = fx.store();
    let a = capture(SHOP, Kind::Product, "p1", "A");
    let b = capture(SHOP, Kind::Product, "p1", "B");
    let out = s
        .ingest(vec![a.clone(), b.clone(), a.clone()], None)
        .await
        .unwrap();
    let ids: Vec<i64> = out.into_iter().map(stored).collect();
    assert!(
        ids[0] < ids[1] && ids[1] < ids[2],
        "journal ids must increase: {ids:?}"
    );
    // And across calls.
    assert!(matches!(
        s.ingest(vec![b.clone()], None).await.unwrap()[0],
        IngestOutcome::Stored(_)
    ));
    assert_eq!(
        s.ingest(vec![b], None).await.unwrap()[0],
        IngestOutcome::Duplicate
    );
    let versions: Vec<String> = s
        .journal(Some(SHOP), Some(Kind::Product), None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, ["B", "A", "B", "A"], "journal newest first");
}

/// A rejected capture is journaled `Rejected`, never pending, with an open inbound dead letter.
pub async fn ingest_dead_letters_rejected_captures(fx: &Fixture) {
    let s = fx.store();
    let mut bad = capture(SHOP, Kind::Customer, "c9", "v1");
    bad.rejected = Some("email: missing".into());
    bad.payload = json!({ "raw": "as received" });
    let id = stored(s.ingest(vec![bad.clone()], None).await.unwrap()[0]);
    let entry = s
        .journal_entry(id)
        .await
        .unwrap()
        .expect("rejected capture must be journaled");
    assert_eq!(entry.status, JournalStatus::Rejected);
    assert_eq!(entry.payload, json!({ "raw": "as received" }));
    assert!(
        s.pending_journal(10).await.unwrap().is_empty(),
        "rejected entries are never pending"
    );

    let dls = s.dead_letters(DeadLetterFilter::default()).await.unwrap();
    assert_eq!(dls.len(), 1, "one open dead letter expected: {dls:?}");
    let dl = &dls[0];
    assert_eq!(dl.direction, Direction::Inbound);
    assert_eq!(dl.state, DeadLetterState::Open);
    assert_eq!(
        (dl.endpoint.as_str(), dl.kind, dl.key.as_str()),
        (SHOP, Kind::Customer, "c9")
    );
    assert_eq!(dl.reason, "email: missing");
    assert_eq!(dl.journal_id, Some(id));
    assert_eq!(dl.payload, bad.payload);
    assert_eq!(dl.item_id, None);
    assert_eq!(s.dead_letter(dl.id).await.unwrap().as_ref(), Some(dl));
    // Its version counts as journaled: the same rejected record again is a duplicate.
    assert_eq!(
        s.ingest(vec![bad], None).await.unwrap()[0],
        IngestOutcome::Duplicate
    );
    let stats = s.stats().await.unwrap();
    assert_eq!((stats.journal_rejected, stats.dead_letters_open), (1, 1));
}

/// The cursor moves in the same call as the captures, per (endpoint, stream), also when every
/// capture was a duplicate or there were none.
pub async fn ingest_moves_the_cursor_with_the_captures(fx: &Fixture) {
    let s = fx.store();
    assert_eq!(s.cursor(SHOP, "stock").await.unwrap(), None);
    let cur = |v: &str| CursorUpdate {
        endpoint: SHOP.into(),
        stream: "stock".into(),
        value: v.into(),
    };
    let a = capture(SHOP, Kind::Stock, "s1", "1");
    s.ingest(vec![a.clone()], Some(cur("page-1")))
        .await
        .unwrap();
    assert_eq!(
        s.cursor(SHOP, "stock").await.unwrap().as_deref(),
        Some("page-1")
    );
    s.ingest(vec![a], Some(cur("page-2"))).await.unwrap();
    assert_eq!(
        s.cursor(SHOP, "stock").await.unwrap().as_deref(),
        Some("page-2"),
        "a page of duplicates still moves the cursor"
    );
    s.ingest(vec![], Some(cur("page-3"))).await.unwrap();
    assert_eq!(
        s.cursor(SHOP, "stock").await.unwrap().as_deref(),
        Some("page-3")
    );
    assert_eq!(
        s.cursor(SHOP, "order:snapshot").await.unwrap(),
        None,
        "streams are separate"
    );
    assert_eq!(
        s.cursor(ERP, "stock").await.unwrap(),
        None,
        "endpoints are separate"
    );
}

/// A failed ingest stores nothing: no capture, no dedupe memory, no cursor move.
pub async fn failed_ingest_moves_no_cursor(fx: &Fixture) {
    let s = fx.store();
    let Some(inject) = &fx.fault_injector else {
        eprintln!("failed_ingest_moves_no_cursor: no fault injector, checked nothing");
        return;
    };
    let cur = |v: &str| CursorUpdate {
        endpoint: SHOP.into(),
        stream: "product".into(),
        value: v.into(),
    };
    s.ingest(vec![], Some(cur("before"))).await.unwrap();
    inject("poison".into()).await;
    let good = capture(SHOP, Kind::Product, "p1", "v1");
    let bad = capture(SHOP, Kind::Product, "poison", "v1");
    let result = s.ingest(vec![good.clone(), bad], Some(cur("after"))).await;
    assert!(
        result.is_err(),
        "the injected fault must fail the ingest: {result:?}"
    );
    assert_eq!(
        s.cursor(SHOP, "product").await.unwrap().as_deref(),
        Some("before"),
        "a failed ingest must not move the cursor"
    );
    assert!(
        s.journal(None, None, None, 10).await.unwrap().is_empty(),
        "nothing journaled"
    );
    // The good capture was not remembered as journaled either.
    assert!(matches!(
        s.ingest(vec![good], None).await.unwrap()[0],
        IngestOutcome::Stored(_)
    ));
}

/// Writes committed together stay independent: one failing call fails alone.
pub async fn group_commit_isolates_a_failing_write(fx: &Fixture) {
    let Some(inject) = &fx.fault_injector else {
        eprintln!("group_commit_isolates_a_failing_write: no fault injector, checked nothing");
        return;
    };
    inject("poison".into()).await;
    let mut tasks = Vec::new();
    for n in 0..40 {
        let store = Arc::clone(&fx.store);
        tasks.push(tokio::spawn(async move {
            let id = if n == 20 {
                "poison".to_string()
            } else {
                format!("p{n}")
            };
            let cursor = CursorUpdate {
                endpoint: SHOP.into(),
                stream: format!("s{n}"),
                value: "done".into(),
            };
            store
                .ingest(vec![capture(SHOP, Kind::Product, &id, "v1")], Some(cursor))
                .await
        }));
    }
    for (n, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        assert_eq!(
            result.is_err(),
            n == 20,
            "call {n}: only the poisoned call fails: {result:?}"
        );
    }
    let journal = fx.store().journal(None, None, None, 100).await.unwrap();
    assert_eq!(journal.len(), 39, "every other call committed");
    assert_eq!(fx.store().cursor(SHOP, "s20").await.unwrap(), None);
    assert_eq!(
        fx.store().cursor(SHOP, "s19").await.unwrap().as_deref(),
        Some("done")
    );
}

/// Many concurrent ingests all commit, each exactly once.
pub async fn concurrent_ingests_all_commit(fx: &Fixture) {
    const TASKS: usize = 64;
    const PER_TASK: usize = 5;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&fx.store);
        tasks.push(tokio::spawn(async move {
            let captures = (0..PER_TASK)
                .map(|i| capture(SHOP, Kind::Stock, &format!("t{t}-i{i}"), "v1"))
                .collect();
            let cursor = CursorUpdate {
                endpoint: SHOP.into(),
                stream: format!("task-{t}"),
                value: format!("{t}"),
            };
            store.ingest(captures, Some(cursor)).await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let out = task.await.unwrap().expect("concurrent ingest failed");
        ids.extend(out.into_iter().map(stored));
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        TASKS * PER_TASK,
        "every capture stored once with its own id"
    );
    let pending = fx.store().pending_journal(10_000).await.unwrap();
    let mut journaled: Vec<i64> = pending.iter().map(|e| e.id).collect();
    journaled.sort_unstable();
    assert_eq!(
        journaled, ids,
        "the journal holds exactly the stored captures"
    );
    for t in 0..TASKS {
        assert_eq!(
            fx.store().cursor(SHOP, &format!("task-{t}")).await.unwrap(),
            Some(t.to_string())
        );
    }
    assert_eq!(
        fx.store().stats().await.unwrap().journal_total,
        (TASKS * PER_TASK) as u64
    );
}

pub async fn pending_journal_is_oldest_first_and_limited(fx: &Fixture) {
    let s = fx.store();
    let captures = (0..5)
        .map(|i| capture(SHOP, Kind::Product, &format!("p{i}"), "v1"))
        .collect();
    let ids: Vec<i64> = s
        .ingest(captures, None)
        .await
        .unwrap()
        .into_iter()
        .map(stored)
        .collect();
    let first3: Vec<i64> = s
        .pending_journal(3)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(first3, ids[..3], "oldest first, at most `limit`");
    // Processing the oldest makes the next ones come first.
    s.apply(
        ProcessBatch {
            journal: vec![(
                ids[0],
                JournalStatus::Processed,
                Some("applied".into()),
                None,
            )],
            ..ProcessBatch::default()
        },
        2_000,
    )
    .await
    .unwrap();
    let rest: Vec<i64> = s
        .pending_journal(10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(rest, ids[1..]);
    assert!(s.pending_journal(0).await.unwrap().is_empty());
}

pub async fn journal_lookups_and_filters(fx: &Fixture) {
    let s = fx.store();
    let c = capture(SHOP, Kind::Order, "o1", "v1");
    let out = s
        .ingest(
            vec![
                c.clone(),
                capture(ERP, Kind::Order, "o1", "v1"),
                capture(SHOP, Kind::Customer, "c1", "v1"),
            ],
            None,
        )
        .await
        .unwrap();
    let ids: Vec<i64> = out.into_iter().map(stored).collect();
    let e = s.journal_entry(ids[0]).await.unwrap().expect("entry");
    assert_eq!(
        (
            e.endpoint.as_str(),
            e.kind,
            e.external_id.as_str(),
            e.version.as_str()
        ),
        (SHOP, Kind::Order, "o1", "v1")
    );
    assert_eq!(e.payload, c.payload, "payload round-trips exactly");
    assert_eq!(e.received_at, c.received_at);
    assert_eq!(
        (e.status, e.note.as_deref(), e.key.as_deref()),
        (JournalStatus::Pending, None, None)
    );
    assert_eq!(s.journal_entry(ids[2] + 1000).await.unwrap(), None);

    let all: Vec<i64> = s
        .journal(None, None, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(all, [ids[2], ids[1], ids[0]], "newest first");
    let shop: Vec<i64> = s
        .journal(Some(SHOP), None, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(shop, [ids[2], ids[0]]);
    let orders: Vec<i64> = s
        .journal(None, Some(Kind::Order), None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(orders, [ids[1], ids[0]]);
    assert_eq!(
        s.journal(None, None, None, 1).await.unwrap().len(),
        1,
        "limit applies"
    );

    s.apply(
        ProcessBatch {
            journal: vec![
                (
                    ids[0],
                    JournalStatus::Processed,
                    Some("applied".into()),
                    Some("ORD-1".into()),
                ),
                (
                    ids[1],
                    JournalStatus::Processed,
                    Some("applied".into()),
                    Some("ORD-1".into()),
                ),
            ],
            ..ProcessBatch::default()
        },
        2_000,
    )
    .await
    .unwrap();
    let by_key: Vec<i64> = s
        .journal(None, Some(Kind::Order), Some("ORD-1"), 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(by_key, [ids[1], ids[0]], "filter by resolved key");
    let by_all: Vec<i64> = s
        .journal(Some(ERP), Some(Kind::Order), Some("ORD-1"), 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(by_all, [ids[1]]);
}

// ---- processing ----

pub async fn apply_commits_a_processing_step(fx: &Fixture) {
    let s = fx.store();
    let ids: Vec<i64> = s
        .ingest(
            vec![
                capture(ERP, Kind::Product, "E-1", "7"),
                capture(SHOP, Kind::Product, "S-1", "3"),
            ],
            None,
        )
        .await
        .unwrap()
        .into_iter()
        .map(stored)
        .collect();
    let write = |endpoint: &str, version: &str, name: &str, at: Millis| EntityWrite {
        kind: Kind::Product,
        key: "SKU-1".into(),
        state: json!({ "sku": "SKU-1", "name": name }),
        hash: format!("h-{name}"),
        endpoint: endpoint.into(),
        version: version.into(),
        at,
    };
    let mut it = item(SHOP, Kind::Product, "SKU-1", "h-shop-1");
    it.journal_id = Some(ids[0]);
    s.apply(
        ProcessBatch {
            journal: vec![(
                ids[0],
                JournalStatus::Processed,
                Some("applied".into()),
                Some("SKU-1".into()),
            )],
            entities: vec![write(ERP, "7", "Mug", 2_000)],
            xrefs: vec![xref(ERP, Kind::Product, "E-1", "SKU-1")],
            items: vec![it],
            dead_letters: vec![NewDeadLetter {
                direction: Direction::Inbound,
                endpoint: ERP.into(),
                kind: Kind::Product,
                key: "SKU-1".into(),
                payload: json!({ "why": "test" }),
                reason: "mapping failed".into(),
                journal_id: Some(ids[0]),
                at: 2_000,
            }],
            audit: vec![AuditEvent {
                at: 2_000,
                event: "conflict".into(),
                endpoint: Some(ERP.into()),
                kind: Some(Kind::Product),
                key: Some("SKU-1".into()),
                detail: json!({ "field": "price" }),
            }],
            ..ProcessBatch::default()
        },
        2_000,
    )
    .await
    .unwrap();

    let e = s.journal_entry(ids[0]).await.unwrap().unwrap();
    assert_eq!(e.status, JournalStatus::Processed);
    assert_eq!(
        (e.note.as_deref(), e.key.as_deref()),
        (Some("applied"), Some("SKU-1"))
    );
    let pending: Vec<i64> = s
        .pending_journal(10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(pending, [ids[1]]);

    let ent = s
        .entity(Kind::Product, "SKU-1")
        .await
        .unwrap()
        .expect("entity written");
    assert_eq!(ent.state, json!({ "sku": "SKU-1", "name": "Mug" }));
    assert_eq!((ent.hash.as_str(), ent.updated_at), ("h-Mug", 2_000));
    assert_eq!(ent.versions.get(ERP).map(String::as_str), Some("7"));
    assert_eq!(s.entity(Kind::Product, "SKU-2").await.unwrap(), None);
    assert_eq!(
        s.entity(Kind::Price, "SKU-1").await.unwrap(),
        None,
        "kinds are separate"
    );

    assert_eq!(
        s.xref_key(ERP, Kind::Product, "E-1")
            .await
            .unwrap()
            .as_deref(),
        Some("SKU-1")
    );
    assert_eq!(
        s.xref_external(ERP, Kind::Product, "SKU-1")
            .await
            .unwrap()
            .as_deref(),
        Some("E-1")
    );
    assert_eq!(s.xref_key(SHOP, Kind::Product, "E-1").await.unwrap(), None);

    let pending_items = s.items(Some(SHOP), ItemState::Pending, 10).await.unwrap();
    assert_eq!(pending_items.len(), 1);
    assert_eq!(pending_items[0].journal_id, Some(ids[0]));
    assert_eq!(pending_items[0].created_at, 2_000);
    assert_eq!(
        s.hashes(SHOP, Kind::Product, "SKU-1").await.unwrap(),
        (Some("h-shop-1".into()), None),
        "enqueueing sets the planned hash"
    );
    let dls = s.dead_letters(DeadLetterFilter::default()).await.unwrap();
    assert_eq!(dls.len(), 1);
    assert_eq!(
        (dls[0].reason.as_str(), dls[0].journal_id),
        ("mapping failed", Some(ids[0]))
    );
    let audit = s.audit_log(10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event.event, "conflict");
    assert_eq!(audit[0].event.detail, json!({ "field": "price" }));

    // A second source's version is added to the versions map, not replacing the first's.
    s.apply(
        ProcessBatch {
            journal: vec![(
                ids[1],
                JournalStatus::Processed,
                Some("applied".into()),
                Some("SKU-1".into()),
            )],
            entities: vec![write(SHOP, "3", "Big mug", 3_000)],
            ..ProcessBatch::default()
        },
        3_000,
    )
    .await
    .unwrap();
    let ent = s.entity(Kind::Product, "SKU-1").await.unwrap().unwrap();
    assert_eq!(ent.state["name"], "Big mug");
    assert_eq!(ent.updated_at, 3_000);
    assert_eq!(
        ent.versions.into_iter().collect::<Vec<_>>(),
        [
            (ERP.to_string(), "7".to_string()),
            (SHOP.to_string(), "3".to_string())
        ]
    );
}

/// Xrefs are unique both ways and insert-if-absent: conflicting ones are ignored, not errors.
pub async fn apply_never_changes_existing_xrefs(fx: &Fixture) {
    let s = fx.store();
    let batch = |x: Vec<Xref>| ProcessBatch {
        xrefs: x,
        ..ProcessBatch::default()
    };
    s.apply(batch(vec![xref(SHOP, Kind::Customer, "101", "c1")]), 1)
        .await
        .unwrap();
    s.apply(
        batch(vec![
            xref(SHOP, Kind::Customer, "101", "c2"), // same external id, other key
            xref(SHOP, Kind::Customer, "102", "c1"), // same key, other external id
            xref(SHOP, Kind::Customer, "101", "c1"), // the same again
        ]),
        2,
    )
    .await
    .expect("conflicting xrefs are ignored, not errors");
    assert_eq!(
        s.xref_key(SHOP, Kind::Customer, "101")
            .await
            .unwrap()
            .as_deref(),
        Some("c1")
    );
    assert_eq!(
        s.xref_external(SHOP, Kind::Customer, "c1")
            .await
            .unwrap()
            .as_deref(),
        Some("101")
    );
    assert_eq!(s.xref_key(SHOP, Kind::Customer, "102").await.unwrap(), None);
    assert_eq!(
        s.xref_external(SHOP, Kind::Customer, "c2").await.unwrap(),
        None
    );
    // The same ids at another endpoint or kind are independent.
    s.apply(
        batch(vec![
            xref(ERP, Kind::Customer, "101", "c2"),
            xref(SHOP, Kind::Order, "101", "c2"),
        ]),
        3,
    )
    .await
    .unwrap();
    assert_eq!(
        s.xref_key(ERP, Kind::Customer, "101")
            .await
            .unwrap()
            .as_deref(),
        Some("c2")
    );
    assert_eq!(
        s.xref_key(SHOP, Kind::Order, "101")
            .await
            .unwrap()
            .as_deref(),
        Some("c2")
    );
}

// ---- outbox ----

/// A newer state replaces a pending item of its key in place: same id (place in line), new
/// payload and hash, attempts reset, the earlier of the two due times.
pub async fn pending_state_items_coalesce(fx: &Fixture) {
    let s = fx.store();
    enqueue(
        s,
        vec![
            item(SHOP, Kind::Stock, "SKU-1", "h1"),
            item(SHOP, Kind::Stock, "SKU-2", "x1"),
        ],
        1_000,
    )
    .await;
    // Give the first a failed attempt and a later due time.
    let c = claim(s, SHOP, 1, 1_000).await;
    assert_eq!(c.len(), 1);
    let first_id = c[0].item.id;
    let retry = Settlement::Retry {
        id: first_id,
        token: c[0].token,
        next_at: 50_000,
        error: "timeout".into(),
        count: true,
    };
    assert_eq!(settle(s, vec![retry]).await, 1);

    let mut newer = item(SHOP, Kind::Stock, "SKU-1", "h2");
    newer.payload = json!({ "qty": 2 });
    newer.journal_id = Some(42);
    newer.captured_at = 1_500;
    newer.not_before = 2_000;
    enqueue(s, vec![newer], 2_000).await;

    let pending = s.items(Some(SHOP), ItemState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 2, "coalesced, not appended: {pending:?}");
    let it = pending.iter().find(|i| i.key == "SKU-1").unwrap();
    assert_eq!(
        it.id, first_id,
        "the coalesced item keeps its place in line"
    );
    assert_eq!(
        (it.hash.as_str(), &it.payload),
        ("h2", &json!({ "qty": 2 }))
    );
    assert_eq!((it.journal_id, it.captured_at), (Some(42), 1_500));
    assert_eq!(it.attempts, 0, "attempts reset for the new state");
    assert_eq!(it.next_at, 2_000, "due at the earlier of the two times");
    assert_eq!(
        s.hashes(SHOP, Kind::Stock, "SKU-1")
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("h2")
    );

    // Another destination's item of the same key is separate.
    enqueue(s, vec![item(ERP, Kind::Stock, "SKU-1", "h3")], 2_000).await;
    assert_eq!(count_items(s, SHOP, ItemState::Pending).await, 2);
    assert_eq!(count_items(s, ERP, ItemState::Pending).await, 1);

    // Items enqueued without `coalesce` are appended even for a state kind.
    let mut plain = item(SHOP, Kind::Stock, "SKU-2", "x2");
    plain.coalesce = false;
    enqueue(s, vec![plain], 2_000).await;
    assert_eq!(count_items(s, SHOP, ItemState::Pending).await, 3);
}

/// An in-flight item is never touched by coalescing: the new state queues behind it.
pub async fn inflight_items_are_never_coalesced(fx: &Fixture) {
    let s = fx.store();
    enqueue(s, vec![item(SHOP, Kind::Price, "SKU-1", "h1")], 1_000).await;
    let c = claim(s, SHOP, 10, 1_000).await;
    assert_eq!(c.len(), 1);
    enqueue(s, vec![item(SHOP, Kind::Price, "SKU-1", "h2")], 1_100).await;
    enqueue(s, vec![item(SHOP, Kind::Price, "SKU-1", "h3")], 1_200).await;

    let inflight = s.items(Some(SHOP), ItemState::Inflight, 10).await.unwrap();
    assert_eq!(inflight.len(), 1);
    assert_eq!(inflight[0].hash, "h1", "the in-flight payload is untouched");
    let pending = s.items(Some(SHOP), ItemState::Pending, 10).await.unwrap();
    assert_eq!(
        pending.len(),
        1,
        "h2 and h3 coalesced into one pending item behind it"
    );
    assert_eq!(pending[0].hash, "h3");
    assert!(pending[0].id > inflight[0].id);

    assert!(
        claim(s, SHOP, 10, 1_300).await.is_empty(),
        "key busy while one is in flight"
    );
    assert_eq!(settle(s, vec![delivered(&c[0], None, 1_400)]).await, 1);
    let next = claim(s, SHOP, 10, 1_500).await;
    assert_eq!(keys(&next), [(Kind::Price, "SKU-1".into(), "h3".into())]);
}

/// Command items (no coalescing) are delivered one at a time in enqueue order.
pub async fn command_items_keep_order_and_never_overtake(fx: &Fixture) {
    let s = fx.store();
    let mut items = Vec::new();
    for n in 1..=3 {
        items.push(item(SHOP, Kind::Order, "ORD-1", &format!("o{n}")));
    }
    items.push(item(SHOP, Kind::Order, "ORD-2", "p1"));
    enqueue(s, items, 1_000).await;
    assert_eq!(
        count_items(s, SHOP, ItemState::Pending).await,
        4,
        "commands never coalesce"
    );

    let c = claim(s, SHOP, 10, 1_000).await;
    assert_eq!(
        keys(&c),
        [
            (Kind::Order, "ORD-1".into(), "o1".into()),
            (Kind::Order, "ORD-2".into(), "p1".into())
        ],
        "only the head of each key, different keys in parallel"
    );
    assert!(
        claim(s, SHOP, 10, 1_000).await.is_empty(),
        "nothing overtakes an in-flight head"
    );
    // Walk the key: settle the head, the next one becomes claimable.
    let mut head = c.into_iter().find(|x| x.item.key == "ORD-1").unwrap();
    for expected in ["o2", "o3"] {
        assert_eq!(settle(s, vec![delivered(&head, None, 2_000)]).await, 1);
        let next = claim(s, SHOP, 10, 2_000).await;
        assert_eq!(
            keys(&next),
            [(Kind::Order, "ORD-1".into(), expected.into())]
        );
        head = next.into_iter().next().unwrap();
    }
    assert_eq!(settle(s, vec![delivered(&head, None, 3_000)]).await, 1);
    assert!(claim(s, SHOP, 10, 3_000).await.is_empty());
    assert_eq!(count_items(s, SHOP, ItemState::Done).await, 3);
}

/// Repeated claims never put two items of one key in flight.
pub async fn at_most_one_item_in_flight_per_key(fx: &Fixture) {
    let s = fx.store();
    let mut items = Vec::new();
    for n in 0..12 {
        items.push(item(
            SHOP,
            Kind::Order,
            &format!("ORD-{}", n % 3),
            &format!("h{n}"),
        ));
    }
    enqueue(s, items, 1_000).await;
    let mut claimed = Vec::new();
    for _ in 0..5 {
        claimed.extend(claim(s, SHOP, 2, 1_000).await);
    }
    let mut claimed_keys: Vec<String> = claimed.iter().map(|c| c.item.key.clone()).collect();
    claimed_keys.sort();
    assert_eq!(
        claimed_keys,
        ["ORD-0", "ORD-1", "ORD-2"],
        "one per key, across claims"
    );
    let inflight = s.items(Some(SHOP), ItemState::Inflight, 100).await.unwrap();
    assert_eq!(inflight.len(), 3);
    let mut tokens: Vec<i64> = claimed.iter().map(|c| c.token).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "every claim gets its own token");
    for c in &claimed {
        assert_eq!(c.item.state, ItemState::Inflight);
    }

    // Concurrent claimers: still one per key.
    let settle_all: Vec<Settlement> = claimed.iter().map(|c| delivered(c, None, 1_100)).collect();
    assert_eq!(settle(s, settle_all).await, 3);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&fx.store);
        tasks.push(tokio::spawn(async move {
            store.claim(SHOP, 10, 1_200, 60_000).await
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap().unwrap());
    }
    let mut concurrent_keys: Vec<String> = all.iter().map(|c| c.item.key.clone()).collect();
    concurrent_keys.sort();
    assert_eq!(concurrent_keys, ["ORD-0", "ORD-1", "ORD-2"]);
}

/// Items are claimable only once due; an earlier item that is not yet due still blocks its key.
pub async fn items_wait_until_due(fx: &Fixture) {
    let s = fx.store();
    let mut later = item(SHOP, Kind::Order, "ORD-1", "o1");
    later.not_before = 5_000;
    let follower = item(SHOP, Kind::Order, "ORD-1", "o2");
    let mut other = item(SHOP, Kind::Order, "ORD-2", "p1");
    other.not_before = 3_000;
    enqueue(s, vec![later, follower, other], 1_000).await;
    assert_eq!(
        s.next_due(SHOP).await.unwrap(),
        Some(0),
        "the follower is due (but blocked)"
    );
    assert!(
        claim(s, SHOP, 10, 1_000).await.is_empty(),
        "o1 not due, o2 must not overtake it"
    );
    assert_eq!(
        keys(&claim(s, SHOP, 10, 3_000).await),
        [(Kind::Order, "ORD-2".into(), "p1".into())]
    );
    assert_eq!(
        keys(&claim(s, SHOP, 10, 5_000).await),
        [(Kind::Order, "ORD-1".into(), "o1".into())]
    );
    assert_eq!(s.next_due(ERP).await.unwrap(), None);
    assert!(
        claim(s, ERP, 10, 10_000).await.is_empty(),
        "destinations are separate"
    );
}

fn waiting(mut it: NewItem, deps: &[(Kind, &str)]) -> NewItem {
    it.waiting_on = deps.iter().map(|(k, key)| (*k, key.to_string())).collect();
    it
}

/// A parked item is not claimable, blocks later items of its key, and is released (due now) when
/// `apply` records the xrefs it waits for.
pub async fn parked_item_blocks_its_key_until_apply_adds_the_xref(fx: &Fixture) {
    let s = fx.store();
    let order = waiting(
        item(SHOP, Kind::Order, "ORD-1", "o1"),
        &[(Kind::Customer, "c1"), (Kind::Product, "p1")],
    );
    enqueue(
        s,
        vec![order, item(SHOP, Kind::Order, "ORD-1", "o2")],
        1_000,
    )
    .await;
    let parked = s.items(Some(SHOP), ItemState::Parked, 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        parked[0].waiting_on,
        [
            (Kind::Customer, "c1".to_string()),
            (Kind::Product, "p1".to_string())
        ]
    );
    assert_eq!(
        s.hashes(SHOP, Kind::Order, "ORD-1")
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("o2")
    );
    assert!(
        claim(s, SHOP, 10, 1_000).await.is_empty(),
        "parked head blocks its key"
    );

    let add = |x: Xref| ProcessBatch {
        xrefs: vec![x],
        ..ProcessBatch::default()
    };
    // An xref at another endpoint does not help; one dependency of two is not enough.
    s.apply(add(xref(ERP, Kind::Customer, "E-c1", "c1")), 1_500)
        .await
        .unwrap();
    s.apply(add(xref(SHOP, Kind::Customer, "S-c1", "c1")), 1_600)
        .await
        .unwrap();
    let parked = s.items(Some(SHOP), ItemState::Parked, 10).await.unwrap();
    assert_eq!(parked.len(), 1, "still waiting on p1");
    assert_eq!(parked[0].waiting_on, [(Kind::Product, "p1".to_string())]);
    assert!(claim(s, SHOP, 10, 1_600).await.is_empty());

    s.apply(add(xref(SHOP, Kind::Product, "S-p1", "p1")), 2_000)
        .await
        .unwrap();
    let released = item_by_id(s, parked[0].id).await;
    assert_eq!(released.state, ItemState::Pending);
    assert!(released.waiting_on.is_empty());
    assert_eq!(released.next_at, 2_000, "released items are due now");
    assert_eq!(
        keys(&claim(s, SHOP, 10, 2_000).await),
        [(Kind::Order, "ORD-1".into(), "o1".into())]
    );
}

/// A delivery that reports the destination's id records the xref and releases items waiting on
/// that key there.
pub async fn parked_item_is_released_by_a_delivered_xref(fx: &Fixture) {
    let s = fx.store();
    let customer = item(SHOP, Kind::Customer, "c1", "hc");
    let order = waiting(
        item(SHOP, Kind::Order, "ORD-1", "o1"),
        &[(Kind::Customer, "c1")],
    );
    enqueue(s, vec![customer, order], 1_000).await;
    let c = claim(s, SHOP, 10, 1_000).await;
    assert_eq!(
        keys(&c),
        [(Kind::Customer, "c1".into(), "hc".into())],
        "the parked order waits"
    );
    assert_eq!(
        settle(s, vec![delivered(&c[0], Some("S-77"), 3_000)]).await,
        1
    );
    assert_eq!(
        s.xref_key(SHOP, Kind::Customer, "S-77")
            .await
            .unwrap()
            .as_deref(),
        Some("c1")
    );
    assert_eq!(count_items(s, SHOP, ItemState::Parked).await, 0);
    let next = claim(s, SHOP, 10, 3_000).await;
    assert_eq!(keys(&next), [(Kind::Order, "ORD-1".into(), "o1".into())]);
    assert!(next[0].item.waiting_on.is_empty());
}

/// Dependencies already known at the destination are not recorded; with none left the item is
/// pending at once.
pub async fn satisfied_dependencies_are_not_waited_for(fx: &Fixture) {
    let s = fx.store();
    s.apply(
        ProcessBatch {
            xrefs: vec![xref(SHOP, Kind::Customer, "S-c1", "c1")],
            ..ProcessBatch::default()
        },
        500,
    )
    .await
    .unwrap();
    let a = waiting(
        item(SHOP, Kind::Order, "ORD-1", "o1"),
        &[(Kind::Customer, "c1")],
    );
    let b = waiting(
        item(SHOP, Kind::Order, "ORD-2", "p1"),
        &[(Kind::Customer, "c1"), (Kind::Product, "p9")],
    );
    enqueue(s, vec![a, b], 1_000).await;
    let pending = s.items(Some(SHOP), ItemState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].key.as_str(), pending[0].waiting_on.len()),
        ("ORD-1", 0)
    );
    let parked = s.items(Some(SHOP), ItemState::Parked, 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].waiting_on, [(Kind::Product, "p9".to_string())]);
    // An xref added in the same batch as the item counts as known.
    s.apply(
        ProcessBatch {
            xrefs: vec![xref(SHOP, Kind::Customer, "S-c2", "c2")],
            items: vec![waiting(
                item(SHOP, Kind::Order, "ORD-3", "q1"),
                &[(Kind::Customer, "c2")],
            )],
            ..ProcessBatch::default()
        },
        1_100,
    )
    .await
    .unwrap();
    assert_eq!(count_items(s, SHOP, ItemState::Pending).await, 2);
}

// ---- settlement ----

/// Settlements apply only to an in-flight item under the token it was claimed with.
pub async fn stale_token_settlements_are_ignored(fx: &Fixture) {
    let s = fx.store();
    enqueue(s, vec![item(SHOP, Kind::Order, "ORD-1", "o1")], 1_000).await;
    let first = claim(s, SHOP, 1, 1_000).await.remove(0);
    let mut forged = first.clone();
    forged.token = first.token.wrapping_add(1);
    assert_eq!(
        settle(s, vec![delivered(&forged, None, 1_100)]).await,
        0,
        "wrong token ignored"
    );
    assert_eq!(
        item_by_id(s, first.item.id).await.state,
        ItemState::Inflight
    );

    // The lease ends, another worker claims it: the first worker's token is stale.
    assert_eq!(s.recover_expired(100_000).await.unwrap(), 1);
    let second = claim(s, SHOP, 1, 200_000).await.remove(0);
    assert_eq!(second.item.id, first.item.id);
    assert_ne!(second.token, first.token, "a new claim gets a new token");
    let stale = vec![
        delivered(&first, None, 200_100),
        Settlement::Retry {
            id: first.item.id,
            token: first.token,
            next_at: 0,
            error: "stale".into(),
            count: true,
        },
        Settlement::Dead {
            id: first.item.id,
            token: first.token,
            reason: "stale".into(),
            at: 0,
        },
        Settlement::Skipped {
            id: first.item.id,
            token: first.token,
            reason: "stale".into(),
            at: 0,
        },
    ];
    assert_eq!(
        settle(s, stale).await,
        0,
        "stale settlements are ignored, not errors"
    );
    let it = item_by_id(s, first.item.id).await;
    assert_eq!((it.state, it.attempts), (ItemState::Inflight, 0));
    assert!(s
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap()
        .is_empty());

    assert_eq!(settle(s, vec![delivered(&second, None, 200_200)]).await, 1);
    assert_eq!(
        settle(s, vec![delivered(&second, None, 200_300)]).await,
        0,
        "settles once"
    );
    assert_eq!(item_by_id(s, first.item.id).await.state, ItemState::Done);
    // An unknown id is ignored too.
    let mut ghost = second.clone();
    ghost.item.id += 1_000;
    assert_eq!(settle(s, vec![delivered(&ghost, None, 0)]).await, 0);
}

/// In-flight items whose lease ended before `before` return to pending, attempts untouched.
pub async fn expired_leases_are_recovered(fx: &Fixture) {
    let s = fx.store();
    enqueue(
        s,
        vec![
            item(SHOP, Kind::Order, "ORD-1", "o1"),
            item(ERP, Kind::Order, "ORD-2", "p1"),
        ],
        1_000,
    )
    .await;
    let a = s.claim(SHOP, 10, 1_000, 5_000).await.unwrap();
    let b = s.claim(ERP, 10, 1_000, 9_000).await.unwrap();
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!(
        s.recover_expired(5_000).await.unwrap(),
        0,
        "lease_until == before is not expired"
    );
    assert_eq!(s.recover_expired(5_001).await.unwrap(), 1);
    let it = item_by_id(s, a[0].item.id).await;
    assert_eq!((it.state, it.attempts), (ItemState::Pending, 0));
    assert_eq!(
        item_by_id(s, b[0].item.id).await.state,
        ItemState::Inflight,
        "live lease kept"
    );
    let again = claim(s, SHOP, 10, 6_000).await;
    assert_eq!(again.len(), 1, "recovered items are claimable again");
    assert_eq!(
        settle(s, vec![delivered(&a[0], None, 6_100)]).await,
        0,
        "old claim is stale"
    );
    assert_eq!(s.recover_expired(i64::MAX).await.unwrap(), 2);
}

pub async fn retry_counts_only_counted_attempts(fx: &Fixture) {
    let s = fx.store();
    enqueue(s, vec![item(SHOP, Kind::Order, "ORD-1", "o1")], 1_000).await;
    let c = claim(s, SHOP, 1, 1_000).await.remove(0);
    let retry = |c: &Claimed, next_at: Millis, error: &str, count: bool| Settlement::Retry {
        id: c.item.id,
        token: c.token,
        next_at,
        error: error.into(),
        count,
    };
    assert_eq!(settle(s, vec![retry(&c, 5_000, "HTTP 503", true)]).await, 1);
    let it = item_by_id(s, c.item.id).await;
    assert_eq!(
        (it.state, it.attempts, it.next_at),
        (ItemState::Pending, 1, 5_000)
    );
    assert_eq!(it.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(s.next_due(SHOP).await.unwrap(), Some(5_000));
    assert!(
        claim(s, SHOP, 1, 4_999).await.is_empty(),
        "not before next_at"
    );

    let c = claim(s, SHOP, 1, 5_000).await.remove(0);
    assert_eq!(c.item.attempts, 1);
    assert_eq!(
        settle(s, vec![retry(&c, 9_000, "breaker open", false)]).await,
        1
    );
    let it = item_by_id(s, c.item.id).await;
    assert_eq!(it.attempts, 1, "an uncounted failure keeps attempts");
    assert_eq!(
        (it.next_at, it.last_error.as_deref()),
        (9_000, Some("breaker open"))
    );
}

/// Dead: item dead, an outbound dead letter with everything needed to replay it, and the planned
/// hash falls back to the written one.
pub async fn dead_item_opens_a_dead_letter_and_resets_the_plan(fx: &Fixture) {
    let s = fx.store();
    enqueue(s, vec![item(SHOP, Kind::Product, "SKU-1", "h1")], 1_000).await;
    let c = claim(s, SHOP, 1, 1_000).await.remove(0);
    settle(s, vec![delivered(&c, None, 1_100)]).await;
    assert_eq!(
        s.hashes(SHOP, Kind::Product, "SKU-1").await.unwrap(),
        (Some("h1".into()), Some("h1".into()))
    );

    let mut next = item(SHOP, Kind::Product, "SKU-1", "h2");
    next.journal_id = Some(7);
    enqueue(s, vec![next.clone()], 2_000).await;
    assert_eq!(
        s.hashes(SHOP, Kind::Product, "SKU-1")
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("h2")
    );
    let c = claim(s, SHOP, 1, 2_000).await.remove(0);
    settle(
        s,
        vec![Settlement::Retry {
            id: c.item.id,
            token: c.token,
            next_at: 2_000,
            error: "timeout".into(),
            count: true,
        }],
    )
    .await;
    let c = claim(s, SHOP, 1, 2_000).await.remove(0);
    let dead = Settlement::Dead {
        id: c.item.id,
        token: c.token,
        reason: "422 invalid sku".into(),
        at: 3_000,
    };
    assert_eq!(settle(s, vec![dead]).await, 1);

    let it = item_by_id(s, c.item.id).await;
    assert_eq!(it.state, ItemState::Dead);
    let dls = s.dead_letters(DeadLetterFilter::default()).await.unwrap();
    assert_eq!(dls.len(), 1);
    let dl = &dls[0];
    assert_eq!(dl.direction, Direction::Outbound);
    assert_eq!(
        (dl.endpoint.as_str(), dl.kind, dl.key.as_str()),
        (SHOP, Kind::Product, "SKU-1")
    );
    assert_eq!(
        (dl.op.as_deref(), dl.flow.as_deref()),
        (Some("upsert"), Some(next.flow.as_str()))
    );
    assert_eq!(dl.payload, next.payload);
    assert_eq!(dl.reason, "422 invalid sku");
    assert_eq!(dl.attempts, 1);
    assert_eq!((dl.journal_id, dl.item_id), (Some(7), Some(c.item.id)));
    assert_eq!((dl.state, dl.created_at), (DeadLetterState::Open, 3_000));
    assert_eq!(
        s.hashes(SHOP, Kind::Product, "SKU-1").await.unwrap(),
        (Some("h1".into()), Some("h1".into())),
        "planned falls back to written"
    );
    // A dead item does not block its key.
    enqueue(s, vec![item(SHOP, Kind::Product, "SKU-1", "h3")], 4_000).await;
    assert_eq!(claim(s, SHOP, 1, 4_000).await.len(), 1);
}

pub async fn skipped_item_is_done_with_an_audit_event(fx: &Fixture) {
    let s = fx.store();
    enqueue(s, vec![item(SHOP, Kind::Payment, "PAY-1", "h1")], 1_000).await;
    let c = claim(s, SHOP, 1, 1_000).await.remove(0);
    let skipped = Settlement::Skipped {
        id: c.item.id,
        token: c.token,
        reason: "no matching order".into(),
        at: 2_000,
    };
    assert_eq!(settle(s, vec![skipped]).await, 1);
    assert_eq!(item_by_id(s, c.item.id).await.state, ItemState::Done);
    assert_eq!(
        s.hashes(SHOP, Kind::Payment, "PAY-1").await.unwrap(),
        (Some("h1".into()), None),
        "nothing was written"
    );
    let audit = s.audit_log(10).await.unwrap();
    assert_eq!(audit.len(), 1);
    let e = &audit[0].event;
    assert_eq!((e.event.as_str(), e.at), ("delivery.skipped", 2_000));
    assert_eq!(
        (e.endpoint.as_deref(), e.kind, e.key.as_deref()),
        (Some(SHOP), Some(Kind::Payment), Some("PAY-1"))
    );
    assert_eq!(e.detail["reason"], "no matching order");
}

pub async fn delivered_item_records_written_hash_and_xref(fx: &Fixture) {
    let s = fx.store();
    enqueue(
        s,
        vec![
            item(SHOP, Kind::Customer, "c1", "h1"),
            item(SHOP, Kind::Customer, "c2", "h2"),
        ],
        1_000,
    )
    .await;
    let c = claim(s, SHOP, 10, 1_000).await;
    assert_eq!(c.len(), 2);
    let n = settle(
        s,
        vec![
            delivered(&c[0], Some("S-1"), 2_000),
            delivered(&c[1], None, 2_000),
        ],
    )
    .await;
    assert_eq!(n, 2);
    assert_eq!(
        s.hashes(SHOP, Kind::Customer, "c1").await.unwrap(),
        (Some("h1".into()), Some("h1".into()))
    );
    assert_eq!(
        s.xref_external(SHOP, Kind::Customer, "c1")
            .await
            .unwrap()
            .as_deref(),
        Some("S-1")
    );
    assert_eq!(
        s.xref_external(SHOP, Kind::Customer, "c2").await.unwrap(),
        None
    );
    let done = item_by_id(s, c[0].item.id).await;
    assert_eq!((done.state, done.updated_at), (ItemState::Done, 2_000));
}

// ---- dead letters ----

/// Only open dead letters are replayed, once; the replay happens with the state change.
pub async fn replay_replays_open_dead_letters_once(fx: &Fixture) {
    let s = fx.store();
    // An outbound dead letter.
    enqueue(s, vec![item(SHOP, Kind::Order, "ORD-1", "o1")], 1_000).await;
    let c = claim(s, SHOP, 1, 1_000).await.remove(0);
    settle(
        s,
        vec![Settlement::Dead {
            id: c.item.id,
            token: c.token,
            reason: "400".into(),
            at: 1_100,
        }],
    )
    .await;
    // An inbound one.
    let mut bad = capture(SHOP, Kind::Customer, "c1", "v1");
    bad.rejected = Some("invalid".into());
    s.ingest(vec![bad.clone()], None).await.unwrap();
    let dls = s.dead_letters(DeadLetterFilter::default()).await.unwrap();
    assert_eq!(dls.len(), 2);
    let (out_dl, in_dl) = if dls[0].direction == Direction::Outbound {
        (dls[0].id, dls[1].id)
    } else {
        (dls[1].id, dls[0].id)
    };

    let mut fixed = bad.clone();
    fixed.rejected = None; // same version: the replay must not be swallowed by the dedupe
    let replays = vec![
        (
            out_dl,
            Replay::Outbound(item(SHOP, Kind::Order, "ORD-1", "o1-fixed")),
        ),
        (in_dl, Replay::Inbound(fixed.clone())),
        (
            out_dl,
            Replay::Outbound(item(SHOP, Kind::Order, "ORD-1", "dup")),
        ),
    ];
    let mut replayed = s.replay_dead_letters(replays, 2_000).await.unwrap();
    replayed.sort_unstable();
    let mut expected = vec![out_dl, in_dl];
    expected.sort_unstable();
    assert_eq!(replayed, expected, "each open dead letter replayed once");
    let pending = s.items(Some(SHOP), ItemState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].hash, "o1-fixed");
    assert_eq!(
        s.hashes(SHOP, Kind::Order, "ORD-1")
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("o1-fixed")
    );
    let journal = s.pending_journal(10).await.unwrap();
    assert_eq!(
        journal.len(),
        1,
        "the inbound replay is journaled as pending"
    );
    assert_eq!(
        (journal[0].external_id.as_str(), journal[0].version.as_str()),
        ("c1", "v1")
    );
    for id in [out_dl, in_dl] {
        let dl = s.dead_letter(id).await.unwrap().unwrap();
        assert_eq!(
            (dl.state, dl.updated_at),
            (DeadLetterState::Replayed, 2_000)
        );
    }

    let again = s
        .replay_dead_letters(
            vec![(
                out_dl,
                Replay::Outbound(item(SHOP, Kind::Order, "ORD-1", "x")),
            )],
            3_000,
        )
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "a replayed dead letter is not replayed again"
    );
    assert_eq!(count_items(s, SHOP, ItemState::Pending).await, 1);
    let none = s
        .replay_dead_letters(vec![(9_999, Replay::Inbound(fixed))], 3_000)
        .await
        .unwrap();
    assert!(none.is_empty(), "unknown ids are ignored");
    assert_eq!(s.pending_journal(10).await.unwrap().len(), 1);
}

pub async fn drop_dead_letters_only_drops_open_ones(fx: &Fixture) {
    let s = fx.store();
    let rejected = |id: &str| {
        let mut c = capture(SHOP, Kind::Customer, id, "v1");
        c.rejected = Some("invalid".into());
        c
    };
    s.ingest(vec![rejected("c1"), rejected("c2"), rejected("c3")], None)
        .await
        .unwrap();
    let ids: Vec<i64> = s
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids.len(), 3);
    let replayed = s
        .replay_dead_letters(
            vec![(
                ids[2],
                Replay::Inbound(capture(SHOP, Kind::Customer, "c3", "v2")),
            )],
            1_500,
        )
        .await
        .unwrap();
    assert_eq!(replayed, [ids[2]]);

    let dropped = s
        .drop_dead_letters(vec![ids[0], ids[2], 9_999], 2_000)
        .await
        .unwrap();
    assert_eq!(dropped, [ids[0]], "only open dead letters are dropped");
    assert_eq!(
        s.drop_dead_letters(vec![ids[0]], 2_100).await.unwrap(),
        Vec::<i64>::new()
    );
    let dl = s.dead_letter(ids[0]).await.unwrap().unwrap();
    assert_eq!((dl.state, dl.updated_at), (DeadLetterState::Dropped, 2_000));
    assert_eq!(
        s.dead_letter(ids[2]).await.unwrap().unwrap().state,
        DeadLetterState::Replayed
    );
    let open: Vec<i64> = s
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(open, [ids[1]]);
    assert!(
        s.replay_dead_letters(vec![(ids[0], Replay::Inbound(rejected("c1")))], 3_000)
            .await
            .unwrap()
            .is_empty(),
        "dropped ones are not replayed"
    );
    assert_eq!(s.stats().await.unwrap().dead_letters_open, 1);
}

pub async fn dead_letter_filters(fx: &Fixture) {
    let s = fx.store();
    let dl = |endpoint: &str, kind: Kind, key: &str| NewDeadLetter {
        direction: Direction::Inbound,
        endpoint: endpoint.into(),
        kind,
        key: key.into(),
        payload: Value::Null,
        reason: "r".into(),
        journal_id: None,
        at: 1_000,
    };
    s.apply(
        ProcessBatch {
            dead_letters: vec![
                dl(SHOP, Kind::Order, "a"),
                dl(SHOP, Kind::Customer, "b"),
                dl(ERP, Kind::Order, "c"),
                dl(SHOP, Kind::Order, "d"),
            ],
            ..ProcessBatch::default()
        },
        1_000,
    )
    .await
    .unwrap();
    let keys_of = |v: Vec<crate::DeadLetter>| v.into_iter().map(|d| d.key).collect::<Vec<_>>();
    let f = |endpoint: Option<&str>, kind: Option<Kind>, limit: Option<usize>| DeadLetterFilter {
        endpoint: endpoint.map(str::to_owned),
        kind,
        state: None,
        limit,
    };
    assert_eq!(
        keys_of(s.dead_letters(f(None, None, None)).await.unwrap()),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        keys_of(s.dead_letters(f(Some(SHOP), None, None)).await.unwrap()),
        ["a", "b", "d"]
    );
    assert_eq!(
        keys_of(
            s.dead_letters(f(None, Some(Kind::Order), None))
                .await
                .unwrap()
        ),
        ["a", "c", "d"]
    );
    assert_eq!(
        keys_of(
            s.dead_letters(f(Some(SHOP), Some(Kind::Order), Some(1)))
                .await
                .unwrap()
        )
        .len(),
        1
    );
    let mut dropped_filter = f(None, None, None);
    dropped_filter.state = Some(DeadLetterState::Dropped);
    assert!(s
        .dead_letters(dropped_filter.clone())
        .await
        .unwrap()
        .is_empty());
    let all = s.dead_letters(f(None, None, None)).await.unwrap();
    s.drop_dead_letters(vec![all[1].id], 2_000).await.unwrap();
    assert_eq!(
        keys_of(s.dead_letters(dropped_filter).await.unwrap()),
        ["b"]
    );
    assert_eq!(
        keys_of(s.dead_letters(f(None, None, None)).await.unwrap()),
        ["a", "c", "d"]
    );
}

// ---- observability ----

pub async fn stats_reflect_the_store(fx: &Fixture) {
    let s = fx.store();
    assert_eq!(
        s.stats().await.unwrap(),
        crate::StoreStats::default(),
        "an empty store"
    );
    let mut bad = capture(SHOP, Kind::Product, "p9", "v1");
    bad.rejected = Some("invalid".into());
    let ids: Vec<i64> = s
        .ingest(
            vec![
                capture(SHOP, Kind::Product, "p1", "v1"),
                capture(SHOP, Kind::Product, "p2", "v1"),
                bad,
            ],
            None,
        )
        .await
        .unwrap()
        .into_iter()
        .map(stored)
        .collect();
    s.apply(
        ProcessBatch {
            journal: vec![(ids[0], JournalStatus::Processed, None, None)],
            ..ProcessBatch::default()
        },
        1_000,
    )
    .await
    .unwrap();
    let at = |mut it: NewItem, captured_at: Millis| {
        it.captured_at = captured_at;
        it
    };
    enqueue(
        s,
        vec![
            at(item(SHOP, Kind::Order, "o1", "a"), 300), // will be done
            at(item(SHOP, Kind::Order, "o2", "b"), 400), // will be in flight
            at(item(SHOP, Kind::Order, "o1", "c"), 500), // pending
            at(
                waiting(item(SHOP, Kind::Order, "o3", "d"), &[(Kind::Customer, "x")]),
                200,
            ), // parked
            at(item(ERP, Kind::Stock, "s1", "e"), 900),  // will be dead
        ],
        1_000,
    )
    .await;
    let c = claim(s, SHOP, 10, 1_000).await;
    assert_eq!(c.len(), 2);
    let o1 = c.iter().find(|x| x.item.key == "o1").unwrap();
    settle(s, vec![delivered(o1, None, 1_100)]).await;
    let e = claim(s, ERP, 10, 1_000).await.remove(0);
    settle(
        s,
        vec![Settlement::Dead {
            id: e.item.id,
            token: e.token,
            reason: "no".into(),
            at: 1_200,
        }],
    )
    .await;

    let stats = s.stats().await.unwrap();
    assert_eq!(
        (
            stats.journal_total,
            stats.journal_pending,
            stats.journal_rejected,
            stats.dead_letters_open
        ),
        (3, 1, 1, 2)
    );
    let expected = vec![
        crate::QueueStats {
            dest: ERP.into(),
            dead: 1,
            ..Default::default()
        },
        crate::QueueStats {
            dest: SHOP.into(),
            pending: 1,
            inflight: 1,
            parked: 1,
            done: 1,
            dead: 0,
            oldest_captured_at: Some(200),
        },
    ];
    let mut queues = stats.queues.clone();
    queues.sort_by(|a, b| a.dest.cmp(&b.dest));
    assert_eq!(queues, expected);
}

pub async fn audit_log_is_newest_first(fx: &Fixture) {
    let s = fx.store();
    let ev = |n: i64| AuditEvent {
        at: 1_000 + n,
        event: format!("breaker.{n}"),
        endpoint: if n % 2 == 0 { Some(SHOP.into()) } else { None },
        kind: if n % 2 == 0 { Some(Kind::Stock) } else { None },
        key: None,
        detail: json!({ "n": n }),
    };
    s.record_audit(vec![ev(1), ev(2)]).await.unwrap();
    s.record_audit(vec![ev(3)]).await.unwrap();
    s.record_audit(vec![]).await.unwrap();
    let log = s.audit_log(10).await.unwrap();
    let events: Vec<AuditEvent> = log.iter().map(|a| a.event.clone()).collect();
    assert_eq!(events, [ev(3), ev(2), ev(1)]);
    assert!(log[0].id > log[1].id && log[1].id > log[2].id);
    assert_eq!(s.audit_log(2).await.unwrap().len(), 2);
}

pub async fn items_are_listed_oldest_first(fx: &Fixture) {
    let s = fx.store();
    enqueue(
        s,
        vec![
            item(SHOP, Kind::Order, "o1", "a"),
            item(ERP, Kind::Order, "o2", "b"),
            item(SHOP, Kind::Order, "o3", "c"),
        ],
        1_000,
    )
    .await;
    let all: Vec<String> = s
        .items(None, ItemState::Pending, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(all, ["o1", "o2", "o3"]);
    let shop: Vec<String> = s
        .items(Some(SHOP), ItemState::Pending, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(shop, ["o1", "o3"]);
    assert_eq!(s.items(None, ItemState::Pending, 2).await.unwrap().len(), 2);
    assert!(s.items(None, ItemState::Done, 10).await.unwrap().is_empty());
    let first = &s.items(Some(SHOP), ItemState::Pending, 1).await.unwrap()[0];
    let expected = item(SHOP, Kind::Order, "o1", "a");
    assert_eq!(
        (
            &first.op,
            &first.payload,
            &first.flow,
            first.captured_at,
            first.attempts,
            first.next_at
        ),
        (&expected.op, &expected.payload, &expected.flow, 500, 0, 0)
    );
    assert_eq!(
        (
            first.created_at,
            first.updated_at,
            first.last_error.as_deref()
        ),
        (1_000, 1_000, None)
    );
}

/// A long history of done items does not change what claim returns.
pub async fn claim_ignores_finished_history(fx: &Fixture) {
    let s = fx.store();
    const N: usize = 2_000;
    let items = (0..N)
        .map(|n| {
            item(
                SHOP,
                Kind::Stock,
                &format!("SKU-{}", n % 50),
                &format!("h{n}"),
            )
        })
        .map(|mut it| {
            it.coalesce = false;
            it
        })
        .collect();
    enqueue(s, items, 1_000).await;
    loop {
        let c = claim(s, SHOP, 500, 1_000).await;
        if c.is_empty() {
            break;
        }
        assert!(c.len() <= 50, "at most one per key");
        settle(s, c.iter().map(|c| delivered(c, None, 1_000)).collect()).await;
    }
    assert_eq!(count_items(s, SHOP, ItemState::Done).await, N);
    enqueue(s, vec![item(SHOP, Kind::Stock, "SKU-7", "new")], 2_000).await;
    let started = std::time::Instant::now();
    let c = claim(s, SHOP, 500, 2_000).await;
    let took = started.elapsed();
    assert_eq!(keys(&c), [(Kind::Stock, "SKU-7".into(), "new".into())]);
    eprintln!("claim with {N} done items took {took:?}");
}

// ---- batched lookups ----

/// Each batched lookup answers exactly what its single lookup answers, one result per input and
/// in input order (repeats and misses included).
pub async fn batched_lookups_match_single_ones(fx: &Fixture) {
    let s = fx.store();
    let ids: Vec<i64> = s
        .ingest(vec![capture(ERP, Kind::Product, "E-1", "1")], None)
        .await
        .unwrap()
        .into_iter()
        .map(stored)
        .collect();
    s.apply(
        ProcessBatch {
            journal: vec![(ids[0], JournalStatus::Processed, None, Some("SKU-1".into()))],
            entities: vec![EntityWrite {
                kind: Kind::Product,
                key: "SKU-1".into(),
                state: json!({"sku": "SKU-1", "name": "One"}),
                hash: "h-one".into(),
                endpoint: ERP.into(),
                version: "1".into(),
                at: 1_000,
            }],
            xrefs: vec![Xref {
                endpoint: ERP.into(),
                kind: Kind::Product,
                external_id: "E-1".into(),
                key: "SKU-1".into(),
            }],
            items: vec![item(SHOP, Kind::Product, "SKU-1", "h-shop")],
            ..ProcessBatch::default()
        },
        1_000,
    )
    .await
    .unwrap();
    let t = |a: &str, k: Kind, b: &str| (a.to_string(), k, b.to_string());

    let xids = vec![
        t(ERP, Kind::Product, "E-1"),
        t(ERP, Kind::Product, "E-2"),
        t(SHOP, Kind::Product, "E-1"),
        t(ERP, Kind::Product, "E-1"),
    ];
    let mut single = Vec::new();
    for (e, k, x) in &xids {
        single.push(s.xref_key(e, *k, x).await.unwrap());
    }
    assert_eq!(s.xref_keys(&xids).await.unwrap(), single, "xref_keys");
    assert_eq!(single[0].as_deref(), Some("SKU-1"));

    let xkeys = vec![
        t(ERP, Kind::Product, "SKU-1"),
        t(ERP, Kind::Product, "SKU-2"),
    ];
    let mut single = Vec::new();
    for (e, k, key) in &xkeys {
        single.push(s.xref_external(e, *k, key).await.unwrap());
    }
    assert_eq!(
        s.xref_externals(&xkeys).await.unwrap(),
        single,
        "xref_externals"
    );
    assert_eq!(single[0].as_deref(), Some("E-1"));

    let ekeys = vec![
        (Kind::Product, "SKU-2".to_string()),
        (Kind::Product, "SKU-1".to_string()),
        (Kind::Customer, "SKU-1".to_string()),
    ];
    let mut single = Vec::new();
    for (k, key) in &ekeys {
        single.push(s.entity(*k, key).await.unwrap());
    }
    let batched = s.entities(&ekeys).await.unwrap();
    assert_eq!(batched, single, "entities");
    assert_eq!(batched[1].as_ref().map(|e| e.hash.as_str()), Some("h-one"));

    let hkeys = vec![
        t(SHOP, Kind::Product, "SKU-1"),
        t(SHOP, Kind::Product, "SKU-9"),
    ];
    let mut single = Vec::new();
    for (d, k, key) in &hkeys {
        single.push(s.hashes(d, *k, key).await.unwrap());
    }
    assert_eq!(s.hashes_of(&hkeys).await.unwrap(), single, "hashes_of");
    assert_eq!(single[0].0.as_deref(), Some("h-shop"));

    assert!(s.xref_keys(&[]).await.unwrap().is_empty());
    assert!(s.entities(&[]).await.unwrap().is_empty());
}

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

/// All lines or nothing; a short request names each short line with what could be had, and
/// reserves nothing.
pub async fn reserve_is_all_or_nothing_and_names_the_shortage(fx: &Fixture) {
    let s = fx.store();
    set_levels(
        s,
        vec![
            figure("A", "WH1", 10, 2, "1"),
            figure("B", "WH1", 3, 0, "1"),
        ],
    )
    .await;
    let r = reserve_ok(s, request(WEB, "k1", &[("A", 5)], &[("WH1", 0)])).await;
    assert_eq!(r.state, ReservationState::Held);
    assert_eq!(r.expires_at, Some(61_000));
    assert_eq!(allocations(&r), [("A".into(), "WH1".into(), 5, false)]);
    assert_eq!(position(s, "A", "WH1").await.held, 5);
    check_ledger(s).await;

    let out = s
        .reserve(request(WEB, "k2", &[("A", 4), ("B", 2)], &[("WH1", 0)]))
        .await
        .unwrap();
    assert_eq!(
        out,
        ReserveOutcome::Short(vec![Shortage {
            sku: "A".into(),
            requested: 4,
            available: 3
        }]),
        "10 on hand − 2 committed − 5 held = 3"
    );
    assert_eq!(position(s, "A", "WH1").await.held, 5, "nothing reserved");
    assert_eq!(
        position(s, "B", "WH1").await.held,
        0,
        "not even the line that fit"
    );
    assert_eq!(s.reservation("r-k2").await.unwrap(), None);
    // An unknown SKU (no position anywhere) has no stock.
    let out = s
        .reserve(request(WEB, "k3", &[("Z", 1)], &[("WH1", 0)]))
        .await
        .unwrap();
    assert!(
        matches!(out, ReserveOutcome::Short(ref v) if v[0].available == 0),
        "{out:?}"
    );
    let r = reserve_ok(s, request(WEB, "k4", &[("A", 3), ("B", 3)], &[("WH1", 0)])).await;
    assert_eq!(r.lines.len(), 2);
    assert_eq!(s.reservation("r-k4").await.unwrap(), Some(r));
    check_ledger(s).await;
}

/// The same (channel, client key) returns the first reservation, even with other lines; the
/// same key on another channel is another reservation.
pub async fn reserve_is_idempotent_on_the_client_key(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 10, 0, "1")]).await;
    let first = reserve_ok(s, request(WEB, "k", &[("A", 2)], &[("WH1", 0)])).await;
    let mut again = request(WEB, "k", &[("A", 7)], &[("WH1", 0)]);
    again.id = "other-id".into();
    assert_eq!(
        s.reserve(again).await.unwrap(),
        ReserveOutcome::Existing(first.clone()),
        "a repeated key returns what it made, unchanged"
    );
    assert_eq!(position(s, "A", "WH1").await.held, 2);
    let mut b2b = request(B2B, "k", &[("A", 1)], &[("WH1", 0)]);
    b2b.id = "r-b2b".into();
    reserve_ok(s, b2b).await;
    assert_eq!(position(s, "A", "WH1").await.held, 3);
    // After a transition the key still names it, in its current state.
    s.commit_reservation(&first.id, "web/1", 2_000)
        .await
        .unwrap()
        .unwrap();
    match s
        .reserve(request(WEB, "k", &[("A", 2)], &[("WH1", 0)]))
        .await
        .unwrap()
    {
        ReserveOutcome::Existing(r) => assert_eq!(r.state, ReservationState::Committed),
        other => panic!("expected Existing, got {other:?}"),
    }
    check_ledger(s).await;
}

/// The highest-priority location that fills the whole order first; else each line split by
/// priority.
pub async fn reserve_routes_one_location_first_else_splits(fx: &Fixture) {
    let s = fx.store();
    set_levels(
        s,
        vec![
            figure("A", "WH1", 5, 0, "1"),
            figure("A", "WH2", 10, 0, "1"),
            figure("B", "WH1", 0, 0, "1"),
            figure("B", "WH2", 3, 0, "1"),
        ],
    )
    .await;
    let feeds = [("WH1", 0), ("WH2", 0)];
    let r = reserve_ok(s, request(WEB, "one", &[("A", 4), ("B", 2)], &feeds)).await;
    assert_eq!(
        allocations(&r),
        [
            ("A".into(), "WH2".into(), 4, false),
            ("B".into(), "WH2".into(), 2, false)
        ],
        "WH1 cannot fill B: WH2 fills everything"
    );
    let r = reserve_ok(s, request(WEB, "split", &[("A", 8)], &feeds)).await;
    assert_eq!(
        allocations(&r),
        [
            ("A".into(), "WH1".into(), 5, false),
            ("A".into(), "WH2".into(), 3, false)
        ],
        "WH1 has 5, WH2 has 6 left: split by priority"
    );
    assert_eq!(position(s, "A", "WH1").await.held, 5);
    assert_eq!(position(s, "A", "WH2").await.held, 7);
    check_ledger(s).await;
}

/// A location gives a channel `max(0, on_hand − committed − held − buffer)`.
pub async fn reserve_respects_buffers(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 10, 1, "1")]).await;
    let out = s
        .reserve(request(WEB, "k1", &[("A", 8)], &[("WH1", 2)]))
        .await
        .unwrap();
    assert_eq!(
        out,
        ReserveOutcome::Short(vec![Shortage {
            sku: "A".into(),
            requested: 8,
            available: 7
        }])
    );
    reserve_ok(s, request(WEB, "k2", &[("A", 7)], &[("WH1", 2)])).await;
    let level = position(s, "A", "WH1").await;
    assert_eq!(
        level.on_hand - level.committed - level.held,
        2,
        "the buffer is left"
    );
    // Another channel without a buffer may take it.
    reserve_ok(s, request(B2B, "k3", &[("A", 2)], &[("WH1", 0)])).await;
    // A buffer larger than free stock gives nothing, never a negative amount.
    let out = s
        .reserve(request(WEB, "k4", &[("A", 1)], &[("WH1", 5)]))
        .await
        .unwrap();
    assert!(
        matches!(out, ReserveOutcome::Short(ref v) if v[0].available == 0),
        "{out:?}"
    );
    check_ledger(s).await;
}

/// Backorders take what free stock cannot, up to the channel's limit and never beyond the feeds'
/// incoming minus what is already backordered, at the first feed with incoming stock.
pub async fn backorders_are_limited_and_never_exceed_incoming(fx: &Fixture) {
    let s = fx.store();
    let mut wh2 = figure("A", "WH2", 0, 0, "1");
    wh2.incoming =
        json!([{ "quantity": 4, "eta": "2030-01-01" }, { "quantity": 2, "eta": "2030-02-01" }]);
    set_levels(s, vec![figure("A", "WH1", 2, 0, "1"), wh2]).await;
    let feeds = [("WH1", 0), ("WH2", 0)];
    let with_limit = |key: &str, q: i64, limit: Option<i64>| {
        let mut r = request(WEB, key, &[("A", q)], &feeds);
        r.backorder_limit = limit;
        r
    };
    let out = s.reserve(with_limit("none", 3, None)).await.unwrap();
    assert_eq!(
        out,
        ReserveOutcome::Short(vec![Shortage {
            sku: "A".into(),
            requested: 3,
            available: 2
        }]),
        "no limit, no backorders"
    );
    let out = s.reserve(with_limit("over", 6, Some(3))).await.unwrap();
    assert_eq!(
        out,
        ReserveOutcome::Short(vec![Shortage {
            sku: "A".into(),
            requested: 6,
            available: 5
        }]),
        "2 free + a limit of 3"
    );
    let r = reserve_ok(s, with_limit("ok", 5, Some(3))).await;
    assert_eq!(
        allocations(&r),
        [
            ("A".into(), "WH1".into(), 2, false),
            ("A".into(), "WH2".into(), 3, true)
        ]
    );
    let wh2 = position(s, "A", "WH2").await;
    assert_eq!((wh2.held, wh2.backordered), (0, 3));
    // 6 incoming, 3 backordered: at most 3 more, whatever the limit.
    let out = s.reserve(with_limit("beyond", 4, Some(100))).await.unwrap();
    assert_eq!(
        out,
        ReserveOutcome::Short(vec![Shortage {
            sku: "A".into(),
            requested: 4,
            available: 3
        }]),
        "never beyond incoming"
    );
    reserve_ok(s, with_limit("rest", 3, Some(100))).await;
    assert_eq!(position(s, "A", "WH2").await.backordered, 6);
    // Cancelling gives the allowance back.
    s.cancel_reservation(&r.id, 2_000).await.unwrap().unwrap();
    assert_eq!(position(s, "A", "WH2").await.backordered, 3);
    assert_eq!(position(s, "A", "WH1").await.held, 0);
    check_ledger(s).await;
}

/// An older figure changes nothing; a newer one replaces on_hand, committed, incoming, version.
/// Integers compare numerically, timestamps as strings.
pub async fn stale_figures_are_ignored(fx: &Fixture) {
    let s = fx.store();
    let out = set_levels(s, vec![figure("A", "WH1", 10, 1, "9")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 9
        }]
    );
    let out = set_levels(s, vec![figure("A", "WH1", 50, 0, "10")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 50
        }],
        "10 > 9 numerically"
    );
    let out = set_levels(s, vec![figure("A", "WH1", 3, 0, "8")]).await;
    assert_eq!(out, [LevelOutcome::Stale]);
    let level = position(s, "A", "WH1").await;
    assert_eq!((level.on_hand, level.version.as_deref()), (50, Some("10")));
    // Equal: not stale, nothing changes.
    let out = set_levels(s, vec![figure("A", "WH1", 50, 0, "10")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 50
        }]
    );

    let t = |on_hand, v: &str| figure("T", "WH1", on_hand, 0, v);
    set_levels(s, vec![t(5, "2024-05-01T10:00:00Z")]).await;
    assert_eq!(
        set_levels(s, vec![t(6, "2024-04-30T23:00:00Z")]).await,
        [LevelOutcome::Stale]
    );
    set_levels(s, vec![t(7, "2024-05-01T10:00:01Z")]).await;
    assert_eq!(position(s, "T", "WH1").await.on_hand, 7);
    // Not comparable: never stale.
    set_levels(s, vec![t(8, "abc")]).await;
    assert_eq!(position(s, "T", "WH1").await.on_hand, 8);
    // Within one call, in order.
    let out = set_levels(
        s,
        vec![figure("C", "WH1", 1, 0, "2"), figure("C", "WH1", 2, 0, "1")],
    )
    .await;
    assert_eq!(out[1], LevelOutcome::Stale);
    assert_eq!(position(s, "C", "WH1").await.on_hand, 1);
}

/// An accepted order's lines are released by the first figure newer than the acceptance, once:
/// an equal or older figure afterwards releases nothing, and `held` is lowered once.
pub async fn accepted_order_is_released_once_by_a_newer_figure(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 10, 0, "100")]).await;
    let r = reserve_ok(s, request(WEB, "k", &[("A", 3)], &[("WH1", 0)])).await;
    s.commit_reservation(&r.id, "web/1", 1_500)
        .await
        .unwrap()
        .unwrap();
    // Not accepted yet: a newer figure releases nothing.
    let out = set_levels(s, vec![figure("A", "WH1", 10, 0, "101")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 7
        }]
    );
    deliver_order(s, ERP, "web/1", Some("105"), 2_000).await;
    let accepted = s.reservation(&r.id).await.unwrap().unwrap();
    assert_eq!(
        (accepted.accepted_at, accepted.accepted_version.as_deref()),
        (Some(2_000), Some("105"))
    );
    // A figure from before the acceptance (delayed) must not release.
    let out = set_levels(s, vec![figure("A", "WH1", 10, 0, "104")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 7
        }]
    );
    // The acceptance's own version is not newer.
    let out = set_levels(s, vec![figure("A", "WH1", 10, 3, "105")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 4
        }]
    );
    assert_eq!(position(s, "A", "WH1").await.held, 3);
    let out = set_levels(s, vec![figure("A", "WH1", 10, 3, "106")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![(r.id.clone(), 3)],
            free: 7
        }]
    );
    let done = s.reservation(&r.id).await.unwrap().unwrap();
    assert_eq!(done.state, ReservationState::Released);
    assert!(done.lines.iter().all(|l| l.released_at.is_some()));
    // Again, equal and older and newer: nothing more.
    for v in ["106", "105", "107"] {
        let out = set_levels(s, vec![figure("A", "WH1", 10, 3, v)]).await;
        assert!(
            matches!(&out[0], LevelOutcome::Stale)
                || matches!(&out[0], LevelOutcome::Applied { released, free: 7 } if released.is_empty()),
            "version {v}: {out:?}"
        );
    }
    assert_eq!(position(s, "A", "WH1").await.held, 0);
    // Released is final.
    assert_eq!(
        s.cancel_reservation(&r.id, 9_000).await.unwrap(),
        Err(TransitionError::WrongState(ReservationState::Released))
    );
    check_ledger(s).await;
}

/// A reservation split over two locations is released location by location, and becomes
/// `Released` only when the last line is; versions that cannot be compared fall back to time.
pub async fn release_falls_back_to_time_when_versions_are_not_comparable(fx: &Fixture) {
    let s = fx.store();
    set_levels(
        s,
        vec![
            figure("A", "WH1", 2, 0, "h-a"),
            figure("A", "WH2", 3, 0, "h-b"),
        ],
    )
    .await;
    let r = reserve_ok(s, request(WEB, "k", &[("A", 4)], &[("WH1", 0), ("WH2", 0)])).await;
    assert_eq!(r.lines.len(), 2);
    s.commit_reservation(&r.id, "web/7", 1_500)
        .await
        .unwrap()
        .unwrap();
    deliver_order(s, ERP, "web/7", Some("etag-xyz"), 10_000).await;
    let at = |mut f: LevelUpdate, captured_at| {
        f.captured_at = captured_at;
        f
    };
    // Grace is 60 s: captured 30 s after acceptance, not yet.
    let out = set_levels(s, vec![at(figure("A", "WH1", 2, 2, "h-c"), 40_000)]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: -2
        }]
    );
    let out = set_levels(s, vec![at(figure("A", "WH1", 2, 2, "h-d"), 70_000)]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![(r.id.clone(), 2)],
            free: 0
        }]
    );
    assert_eq!(
        s.reservation(&r.id).await.unwrap().unwrap().state,
        ReservationState::Committed,
        "WH2's line is still held"
    );
    // The same figure again (equal version) releases nothing, even later.
    let out = set_levels(s, vec![at(figure("A", "WH2", 3, 0, "h-b"), 90_000)]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 1
        }]
    );
    let out = set_levels(s, vec![at(figure("A", "WH2", 3, 2, "h-e"), 90_000)]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![(r.id.clone(), 2)],
            free: 1
        }]
    );
    assert_eq!(
        s.reservation(&r.id).await.unwrap().unwrap().state,
        ReservationState::Released
    );

    // Acceptance without any version: time decides too.
    let r2 = reserve_ok(s, request(WEB, "k2", &[("A", 1)], &[("WH2", 0)])).await;
    s.commit_reservation(&r2.id, "web/8", 1_500)
        .await
        .unwrap()
        .unwrap();
    deliver_order(s, ERP, "web/8", None, 10_000).await;
    let out = set_levels(s, vec![at(figure("A", "WH2", 3, 3, "h-f"), 70_000)]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![(r2.id.clone(), 1)],
            free: 0
        }]
    );
    check_ledger(s).await;
}

/// Commit, cancel, expire: the allowed transitions, idempotent repeats and refusals.
pub async fn reservation_transitions_and_wrong_states(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 100, 0, "1")]).await;
    let feeds = [("WH1", 0)];
    let a = reserve_ok(s, request(WEB, "a", &[("A", 1)], &feeds)).await;
    let b = reserve_ok(s, request(WEB, "b", &[("A", 2)], &feeds)).await;
    let c = reserve_ok(s, request(WEB, "c", &[("A", 4)], &feeds)).await;

    assert_eq!(
        s.commit_reservation("nope", "web/0", 2_000).await.unwrap(),
        Err(TransitionError::NotFound)
    );
    assert_eq!(
        s.cancel_reservation("nope", 2_000).await.unwrap(),
        Err(TransitionError::NotFound)
    );
    let committed = s
        .commit_reservation(&a.id, "web/1", 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(committed.state, ReservationState::Committed);
    assert_eq!(committed.order.as_deref(), Some("web/1"));
    assert_eq!(committed.expires_at, None, "no expiry once committed");
    assert_eq!(committed.committed_at, Some(2_000));
    assert_eq!(
        s.commit_reservation(&a.id, "web/1", 3_000).await.unwrap(),
        Ok(committed.clone()),
        "same order: a no-op"
    );
    assert_eq!(
        s.commit_reservation(&a.id, "web/2", 3_000).await.unwrap(),
        Err(TransitionError::WrongState(ReservationState::Committed))
    );
    assert_eq!(position(s, "A", "WH1").await.held, 7);

    let cancelled = s.cancel_reservation(&b.id, 4_000).await.unwrap().unwrap();
    assert_eq!(cancelled.state, ReservationState::Cancelled);
    assert_eq!(cancelled.ended_at, Some(4_000));
    assert!(cancelled.lines.iter().all(|l| l.released_at == Some(4_000)));
    assert_eq!(position(s, "A", "WH1").await.held, 5);
    assert_eq!(
        s.cancel_reservation(&b.id, 5_000).await.unwrap(),
        Ok(cancelled),
        "cancelling again: a no-op"
    );
    assert_eq!(position(s, "A", "WH1").await.held, 5, "held lowered once");
    assert_eq!(
        s.commit_reservation(&b.id, "web/3", 5_000).await.unwrap(),
        Err(TransitionError::WrongState(ReservationState::Cancelled))
    );
    // A committed reservation can be cancelled too.
    let a2 = s.cancel_reservation(&a.id, 6_000).await.unwrap().unwrap();
    assert_eq!(a2.state, ReservationState::Cancelled);
    assert_eq!(position(s, "A", "WH1").await.held, 4);

    let expired = s.expire_reservations(61_000).await.unwrap();
    assert_eq!(
        expired.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [c.id.as_str()]
    );
    assert_eq!(expired[0].state, ReservationState::Expired);
    assert_eq!(position(s, "A", "WH1").await.held, 0);
    assert_eq!(
        s.cancel_reservation(&c.id, 62_000).await.unwrap(),
        Err(TransitionError::WrongState(ReservationState::Expired))
    );
    assert_eq!(
        s.commit_reservation(&c.id, "web/4", 62_000).await.unwrap(),
        Err(TransitionError::WrongState(ReservationState::Expired))
    );

    // Listings: newest first, by state, by SKU.
    let ids = |rs: Vec<Reservation>| rs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let mut later = request(WEB, "d", &[], &feeds);
    later.now = 7_000;
    reserve_ok(s, later).await;
    assert_eq!(
        ids(s.reservations(None, None, 10).await.unwrap()),
        ["r-d", "r-c", "r-b", "r-a"]
    );
    assert_eq!(
        ids(s.reservations(None, None, 2).await.unwrap()),
        ["r-d", "r-c"]
    );
    assert_eq!(
        ids(s
            .reservations(Some(ReservationState::Cancelled), None, 10)
            .await
            .unwrap()),
        ["r-b", "r-a"]
    );
    assert_eq!(
        ids(s.reservations(None, Some("A"), 10).await.unwrap()),
        ["r-c", "r-b", "r-a"]
    );
    assert!(s
        .reservations(Some(ReservationState::Held), Some("A"), 10)
        .await
        .unwrap()
        .is_empty());
    check_ledger(s).await;
}

/// Only held reservations whose time has come expire, each exactly once; `next_expiry` follows.
pub async fn expiry_returns_each_reservation_once(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 100, 0, "1")]).await;
    assert_eq!(s.next_expiry().await.unwrap(), None);
    for (key, expires_at) in [("a", 5_000), ("b", 9_000), ("c", 7_000), ("d", 5_000)] {
        let mut r = request(WEB, key, &[("A", 1)], &[("WH1", 0)]);
        r.expires_at = expires_at;
        reserve_ok(s, r).await;
    }
    s.commit_reservation("r-d", "web/d", 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.next_expiry().await.unwrap(), Some(5_000));
    assert!(s.expire_reservations(4_999).await.unwrap().is_empty());
    let first = s.expire_reservations(7_000).await.unwrap();
    let mut ids: Vec<&str> = first.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["r-a", "r-c"], "the committed one never expires");
    assert!(first
        .iter()
        .all(|r| r.state == ReservationState::Expired && r.ended_at == Some(7_000)));
    assert!(
        s.expire_reservations(7_000).await.unwrap().is_empty(),
        "once"
    );
    assert_eq!(s.next_expiry().await.unwrap(), Some(9_000));
    let second = s.expire_reservations(100_000).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, "r-b");
    assert_eq!(s.next_expiry().await.unwrap(), None);
    assert_eq!(
        position(s, "A", "WH1").await.held,
        1,
        "only the committed one"
    );
    check_ledger(s).await;
}

/// Reservations and figures mark their SKUs dirty, oldest mark first; a planner's clean (via
/// `apply`) clears a mark only if it was not set again since. `apply` applies figures like
/// `update_levels`, in the same transaction.
pub async fn dirty_marks_and_generation_guarded_clean(fx: &Fixture) {
    let s = fx.store();
    assert!(s.dirty_skus(10).await.unwrap().is_empty());
    set_levels(s, vec![figure("A", "WH1", 10, 0, "1")]).await;
    // A reservation without lines marks nothing.
    reserve_ok(s, request(WEB, "k", &[], &[])).await;
    let mut r = request(WEB, "k2", &[("A", 1)], &[("WH1", 0)]);
    r.now = 2_000;
    reserve_ok(s, r).await;
    let dirty = s.dirty_skus(10).await.unwrap();
    assert_eq!(
        dirty.iter().map(|d| d.sku.as_str()).collect::<Vec<_>>(),
        ["A"]
    );
    let seen = dirty[0].clone();
    assert_eq!(s.dirty_skus(0).await.unwrap(), []);

    // Marked again after the planner read it: the clean must not clear it.
    let mut f = figure("C", "WH1", 1, 0, "1");
    f.captured_at = 3_000;
    s.update_levels(vec![f], 0, 3_000).await.unwrap();
    let mut r = request(WEB, "k3", &[("A", 1)], &[("WH1", 0)]);
    r.now = 4_000;
    reserve_ok(s, r).await;
    let now = s.dirty_skus(10).await.unwrap();
    assert_eq!(
        now.iter().map(|d| d.sku.as_str()).collect::<Vec<_>>(),
        ["A", "C"],
        "oldest mark first"
    );
    assert_ne!(
        now[0].generation, seen.generation,
        "a new mark, a new generation"
    );
    s.apply(
        ProcessBatch {
            clean: vec![seen],
            ..ProcessBatch::default()
        },
        5_000,
    )
    .await
    .unwrap();
    assert_eq!(
        s.dirty_skus(10).await.unwrap().len(),
        2,
        "A was marked again: kept"
    );
    s.apply(
        ProcessBatch {
            clean: now.clone(),
            ..ProcessBatch::default()
        },
        5_000,
    )
    .await
    .unwrap();
    assert!(s.dirty_skus(10).await.unwrap().is_empty());

    // Figures in a processing batch: applied, stale ones ignored, the SKU marked again even if
    // the same batch cleans its old mark.
    let mut r = request(WEB, "k4", &[("D", 1)], &[("WH1", 0)]);
    r.now = 6_000;
    assert!(matches!(
        s.reserve(r).await.unwrap(),
        ReserveOutcome::Short(_)
    ));
    s.update_levels(vec![figure("D", "WH1", 1, 0, "5")], 0, 6_000)
        .await
        .unwrap();
    let old = s.dirty_skus(10).await.unwrap();
    s.apply(
        ProcessBatch {
            levels: vec![figure("D", "WH1", 9, 0, "6"), figure("E", "WH1", 9, 0, "1")],
            clean: old,
            ..ProcessBatch::default()
        },
        7_000,
    )
    .await
    .unwrap();
    assert_eq!(position(s, "D", "WH1").await.on_hand, 9);
    assert_eq!(
        s.dirty_skus(10)
            .await
            .unwrap()
            .iter()
            .map(|d| d.sku.as_str())
            .collect::<Vec<_>>(),
        ["D", "E"]
    );
    s.apply(
        ProcessBatch {
            levels: vec![figure("D", "WH1", 1, 0, "4")],
            ..ProcessBatch::default()
        },
        8_000,
    )
    .await
    .unwrap();
    assert_eq!(
        position(s, "D", "WH1").await.on_hand,
        9,
        "stale in a batch too"
    );
}

/// A delivered order marks accepted only the active reservations of that order sourced from
/// the destination it was delivered to; other kinds and other orders mark nothing.
pub async fn delivered_order_marks_acceptance_for_its_source_only(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 100, 0, "1")]).await;
    let feeds = [("WH1", 0)];
    let ours = reserve_ok(s, request(WEB, "ours", &[("A", 1)], &feeds)).await;
    let mut other_source = request(WEB, "theirs", &[("A", 1)], &feeds);
    other_source.source = "erp2".into();
    let theirs = reserve_ok(s, other_source).await;
    let other_order = reserve_ok(s, request(WEB, "other", &[("A", 1)], &feeds)).await;
    let held = reserve_ok(s, request(WEB, "held", &[("A", 1)], &feeds)).await;
    s.commit_reservation(&ours.id, "web/1", 1_100)
        .await
        .unwrap()
        .unwrap();
    s.commit_reservation(&theirs.id, "web/1", 1_100)
        .await
        .unwrap()
        .unwrap();
    s.commit_reservation(&other_order.id, "web/2", 1_100)
        .await
        .unwrap()
        .unwrap();

    // Another kind with the same key at the ERP: nothing.
    enqueue(s, vec![item(ERP, Kind::Customer, "web/1", "h")], 1_200).await;
    let c = claim(s, ERP, 10, 1_200).await;
    settle(s, vec![delivered(&c[0], None, 1_200)]).await;
    // The order to another endpoint: nothing either.
    deliver_order(s, SHOP, "web/1", Some("1"), 1_300).await;
    assert_eq!(
        s.reservation(&ours.id).await.unwrap().unwrap().accepted_at,
        None
    );

    deliver_order(s, ERP, "web/1", Some("42"), 2_000).await;
    let get = |id: String| async move { s.reservation(&id).await.unwrap().unwrap() };
    let r = get(ours.id.clone()).await;
    assert_eq!(
        (r.accepted_at, r.accepted_version.as_deref()),
        (Some(2_000), Some("42"))
    );
    assert_eq!(
        get(theirs.id.clone()).await.accepted_at,
        None,
        "another source"
    );
    assert_eq!(
        get(other_order.id.clone()).await.accepted_at,
        None,
        "another order"
    );
    assert_eq!(
        get(held.id.clone()).await.accepted_at,
        None,
        "not committed to the order"
    );
    // A later delivery of the same order (an update) keeps the first acceptance.
    deliver_order(s, ERP, "web/1", Some("50"), 3_000).await;
    let r = get(ours.id.clone()).await;
    assert_eq!(
        (r.accepted_at, r.accepted_version.as_deref()),
        (Some(2_000), Some("42"))
    );
    // Committed only after the ERP accepted the order: it takes over the first acceptance.
    s.commit_reservation(&held.id, "web/1", 3_050)
        .await
        .unwrap()
        .unwrap();
    let late = get(held.id.clone()).await;
    assert_eq!(
        (late.accepted_at, late.accepted_version.as_deref()),
        (Some(2_000), Some("42")),
        "a commit after the acceptance must learn it"
    );
    // A cancelled reservation is never marked.
    s.cancel_reservation(&other_order.id, 3_100)
        .await
        .unwrap()
        .unwrap();
    deliver_order(s, ERP, "web/2", Some("60"), 3_200).await;
    assert_eq!(get(other_order.id.clone()).await.accepted_at, None);
    check_ledger(s).await;
}

/// 64 concurrent reservations of one unit against 10 on hand: exactly 10 succeed.
pub async fn concurrent_reservations_never_oversell(fx: &Fixture) {
    set_levels(fx.store(), vec![figure("A", "WH1", 10, 0, "1")]).await;
    let mut tasks = Vec::new();
    for n in 0..64 {
        let store = Arc::clone(&fx.store);
        tasks.push(tokio::spawn(async move {
            let req = request(
                if n % 2 == 0 { WEB } else { B2B },
                &format!("k{n}"),
                &[("A", 1)],
                &[("WH1", 0)],
            );
            store.reserve(req).await
        }));
    }
    let mut reserved = 0;
    for t in tasks {
        match t.await.expect("task panicked").expect("reserve failed") {
            ReserveOutcome::Reserved(_) => reserved += 1,
            ReserveOutcome::Short(v) => assert_eq!(v[0].available, 0),
            ReserveOutcome::Existing(r) => panic!("unexpected Existing {r:?}"),
        }
    }
    assert_eq!(reserved, 10);
    let level = position(fx.store(), "A", "WH1").await;
    assert_eq!(
        (level.held, level.on_hand - level.committed - level.held),
        (10, 0)
    );
    check_ledger(fx.store()).await;
}

/// `entities_of_kind` returns only that kind, in key order, paged strictly after `after`.
pub async fn entities_of_kind_pages_by_key(fx: &Fixture) {
    let store = fx.store();
    let write = |kind: Kind, key: &str| EntityWrite {
        kind,
        key: key.into(),
        state: json!({"key": key}),
        hash: format!("h-{key}"),
        endpoint: ERP.into(),
        version: "1".into(),
        at: 5,
    };
    let batch = ProcessBatch {
        entities: vec![
            write(Kind::Price, "default:B"),
            write(Kind::Price, "default:A"),
            write(Kind::Customer, "a@b.co"),
            write(Kind::Price, "vip:A"),
        ],
        ..ProcessBatch::default()
    };
    store.apply(batch, 5).await.unwrap();
    let keys = |v: Vec<crate::Entity>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
    let first = store.entities_of_kind(Kind::Price, None, 2).await.unwrap();
    assert_eq!(
        first[0].state,
        json!({"key": "default:A"}),
        "state is returned"
    );
    assert_eq!(first[0].hash, "h-default:A");
    assert_eq!(keys(first), ["default:A", "default:B"], "first page by key");
    let next = store
        .entities_of_kind(Kind::Price, Some("default:B"), 2)
        .await
        .unwrap();
    assert_eq!(keys(next), ["vip:A"], "next page strictly after the cursor");
    let rest = store
        .entities_of_kind(Kind::Price, Some("vip:A"), 2)
        .await
        .unwrap();
    assert!(rest.is_empty(), "past the end");
    let customers = store
        .entities_of_kind(Kind::Customer, None, 10)
        .await
        .unwrap();
    assert_eq!(keys(customers), ["a@b.co"], "only the asked kind");
}
