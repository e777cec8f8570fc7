//! Drift reconciliation end to end on the sandbox (issue 16): a real hub (engine, SQLite
//! store, HTTP) keeping a sandbox ERP and storefront in agreement. Drift is made behind the
//! hub's back — stock edited in the store, a product deleted there, a price altered there, an
//! ERP figure changed without a change event — while another change is in flight; `reconcile`
//! reports exactly those keys, `heal` puts them right through the outbox, and the next run
//! reports nothing.

mod support;

use concord_core::reconcile::Drift;
use concord_engine::runtime::reconcile::{Check, ReconcileRun};
use concord_store::Store;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use support::*;

const SECRET: &str = "reconcile-secret";
const VIEWER: &str = "viewer-token-reconcile-0123456789abcdef0123";
const OPERATOR: &str = "operator-token-reconcile-0123456789abcdef01";

fn sha(t: &str) -> String {
    concord_engine::config::access::token_hash(t)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
const SKUS: usize = 6;

fn config(head: &str, shop: &str) -> String {
    format!(
        r#"{head}
{shop}

[[flows]]
name = "products"
kind = "product"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]

[[flows]]
name = "prices"
kind = "price"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]

[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]

[inventory]
source = "erp"

[inventory.channels.web]
locations = ["WH1"]
stock_location = "WH1"

[alerts]
interval = "50ms"

[[alerts.rules]]
name = "drifting"
condition = "drift"
above = 0

[[admin.tokens]]
name = "watcher"
role = "viewer"
sha256 = "{v}"

[[admin.tokens]]
name = "ops"
role = "operator"
sha256 = "{o}"
"#,
        v = sha(VIEWER),
        o = sha(OPERATOR),
    )
}

/// Every drifted key of a run as `(flow, check, key, drift label)`.
fn drifted(run: &ReconcileRun) -> BTreeSet<(String, Check, String, &'static str)> {
    run.results
        .iter()
        .flat_map(|r| {
            r.comparison
                .drifted
                .iter()
                .map(|d| (r.flow.clone(), r.check, d.key.clone(), d.drift.label()))
        })
        .collect()
}

async fn queues_empty(hub: &Hub) -> bool {
    let s = hub.store.stats().await.expect("stats");
    s.journal_pending == 0
        && s.queues
            .iter()
            .all(|q| q.pending + q.inflight + q.parked == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconcile_reports_exactly_the_drift_heals_it_and_then_reports_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, addr, base) = hub_listener().await;
    let erp = start_erp(&base, SECRET, Default::default()).await;
    let shop = start_shop(&base, SECRET, "web", None).await;
    let text = config(
        &config_head(dir.path(), addr, &erp.base_url(), SECRET),
        &shop_endpoint("web", &shop.base_url(), SECRET),
    );
    let hub = Hub::start(listener, &text, dir.path()).await;
    erp.seed(SKUS, &["WH1"], 10).expect("seed");
    wait_until(
        "the store has every product, price and figure",
        DEADLINE,
        async || {
            (1..=SKUS).all(|i| {
                let sku = format!("SKU-{i:04}");
                shop.inventory(&sku).get("WH1") == Some(&10)
                    && shop.price("default", &sku).is_some()
            }) && queues_empty(&hub).await
        },
    )
    .await;

    // A consistent system: nothing drifted, every check ran.
    let run = hub
        .engine
        .reconcile(&[], false, "test")
        .await
        .expect("reconcile");
    assert_eq!(run.errors(), 0, "{run:#?}");
    assert_eq!(drifted(&run), BTreeSet::new(), "{run:#?}");
    let checks: BTreeSet<(String, Check)> = run
        .results
        .iter()
        .map(|r| (r.flow.clone(), r.check))
        .collect();
    assert_eq!(
        checks,
        [
            ("products".to_string(), Check::Destination),
            ("prices".to_string(), Check::Destination),
            ("stock".to_string(), Check::ChannelStock),
            ("stock".to_string(), Check::Ledger),
        ]
        .into_iter()
        .collect()
    );
    let stock = run
        .results
        .iter()
        .find(|r| r.check == Check::ChannelStock)
        .expect("channel check");
    assert_eq!(stock.comparison.matching, SKUS as u64);

    // Drift behind the hub's back.
    shop.set_inventory("SKU-0001", "WH1", 3)
        .expect("merchant edit");
    assert!(shop.delete_product("SKU-0002"));
    let altered =
        json!({"sku": "SKU-0003", "list": "default", "currency": "USD", "amount_minor": 1});
    let r = reqwest::Client::new()
        .put(format!("{}/api/prices/default/SKU-0003", shop.base_url()))
        .json(&altered)
        .send()
        .await
        .expect("price edit");
    assert!(r.status().is_success());
    erp.set_stock_unannounced("SKU-0004", "WH1", 25)
        .expect("lost change");
    // And a change the hub is delivering (held: its flow is paused): in flight, not drift.
    hub.engine
        .set_flow_paused("stock", true)
        .await
        .expect("pause");
    erp.adjust_stock("SKU-0005", "WH1", 1).expect("receipt");
    wait_until(
        "the receipt is queued for the store",
        DEADLINE,
        async || {
            use concord_store::{ItemState, Store};
            hub.store
                .items(Some("web"), ItemState::Pending, 100)
                .await
                .expect("items")
                .iter()
                .any(|i| i.key == "SKU-0005@WH1")
        },
    )
    .await;

    let run = hub
        .engine
        .reconcile(&[], false, "test")
        .await
        .expect("reconcile");
    assert_eq!(run.errors(), 0, "{run:#?}");
    let expected: BTreeSet<_> = [
        ("stock", Check::ChannelStock, "SKU-0001@WH1", "different"),
        ("products", Check::Destination, "SKU-0002", "missing"),
        (
            "prices",
            Check::Destination,
            "default:SKU-0003",
            "different",
        ),
        ("stock", Check::Ledger, "SKU-0004@WH1", "different"),
    ]
    .into_iter()
    .map(|(f, c, k, l)| (f.to_string(), c, k.to_string(), l))
    .collect();
    assert_eq!(drifted(&run), expected, "{run:#?}");
    let channel = run
        .results
        .iter()
        .find(|r| r.check == Check::ChannelStock)
        .expect("channel check");
    assert_eq!(
        channel.comparison.in_flight,
        vec!["SKU-0005@WH1".to_string()]
    );
    let field = |check: Check, key: &str| -> (String, Value, Value) {
        let r = run
            .results
            .iter()
            .find(|r| r.check == check && r.comparison.drifted.iter().any(|d| d.key == key))
            .expect("result");
        match &r
            .comparison
            .drifted
            .iter()
            .find(|d| d.key == key)
            .expect("key")
            .drift
        {
            Drift::Different { fields } => (
                fields[0].field.clone(),
                fields[0].expected.clone(),
                fields[0].actual.clone(),
            ),
            other => panic!("{key}: {other:?}"),
        }
    };
    assert_eq!(
        field(Check::ChannelStock, "SKU-0001@WH1"),
        ("on_hand".into(), json!(10), json!(3))
    );
    assert_eq!(
        field(Check::Destination, "default:SKU-0003"),
        ("amount_minor".into(), json!(1003), json!(1))
    );
    assert_eq!(
        field(Check::Ledger, "SKU-0004@WH1"),
        ("on_hand".into(), json!(10), json!(25))
    );
    // The `drift` alert fires for each destination that drifted.
    wait_until(
        "the drift alert fires for each drifted destination",
        DEADLINE,
        async || {
            let alerts = hub.engine.alerts(100).await.expect("alerts");
            let firing: BTreeSet<String> = alerts
                .iter()
                .filter(|a| a.rule == "drifting" && a.state == "firing")
                .map(|a| a.subject.clone())
                .collect();
            firing
                == ["products:web", "prices:web", "stock:web", "stock:erp"]
                    .into_iter()
                    .map(String::from)
                    .collect()
        },
    )
    .await;

    // Heal: corrective writes through the outbox; the ledger takes the ERP's figure.
    hub.engine
        .set_flow_paused("stock", false)
        .await
        .expect("resume");
    let healed = hub.engine.reconcile(&[], true, "test").await.expect("heal");
    let keys: BTreeSet<String> = healed
        .results
        .iter()
        .flat_map(|r| r.healed.clone())
        .collect();
    assert_eq!(
        keys,
        [
            "SKU-0001@WH1",
            "SKU-0002",
            "default:SKU-0003",
            "SKU-0004@WH1"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    wait_until("the store is put right", DEADLINE, async || {
        shop.inventory("SKU-0001").get("WH1") == Some(&10)
            && shop.inventory("SKU-0004").get("WH1") == Some(&25)
            && shop.inventory("SKU-0005").get("WH1") == Some(&11)
            && shop
                .price("default", "SKU-0003")
                .is_some_and(|p| p["amount_minor"] == 1003)
            && queues_empty(&hub).await
    })
    .await;
    let after = hub
        .engine
        .reconcile(&[], false, "test")
        .await
        .expect("reconcile");
    assert_eq!(drifted(&after), BTreeSet::new(), "{after:#?}");
    assert!(
        after
            .results
            .iter()
            .all(|r| r.comparison.in_flight.is_empty()),
        "{after:#?}"
    );
    wait_until("the drift alerts resolve", DEADLINE, async || {
        let alerts = hub.engine.alerts(100).await.expect("alerts");
        alerts
            .iter()
            .filter(|a| a.rule == "drifting")
            .all(|a| a.state == "resolved")
    })
    .await;
    hub.stop().await;
}

/// A flow's `reconcile` schedule with `heal = true`: a product deleted at the store behind the
/// hub's back is found by a scheduled run, stored, and put back without anyone asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_run_finds_and_heals_drift_on_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, addr, base) = hub_listener().await;
    let erp = start_erp(&base, SECRET, Default::default()).await;
    let shop = start_shop(&base, SECRET, "web", None).await;
    let text = config(
        &config_head(dir.path(), addr, &erp.base_url(), SECRET),
        &shop_endpoint("web", &shop.base_url(), SECRET),
    )
    .replace(
        "name = \"products\"\n",
        "name = \"products\"\nreconcile = \"* * * * * *\"\nheal = true\n",
    );
    assert!(text.contains("heal = true"));
    let hub = Hub::start(listener, &text, dir.path()).await;
    erp.seed(2, &["WH1"], 10).expect("seed");
    wait_until("the store has the products", DEADLINE, async || {
        shop.price("default", "SKU-0002").is_some() && queues_empty(&hub).await
    })
    .await;
    assert!(shop.delete_product("SKU-0001"));
    wait_until(
        "a scheduled run healed the deleted product",
        DEADLINE,
        async || {
            let runs = hub.engine.reconcile_runs(100).await.expect("runs");
            runs.iter()
                .any(|r| r.trigger == "schedule" && r.healed == 1)
                && hub
                    .engine
                    .reconcile(&["products".to_string()], false, "test")
                    .await
                    .is_ok_and(|r| r.drifted() == 0 && r.results[0].comparison.matching == 2)
        },
    )
    .await;
    hub.stop().await;
}
