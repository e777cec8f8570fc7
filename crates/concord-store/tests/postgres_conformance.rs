//! Runs the store conformance suite against [`PgStore`] on the PostgreSQL server named by
//! `CONCORD_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:55499/postgres`; start one
//! with `scripts/postgres/start.sh`), each check on a fresh schema of its own (dropped
//! afterwards), plus the checks only a shared server can have (migrations once under several
//! instances, dedupe and one-in-flight across two handles).
//!
//! Without the variable every check skips loudly on a workstation and fails under CI
//! (`concord_testkit::real::missing`).

use concord_store::conformance::Fixture;
use concord_store::{Capture, IngestOutcome, Store};
use std::sync::Arc;

mod support;
use support::pg::{
    fresh_schema as schema_named, raw_client, store_in, two_handles, url, SchemaGuard,
};

fn fresh_schema() -> String {
    schema_named("concord_test")
}

/// Makes journaling a capture with this external id fail, by a trigger in the check's schema.
async fn poison(url: &str, schema: &str, external_id: &str) {
    let client = raw_client(url, schema).await;
    let quoted = external_id.replace('\'', "''");
    client
        .batch_execute(&format!(
            "CREATE FUNCTION fault_injection() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.external_id = '{quoted}' THEN RAISE EXCEPTION 'injected fault'; END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER fault_injection BEFORE INSERT ON journal
                 FOR EACH ROW EXECUTE FUNCTION fault_injection();"
        ))
        .await
        .expect("install the fault trigger");
}

async fn postgres_fixture() -> Option<Fixture> {
    let url = url()?;
    let schema = fresh_schema();
    let store = store_in(&url, &schema).await;
    concord_testkit::real::ran("postgres_conformance");
    let guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    Some(
        Fixture::new(Arc::new(store), guard).with_fault_injector(Box::new(move |external_id| {
            let (url, schema) = (url.clone(), schema.clone());
            Box::pin(async move { poison(&url, &schema, &external_id).await })
        })),
    )
}

concord_store::store_conformance_tests!(optional postgres_fixture);

fn capture(id: &str, version: &str) -> Capture {
    Capture {
        endpoint: "shop".into(),
        kind: concord_core::Kind::Product,
        external_id: id.into(),
        version: version.into(),
        payload: serde_json::json!({ "id": id }),
        received_at: 1,
        rejected: None,
    }
}

/// Several instances starting together on one empty schema: each migration runs once, every
/// instance comes up, and the data one writes the others see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once_and_share_data() {
    let Some(url) = url() else { return };
    let schema = fresh_schema();
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let starts = (0..4).map(|_| {
        let (url, schema) = (url.clone(), schema.clone());
        tokio::spawn(async move { store_in(&url, &schema).await })
    });
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.expect("start task"));
    }
    concord_testkit::real::ran("postgres_conformance");
    assert!(
        !stores[0].is_exclusive(),
        "a shared database is not exclusive"
    );
    let client = raw_client(&url, &schema).await;
    let rows = client
        .query(
            "SELECT version, COUNT(*) FROM schema_migrations GROUP BY version ORDER BY version",
            &[],
        )
        .await
        .expect("read schema_migrations");
    let versions: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        versions,
        (1..=15).map(|v| (v, 1)).collect::<Vec<_>>(),
        "every migration recorded exactly once"
    );
    stores[0]
        .ingest(vec![capture("p1", "1")], None)
        .await
        .expect("ingest");
    assert_eq!(
        stores[3]
            .journal(None, None, None, 10)
            .await
            .expect("journal")
            .len(),
        1,
        "another handle sees it"
    );
    drop(client);
    for s in &stores {
        s.close();
    }
}

/// The inbox dedupe holds across two handles ingesting the same change at the same time: it
/// is journaled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_holds_across_two_handles() {
    let Some((a, b, _guard)) = two_handles("concord_test").await else {
        return;
    };
    concord_testkit::real::ran("postgres_conformance");
    for round in 0..20 {
        let version = round.to_string();
        let tasks = [
            Arc::clone(&a),
            Arc::clone(&b),
            Arc::clone(&a),
            Arc::clone(&b),
        ]
        .map(|s| {
            let version = version.clone();
            tokio::spawn(async move { s.ingest(vec![capture("p1", &version)], None).await })
        });
        let mut stored = 0;
        for t in tasks {
            let out = t.await.expect("task").expect("ingest");
            stored += out
                .iter()
                .filter(|o| matches!(o, IngestOutcome::Stored(_)))
                .count();
        }
        assert_eq!(
            stored, 1,
            "round {round}: one of four concurrent ingests stores it"
        );
    }
    assert_eq!(
        a.journal(None, None, None, 100)
            .await
            .expect("journal")
            .len(),
        20
    );
}

/// Two handles claiming one destination at the same time never have two items of a key in
/// flight, and never claim one item twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_item_in_flight_per_key_across_two_handles() {
    use concord_store::{NewItem, ProcessBatch};
    let Some((a, b, _guard)) = two_handles("concord_test").await else {
        return;
    };
    concord_testkit::real::ran("postgres_conformance");
    // Five keys, four command items each (commands never coalesce): 20 items.
    let items = (0..4)
        .flat_map(|n| {
            (0..5).map(move |k| NewItem {
                dest: "erp".into(),
                kind: concord_core::Kind::Order,
                key: format!("web/{k}"),
                op: "update".into(),
                payload: serde_json::json!({ "n": n }),
                hash: format!("h{n}"),
                flow: "orders".into(),
                journal_id: None,
                captured_at: 1,
                coalesce: false,
                not_before: 0,
                waiting_on: Vec::new(),
            })
        })
        .collect();
    a.apply(
        ProcessBatch {
            items,
            ..ProcessBatch::default()
        },
        1,
    )
    .await
    .expect("enqueue");
    let claims = [Arc::clone(&a), Arc::clone(&b)]
        .map(|s| tokio::spawn(async move { s.claim("erp", 100, 10, 1_000).await }));
    let mut keys = Vec::new();
    let mut ids = Vec::new();
    for c in claims {
        for claimed in c.await.expect("task").expect("claim") {
            keys.push(claimed.item.key.clone());
            ids.push(claimed.item.id);
        }
    }
    keys.sort();
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(keys, unique, "no key in flight twice: {keys:?}");
    assert_eq!(
        keys.len(),
        5,
        "the first item of every key was claimed by one of them"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
}

/// Four dispatchers on two handles drain one destination concurrently: no key is ever in flight
/// twice, every key's items are delivered in enqueue order, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_dispatchers_on_two_handles_keep_per_key_order() {
    use concord_store::{NewItem, ProcessBatch, Settlement};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;
    let Some((a, b, _guard)) = two_handles("concord_test").await else {
        return;
    };
    concord_testkit::real::ran("postgres_conformance");
    const KEYS: usize = 10;
    const PER_KEY: i64 = 5;
    let items = (0..PER_KEY)
        .flat_map(|n| {
            (0..KEYS).map(move |k| NewItem {
                dest: "erp".into(),
                kind: concord_core::Kind::Product,
                key: format!("SKU-{k}"),
                op: "update".into(),
                payload: serde_json::json!({ "n": n }),
                hash: format!("h{n}"),
                flow: "products".into(),
                journal_id: None,
                captured_at: 1,
                coalesce: false,
                not_before: 0,
                waiting_on: Vec::new(),
            })
        })
        .collect();
    a.apply(
        ProcessBatch {
            items,
            ..ProcessBatch::default()
        },
        1,
    )
    .await
    .expect("enqueue");
    let in_flight = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let delivered = Arc::new(Mutex::new(BTreeMap::<String, Vec<i64>>::new()));
    let total = KEYS * PER_KEY as usize;
    let workers = [&a, &b, &a, &b].map(|store| {
        let (store, in_flight, delivered) = (
            Arc::clone(store),
            Arc::clone(&in_flight),
            Arc::clone(&delivered),
        );
        tokio::spawn(async move {
            loop {
                let done: usize = delivered.lock().expect("lock").values().map(Vec::len).sum();
                if done >= total {
                    return;
                }
                let claimed = store.claim("erp", 3, 10, 1_000_000).await.expect("claim");
                if claimed.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                let mut settlements = Vec::new();
                for c in &claimed {
                    assert!(
                        in_flight.lock().expect("lock").insert(c.item.key.clone()),
                        "{} claimed while in flight elsewhere",
                        c.item.key
                    );
                    let n = c.item.payload["n"].as_i64().expect("n");
                    delivered
                        .lock()
                        .expect("lock")
                        .entry(c.item.key.clone())
                        .or_default()
                        .push(n);
                    settlements.push(Settlement::Delivered {
                        id: c.item.id,
                        token: c.token,
                        external_id: None,
                        version: None,
                        at: 20,
                    });
                }
                // Out of the in-flight set before the settlement commits: the key is still in
                // flight in the store until then, so nobody can claim it in between.
                for c in &claimed {
                    in_flight.lock().expect("lock").remove(&c.item.key);
                }
                let applied = store.settle(settlements).await.expect("settle");
                assert_eq!(applied, claimed.len(), "every settlement applied once");
            }
        })
    });
    for w in workers {
        w.await.expect("worker");
    }
    let delivered = delivered.lock().expect("lock").clone();
    assert_eq!(delivered.len(), KEYS);
    for (key, ns) in delivered {
        assert_eq!(
            ns,
            (0..PER_KEY).collect::<Vec<_>>(),
            "{key} in enqueue order"
        );
    }
    let stats = a.stats().await.expect("stats");
    assert_eq!(stats.queues[0].done, total as u64);
    assert_eq!(stats.queues[0].pending + stats.queues[0].inflight, 0);
}

/// An item parked on a customer by one instance while another records that customer's xref:
/// whichever commits first, the item never stays parked with its dependency satisfied (the
/// dependency lock of `postgres/enqueue.rs`). Without that lock this race leaves orders parked
/// for good after a restart under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_item_parked_while_its_xref_arrives_on_another_instance_is_never_left_parked() {
    use concord_core::Kind;
    use concord_store::{ItemState, NewItem, ProcessBatch, Xref};
    let Some((a, b, _guard)) = two_handles("concord_test").await else {
        return;
    };
    const ROUNDS: usize = 60;
    for round in 0..ROUNDS {
        let customer = format!("c{round}@example.com");
        let order = NewItem {
            dest: "erp".into(),
            kind: Kind::Order,
            key: format!("o{round}"),
            op: "upsert".into(),
            payload: serde_json::json!({"customer": customer}),
            hash: format!("h{round}"),
            flow: "orders".into(),
            journal_id: None,
            captured_at: 1,
            waiting_on: vec![(Kind::Customer, customer.clone())],
            coalesce: false,
            not_before: 0,
        };
        let park = {
            let a = a.clone();
            tokio::spawn(async move {
                a.apply(
                    ProcessBatch {
                        items: vec![order],
                        ..ProcessBatch::default()
                    },
                    10,
                )
                .await
            })
        };
        let known = {
            let b = b.clone();
            let customer = customer.clone();
            tokio::spawn(async move {
                b.apply(
                    ProcessBatch {
                        xrefs: vec![Xref {
                            endpoint: "erp".into(),
                            kind: Kind::Customer,
                            external_id: format!("party-{customer}"),
                            key: customer,
                        }],
                        ..ProcessBatch::default()
                    },
                    10,
                )
                .await
            })
        };
        park.await.expect("join").expect("apply the order");
        known.await.expect("join").expect("apply the xref");
    }
    let parked = a
        .items(Some("erp"), ItemState::Parked, 1_000)
        .await
        .expect("parked items");
    assert!(
        parked.is_empty(),
        "{} of {ROUNDS} orders stayed parked although their customer's xref exists: {:?}",
        parked.len(),
        parked.iter().map(|i| &i.key).collect::<Vec<_>>()
    );
    let pending = a
        .items(Some("erp"), ItemState::Pending, 1_000)
        .await
        .expect("pending items");
    assert_eq!(pending.len(), ROUNDS, "every order deliverable");
}

/// The maintained stats counters stay exact with two handles (two instances) writing at once:
/// per handle, 4 tasks ingest (new and rejected captures), process the journal with outbox
/// items, claim and settle (done, dead, retry), recover leases and call `stats` (which folds
/// the deltas when there are many) — all concurrently. Afterwards both handles' `stats` equal
/// fresh counts of the rows, and the figures add up to what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counters_stay_exact_under_two_concurrent_handles() {
    let Some((a, b, _guard)) = two_handles("concord_test").await else {
        return;
    };
    concord_testkit::real::ran("postgres_conformance");
    let mut tasks = Vec::new();
    for (h, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            for round in 0..25i64 {
                let mut bad = capture(&format!("bad-{h}-{round}"), "1");
                bad.rejected = Some("invalid".into());
                store
                    .ingest(
                        vec![
                            capture(&format!("p-{h}-{round}"), "1"),
                            capture(&format!("q-{h}-{round}"), "1"),
                            bad,
                        ],
                        None,
                    )
                    .await
                    .expect("ingest");
                let pending = store.pending_journal(4).await.expect("pending journal");
                let items = pending
                    .iter()
                    .map(|e| concord_store::NewItem {
                        dest: ["erp", "shop"][(e.id % 2) as usize].into(),
                        kind: concord_core::Kind::Order,
                        key: format!("o-{}", e.id),
                        op: "create".into(),
                        payload: serde_json::json!({ "id": e.id }),
                        hash: format!("h{}", e.id),
                        flow: "orders".into(),
                        journal_id: Some(e.id),
                        captured_at: round,
                        waiting_on: Vec::new(),
                        coalesce: false,
                        not_before: 0,
                    })
                    .collect();
                let journal = pending
                    .iter()
                    .map(|e| (e.id, concord_store::JournalStatus::Processed, None, None))
                    .collect();
                // Two tasks may process the same entry: both updates count exactly once each.
                store
                    .apply(
                        concord_store::ProcessBatch {
                            journal,
                            items,
                            ..Default::default()
                        },
                        1_000 + round,
                    )
                    .await
                    .expect("apply");
                let dest = ["erp", "shop"][(round % 2) as usize];
                let claimed = store.claim(dest, 3, 10_000, 70_000).await.expect("claim");
                let outcomes = claimed
                    .iter()
                    .enumerate()
                    .map(|(i, c)| match (i + h) % 3 {
                        0 => concord_store::Settlement::Delivered {
                            id: c.item.id,
                            token: c.token,
                            external_id: None,
                            version: None,
                            at: 2_000,
                        },
                        1 => concord_store::Settlement::Dead {
                            id: c.item.id,
                            token: c.token,
                            reason: "refused".into(),
                            at: 2_000,
                        },
                        _ => concord_store::Settlement::Retry {
                            id: c.item.id,
                            token: c.token,
                            next_at: 2_000,
                            error: "timeout".into(),
                            count: true,
                        },
                    })
                    .collect();
                store.settle(outcomes).await.expect("settle");
                if round % 5 == 4 {
                    store.recover_expired(i64::MAX / 2).await.expect("recover");
                }
                store.stats().await.expect("stats while writing");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    for store in [&a, &b] {
        let maintained = store.stats().await.expect("stats");
        let fresh = store.recount_stats().await.expect("recount_stats");
        assert_eq!(
            maintained, fresh,
            "counters equal the rows after concurrent writes"
        );
    }
    let st = a.stats().await.expect("stats");
    assert_eq!(st.journal_total, 4 * 25 * 3);
    assert_eq!(st.journal_rejected, 4 * 25);
    let items: u64 = st
        .queues
        .iter()
        .map(|q| q.pending + q.inflight + q.parked + q.done + q.dead)
        .sum();
    assert!(
        items > 0 && st.queues.iter().any(|q| q.done > 0 && q.dead > 0),
        "{st:?}"
    );
}
