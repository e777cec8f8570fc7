//! End-to-end tests of the order lifecycle (issue 6) on the sandbox endpoints, through the real
//! engine: a hub (engine over a `SqliteStore` in a temporary directory, the router on
//! 127.0.0.1), a sandbox ERP and a sandbox storefront `web` that checks out through the hub's
//! stock pool, all talking real HTTP with signed webhooks.
//!
//! - `split_shipment_*`: two lines shipped in two shipments with two tracking numbers; the store
//!   ends with both fulfilments; the hub's order goes partially_shipped → shipped.
//! - `edit_before_shipment_*`: the merchant edits the order; the ERP order is amended in place and
//!   its stock commitment (and the hub's pool) follow.
//! - `edit_when_the_erp_cannot_amend_*` (the sandbox ERP connector with `amend = false`): with
//!   `[orders] edits = "cancel_and_replace"` the ERP order is cancelled and replaced by
//!   `web/1001~2`, which ships under the order's key; with `"reject"` the edit is a dead letter
//!   and the ERP order is untouched.
//! - `cancellation_after_acceptance_*`: from the store, and from the ERP: the ERP order cancelled,
//!   its stock released, the store told.
//! - `partial_refund_*`: a refund of one line becomes a credit note of exactly that line and
//!   amount in the ERP; the hub's order is partially_refunded.
//! - `a_payment_booked_in_the_erp_*`: a bank transfer booked in the ERP reaches the store as
//!   payment state with the invoice paid; the hub's order goes invoiced → paid.
//! - `unknown_customer_*`: an order for a customer the ERP does not know waits, parked, until the
//!   ERP has the customer, then goes through once.
//! - `same_order_webhook_three_times_*`: the same order webhook delivered three times → one ERP
//!   order.
//!
//! Every wait is a condition polled under a deadline; nothing sleeps and hopes.

mod support;

use concord_core::model::ItemQty;
use concord_sandbox::erp::{ErpHandle, ErpOptions, SalesOrder};
use concord_sandbox::shop::{OrderEdit, PlacedOrder, RefundRequest, ShopHandle, ShopOrderStatus};
use serde_json::json;
use support::{
    config_head, hub_listener, shop_endpoint, start_erp, start_shop, try_wait_until, wait_until,
    Hub, DEADLINE,
};

const SECRET: &str = "orders-test-secret";

impl Hub {
    /// The hub's lifecycle state of an order (`None` before it has seen it).
    async fn state(&self, key: &str) -> Option<String> {
        self.engine
            .order_history(key)
            .await
            .expect("order history")
            .map(|h| h.order.state)
    }

    /// Wait until the hub's order is in `state`.
    async fn wait_state(&self, key: &str, state: &str) {
        wait_until(
            &format!("the hub's order {key} is {state}"),
            DEADLINE,
            async || self.state(key).await.as_deref() == Some(state),
        )
        .await;
    }

    /// The states the hub's order moved through (applied transitions, oldest first, repeats
    /// folded).
    async fn path(&self, key: &str) -> Vec<String> {
        let h = self
            .engine
            .order_history(key)
            .await
            .expect("order history")
            .expect("the hub has the order");
        let mut out: Vec<String> = Vec::new();
        for e in h.events.iter().filter(|e| e.event.applied) {
            if out.last() != Some(&e.event.to) {
                out.push(e.event.to.clone());
            }
        }
        out
    }

    /// Delivery attempts of an order to `dest` as `(op, outcome)`, oldest first.
    async fn attempts(&self, key: &str, dest: &str) -> Vec<(String, String)> {
        let h = self
            .engine
            .order_history(key)
            .await
            .expect("order history")
            .expect("the hub has the order");
        h.attempts
            .iter()
            .filter(|a| a.dest == dest && a.kind == concord_core::Kind::Order && a.key == key)
            .map(|a| (a.op.clone(), a.outcome.clone()))
            .collect()
    }

    async fn ats(&self, sku: &str) -> i64 {
        let a = self
            .engine
            .availability("web", &[sku.to_string()])
            .await
            .expect("availability");
        a[0].ats
    }
}

/// Which lifecycle flows a test runs, besides stock (ERP → store) and orders (store → ERP).
#[derive(Clone, Copy)]
struct Flows {
    /// Customers from the store into the ERP (off: the ERP's own customers flow to the store,
    /// so an order for a customer the ERP lacks must wait for it).
    customers_to_erp: bool,
    /// The ERP's orders back to the store (an order the ERP cancels is cancelled there).
    orders_from_erp: bool,
    /// The ERP connector declares order amendment (`options.amend`); without it the engine
    /// follows `edits`.
    erp_amends: bool,
    /// `[orders] edits`.
    edits: &'static str,
    /// Payments booked in the ERP back to the store (payment state).
    payments_from_erp: bool,
}

const ALL: Flows = Flows {
    customers_to_erp: true,
    orders_from_erp: false,
    payments_from_erp: false,
    erp_amends: true,
    edits: "cancel_and_replace",
};

fn flows(f: Flows) -> String {
    let customers = if f.customers_to_erp {
        r#"
[[flows]]
name = "customers-to-erp"
kind = "customer"
pattern = "aggregation"
mode = "realtime"
from = ["web"]
to = ["erp"]
"#
    } else {
        r#"
[[flows]]
name = "customers-from-erp"
kind = "customer"
pattern = "broadcast"
mode = "realtime"
poll = "1s"
from = ["erp"]
to = ["web"]
"#
    };
    let orders_back = if f.orders_from_erp {
        r#"
[[flows]]
name = "orders-from-erp"
kind = "order"
pattern = "broadcast"
mode = "realtime"
poll = "1s"
from = ["erp"]
to = ["web"]
"#
    } else {
        ""
    };
    let payments_back = if f.payments_from_erp {
        r#"
[[flows]]
name = "payments-from-erp"
kind = "payment"
pattern = "broadcast"
mode = "realtime"
poll = "1s"
from = ["erp"]
to = ["web"]
"#
    } else {
        ""
    };
    format!(
        r#"
[[flows]]
name = "stock-to-web"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
poll = "1s"
from = ["erp"]
to = ["web"]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'
{customers}
[[flows]]
name = "orders-to-erp"
kind = "order"
pattern = "aggregation"
mode = "realtime"
poll = "1s"
from = ["web"]
to = ["erp"]

[[flows]]
name = "shipments-to-web"
kind = "shipment"
pattern = "broadcast"
mode = "realtime"
poll = "1s"
from = ["erp"]
to = ["web"]

[[flows]]
name = "invoices-to-web"
kind = "invoice"
pattern = "broadcast"
mode = "realtime"
poll = "1s"
from = ["erp"]
to = ["web"]

[[flows]]
name = "payments-to-erp"
kind = "payment"
pattern = "aggregation"
mode = "realtime"
poll = "1s"
from = ["web"]
to = ["erp"]

[[flows]]
name = "refunds-to-erp"
kind = "refund"
pattern = "aggregation"
mode = "realtime"
poll = "1s"
from = ["web"]
to = ["erp"]
{orders_back}{payments_back}"#
    )
}

/// The topology: the ERP (SKUs A, B, C, 10 each at WH1, priced 1000/2500/400), the store `web`
/// checking out through the hub, the hub.
struct Setup {
    erp: ErpHandle,
    shop: ShopHandle,
    hub: Hub,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start(f: Flows) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let (listener, hub_addr, base) = hub_listener().await;
        let erp = start_erp(&base, SECRET, ErpOptions::default()).await;
        for (sku, price) in [("A", 1000), ("B", 2500), ("C", 400)] {
            erp.upsert_product(json!({"sku": sku, "name": format!("Product {sku}")}))
                .expect("product");
            erp.set_price(sku, price).expect("price");
            erp.set_stock(sku, "WH1", 10).expect("stock");
        }
        let shop = start_shop(&base, SECRET, "web", Some(None)).await;
        for (sku, price) in [("A", 1000), ("B", 2500), ("C", 400)] {
            shop.upsert_product(json!({"sku": sku, "name": format!("Product {sku}"),
                                       "attributes": {"price_minor": price}}))
                .expect("store product");
        }
        let config = format!(
            r#"{head}[endpoints.erp.options]
amend = {amend}

[orders]
edits = "{edits}"

{web}{flows}
[inventory]
source = "erp"
reservation_ttl = "10m"

[inventory.channels.web]
locations = ["WH1"]
"#,
            head = config_head(dir.path(), hub_addr, &erp.base_url(), SECRET),
            web = shop_endpoint("web", &shop.base_url(), SECRET),
            flows = flows(f),
            amend = f.erp_amends,
            edits = f.edits,
        );
        let hub = Hub::start(listener, &config, dir.path()).await;
        let s = Setup {
            erp,
            shop,
            hub,
            dir,
        };
        for sku in ["A", "B", "C"] {
            wait_until(&format!("the hub's pool has {sku}"), DEADLINE, async || {
                s.hub.ats(sku).await == 10
            })
            .await;
        }
        s
    }

    async fn shutdown(self) {
        self.hub.stop().await;
        self.erp.shutdown().await;
        self.shop.shutdown().await;
        drop(self.dir);
    }

    /// Check out through the hub.
    async fn checkout(&self, email: &str, lines: &[(&str, i64)]) -> PlacedOrder {
        self.shop
            .checkout(email, "Buyer", lines)
            .await
            .expect("checkout")
    }

    /// Wait until the ERP has accepted the order; its sales order.
    async fn accepted(&self, key: &str) -> SalesOrder {
        wait_until(&format!("the ERP accepted {key}"), DEADLINE, async || {
            self.erp.order_by_reference(key).is_some()
        })
        .await;
        self.erp.order_by_reference(key).expect("sales order")
    }

    /// The ERP's sales orders of one canonical key (all of them, cancelled ones included).
    fn sales_orders_of(&self, key: &str) -> Vec<SalesOrder> {
        self.erp
            .sales_orders()
            .into_iter()
            .filter(|o| o.key() == key)
            .collect()
    }

    fn committed(&self, sku: &str) -> i64 {
        self.erp.stock(sku, "WH1").expect("stock").committed
    }

    /// The hub's pool agrees with the ERP: ats = on_hand − committed for each SKU (nothing held
    /// twice, nothing leaked) once the ERP's figures are in — the hub's ledger has the ERP's
    /// on_hand and committed. (Without that, the ats can match by coincidence before the ERP's
    /// figure arrives — old figure, order still held — and then dip while the figure is in but
    /// the delivery that accepts the order is not yet settled.)
    async fn pool_matches_erp(&self, skus: &[&str]) {
        for sku in skus {
            let matches = try_wait_until(DEADLINE, async || {
                let s = self.erp.stock(sku, "WH1").expect("stock");
                let levels = self
                    .hub
                    .engine
                    .store()
                    .levels(&[sku.to_string()])
                    .await
                    .expect("levels");
                let figures_in = levels.iter().any(|l| {
                    l.location == "WH1" && (l.on_hand, l.committed) == (s.on_hand, s.committed)
                });
                figures_in && self.hub.ats(sku).await == (s.on_hand - s.committed).max(0)
            })
            .await;
            if !matches {
                let store = self.hub.engine.store();
                let levels = store.levels(&[sku.to_string()]).await;
                let reservations = store.reservations(None, Some(sku), 50).await;
                panic!(
                    "timed out after {DEADLINE:?} waiting until the hub's ats of {sku} matches \
                     the ERP's free stock\nERP stock: {:?}\nhub ats: {}\nhub levels: {levels:#?}\n\
                     hub reservations: {reservations:#?}\nERP orders: {:#?}",
                    self.erp.stock(sku, "WH1"),
                    self.hub.ats(sku).await,
                    self.erp.sales_orders(),
                );
            }
        }
    }
}

fn item(sku: &str, quantity: i64) -> ItemQty {
    ItemQty {
        sku: sku.into(),
        quantity,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_shipment_two_tracking_numbers_two_fulfilments() {
    let s = Setup::start(ALL).await;
    let placed = s.checkout("ann@example.com", &[("A", 2), ("B", 1)]).await;
    let so = s.accepted(&placed.key).await;
    assert_eq!(
        (s.committed("A"), s.committed("B")),
        (2, 1),
        "the ERP committed the order"
    );

    s.erp
        .ship_with(&so.id, &[("A", 2)], "DHL", "JD014600006281")
        .expect("first shipment");
    wait_until("the store has the first fulfilment", DEADLINE, async || {
        s.shop.fulfillments(&placed.id).len() == 1
    })
    .await;
    assert_eq!(
        s.shop.order(&placed.id).expect("order").status,
        ShopOrderStatus::PartiallyShipped
    );
    s.hub.wait_state(&placed.key, "partially_shipped").await;

    s.erp
        .ship_with(&so.id, &[("B", 1)], "UPS", "1Z999AA10123456784")
        .expect("second shipment");
    wait_until("the store has both fulfilments", DEADLINE, async || {
        s.shop.fulfillments(&placed.id).len() == 2
    })
    .await;
    let f = s.shop.fulfillments(&placed.id);
    let got: Vec<_> = f
        .iter()
        .map(|f| {
            (
                f.carrier.clone().unwrap_or_default(),
                f.tracking_number.clone().unwrap_or_default(),
                f.lines.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "DHL".to_string(),
                "JD014600006281".to_string(),
                vec![item("A", 2)]
            ),
            (
                "UPS".to_string(),
                "1Z999AA10123456784".to_string(),
                vec![item("B", 1)]
            ),
        ]
    );
    assert_eq!(
        s.shop.order(&placed.id).expect("order").status,
        ShopOrderStatus::Shipped
    );
    assert_eq!(s.sales_orders_of(&placed.key).len(), 1);
    s.hub.wait_state(&placed.key, "shipped").await;
    let path = s.hub.path(&placed.key).await;
    assert_eq!(
        path,
        ["placed", "accepted", "partially_shipped", "shipped"],
        "the hub's order followed the shipped quantities"
    );
    s.pool_matches_erp(&["A", "B"]).await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_before_shipment_amends_the_erp_order_and_adjusts_stock() {
    let s = Setup::start(ALL).await;
    let placed = s.checkout("bob@example.com", &[("A", 2), ("B", 1)]).await;
    let so = s.accepted(&placed.key).await;
    s.pool_matches_erp(&["A", "B", "C"]).await;
    assert_eq!(s.hub.ats("A").await, 8);

    // Quantity up, a line removed, a line added, a new address.
    s.shop
        .edit_order(
            &placed.id,
            serde_json::from_value::<OrderEdit>(json!({
                "lines": [{"sku": "A", "quantity": 3}, {"sku": "C", "quantity": 4}],
                "shipping_address": {"line1": "9 Dock Rd", "city": "Portsmouth", "country": "GB"}
            }))
            .expect("edit"),
        )
        .expect("the store edits the placed order");
    wait_until("the ERP order is amended", DEADLINE, async || {
        s.erp.order(&so.id).is_some_and(|o| {
            o.lines.len() == 2 && o.lines[0].quantity == 3 && o.lines[1].sku == "C"
        })
    })
    .await;
    let amended = s.erp.order(&so.id).expect("sales order");
    assert_eq!(
        amended.shipping_address.as_ref().map(|a| a.city.as_str()),
        Some("Portsmouth")
    );
    assert_eq!(
        s.sales_orders_of(&placed.key).len(),
        1,
        "amended in place, not replaced"
    );
    // The ERP applies the amend before its answer reaches the hub's worker, which then records
    // the attempt: wait for the record, not just the ERP's side.
    wait_until(
        "the hub recorded the edit's delivery as an amend",
        DEADLINE,
        async || {
            s.hub
                .attempts(&placed.key, "erp")
                .await
                .contains(&("amend".to_string(), "delivered".to_string()))
        },
    )
    .await;
    assert_eq!(s.hub.state(&placed.key).await.as_deref(), Some("accepted"));
    assert_eq!(
        (s.committed("A"), s.committed("B"), s.committed("C")),
        (3, 0, 4),
        "the ERP's commitment follows the edit"
    );
    // The hub's pool: one more A and four C taken, the B given back — counted once.
    s.pool_matches_erp(&["A", "B", "C"]).await;
    assert_eq!(
        (
            s.hub.ats("A").await,
            s.hub.ats("B").await,
            s.hub.ats("C").await
        ),
        (7, 10, 6)
    );

    // After shipment the store refuses edits; the ERP refuses an amend with its reason.
    s.erp.ship_partial(&so.id, &[("A", 1)]).expect("ship");
    wait_until("the store has the fulfilment", DEADLINE, async || {
        s.shop.fulfillments(&placed.id).len() == 1
    })
    .await;
    let refused = s
        .shop
        .edit_order(&placed.id, OrderEdit::default())
        .expect_err("no edit after shipment");
    assert!(refused.to_string().contains("after shipment"), "{refused}");
    assert_eq!(s.erp.counters().oversold_units, 0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_when_the_erp_cannot_amend_cancels_and_replaces() {
    let s = Setup::start(Flows {
        erp_amends: false,
        ..ALL
    })
    .await;
    let placed = s.checkout("ida@example.com", &[("A", 2)]).await;
    let original = s.accepted(&placed.key).await;
    s.pool_matches_erp(&["A"]).await;
    s.shop
        .edit_order(
            &placed.id,
            serde_json::from_value::<OrderEdit>(
                json!({"lines": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 2}]}),
            )
            .expect("edit"),
        )
        .expect("the store edits the placed order");
    let replacement = format!("{}~2", placed.key);
    wait_until("the ERP has the replacement order", DEADLINE, async || {
        s.sales_orders_of(&placed.key)
            .iter()
            .any(|o| o.reference == replacement)
    })
    .await;
    let orders = s.sales_orders_of(&placed.key);
    assert_eq!(orders.len(), 2, "the original and its replacement");
    let old = orders
        .iter()
        .find(|o| o.id == original.id)
        .expect("original");
    assert_eq!(old.record()["status"], "cancelled");
    let new = orders
        .iter()
        .find(|o| o.reference == replacement)
        .expect("replacement");
    let lines: Vec<_> = new
        .lines
        .iter()
        .map(|l| (l.sku.as_str(), l.quantity))
        .collect();
    assert_eq!(lines, [("A", 1), ("B", 2)]);
    assert_eq!(
        (s.committed("A"), s.committed("B")),
        (1, 2),
        "only the replacement holds stock"
    );
    s.pool_matches_erp(&["A", "B"]).await;
    assert!(
        s.erp.write_log().iter().all(|w| w.method != "PATCH"),
        "no amend was sent to an ERP that cannot amend"
    );
    // The replacement ships under the order's key: the store gets it.
    s.erp.ship(&new.id).expect("ship the replacement");
    wait_until("the store has the fulfilment", DEADLINE, async || {
        s.shop.fulfillments(&placed.id).len() == 1
    })
    .await;
    s.hub.wait_state(&placed.key, "shipped").await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_when_the_erp_cannot_amend_and_edits_are_rejected_needs_attention() {
    let s = Setup::start(Flows {
        erp_amends: false,
        edits: "reject",
        ..ALL
    })
    .await;
    let placed = s.checkout("jo@example.com", &[("A", 2)]).await;
    let so = s.accepted(&placed.key).await;
    s.shop
        .edit_order(
            &placed.id,
            serde_json::from_value::<OrderEdit>(json!({"lines": [{"sku": "A", "quantity": 5}]}))
                .expect("edit"),
        )
        .expect("the store edits the placed order");
    wait_until(
        "the refused edit is a dead letter naming the order",
        DEADLINE,
        async || {
            s.hub
                .engine
                .store()
                .dead_letters(Default::default())
                .await
                .expect("dead letters")
                .iter()
                .any(|d| d.key == placed.key && d.reason.contains("cannot amend"))
        },
    )
    .await;
    assert_eq!(s.sales_orders_of(&placed.key).len(), 1);
    assert_eq!(
        s.erp.order(&so.id).expect("sales order").lines[0].quantity,
        2,
        "the ERP order is untouched"
    );
    assert_eq!(s.committed("A"), 2);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_after_acceptance_from_the_store_releases_the_erp_order() {
    let s = Setup::start(ALL).await;
    let placed = s.checkout("cat@example.com", &[("A", 4)]).await;
    let so = s.accepted(&placed.key).await;
    s.pool_matches_erp(&["A"]).await;
    assert_eq!(s.hub.ats("A").await, 6);

    s.shop
        .customer_cancel(&placed.id)
        .expect("the customer cancels");
    wait_until("the ERP order is cancelled", DEADLINE, async || {
        s.erp
            .order(&so.id)
            .is_some_and(|o| o.record()["status"] == "cancelled")
    })
    .await;
    assert_eq!(s.committed("A"), 0, "the ERP released what it committed");
    s.hub.wait_state(&placed.key, "cancelled").await;
    let res = placed.reservation.clone().expect("reservation");
    let r = s.hub.engine.reservation(&res).await.expect("reservation");
    assert!(
        !r.state.is_active(),
        "the order's reservation is over: {:?}",
        r.state
    );
    s.pool_matches_erp(&["A"]).await;
    assert_eq!(s.hub.ats("A").await, 10, "every unit is sellable again");
    assert_eq!(
        s.shop.order(&placed.id).expect("order").status,
        ShopOrderStatus::Cancelled
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_after_acceptance_from_the_erp_tells_the_store() {
    let s = Setup::start(Flows {
        orders_from_erp: true,
        ..ALL
    })
    .await;
    let placed = s.checkout("cy@example.com", &[("B", 3)]).await;
    let so = s.accepted(&placed.key).await;
    s.hub.wait_state(&placed.key, "accepted").await;
    s.pool_matches_erp(&["B"]).await;
    assert_eq!(s.hub.ats("B").await, 7);

    // The ERP cancels (credit check, a phone call): the store is told, the stock is free.
    s.erp.cancel(&so.id).expect("the ERP cancels");
    wait_until("the store's order is cancelled", DEADLINE, async || {
        s.shop
            .order(&placed.id)
            .is_some_and(|o| o.status == ShopOrderStatus::Cancelled)
    })
    .await;
    s.hub.wait_state(&placed.key, "cancelled").await;
    assert_eq!(s.committed("B"), 0);
    s.pool_matches_erp(&["B"]).await;
    assert_eq!(s.hub.ats("B").await, 10);
    assert_eq!(
        s.sales_orders_of(&placed.key).len(),
        1,
        "no second ERP order"
    );
    let dead = s
        .hub
        .engine
        .store()
        .dead_letters(Default::default())
        .await
        .expect("dead letters");
    assert!(dead.is_empty(), "nothing needs attention: {dead:#?}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_refund_becomes_a_credit_note_for_exactly_that_line() {
    let s = Setup::start(ALL).await;
    let placed = s.checkout("dan@example.com", &[("A", 2), ("B", 1)]).await;
    let so = s.accepted(&placed.key).await;
    s.erp.ship(&so.id).expect("ship everything");
    let invoice = s.erp.invoice(&so.id).expect("invoice");
    assert_eq!(invoice.total_minor, 4500);
    wait_until("the store has the invoice", DEADLINE, async || {
        s.shop.order(&placed.id).is_some_and(|o| {
            o.invoices
                .iter()
                .any(|i| i["number"] == invoice.number.as_str())
        })
    })
    .await;
    // The store captures the payment; the ERP books it against the invoice.
    let pay = s.shop.capture(&placed.id, None).expect("capture");
    let pay_id = pay["id"].as_str().expect("payment id").to_string();
    wait_until("the ERP recorded the payment", DEADLINE, async || {
        s.erp.payment(&pay_id).is_some()
    })
    .await;
    assert_eq!(
        s.erp.payment(&pay_id).expect("payment")["invoice"],
        invoice.number.as_str()
    );
    wait_until(
        "the invoice is paid, and the store knows",
        DEADLINE,
        async || {
            s.shop.order(&placed.id).is_some_and(|o| {
                o.invoices
                    .iter()
                    .any(|i| i["number"] == invoice.number.as_str() && i["status"] == "paid")
            })
        },
    )
    .await;

    // One unit of A comes back damaged: refunded by line, restocked.
    let refund = s
        .shop
        .refund(
            &placed.id,
            RefundRequest {
                lines: vec![item("A", 1)],
                restock: true,
                reason: Some("damaged".into()),
                ..RefundRequest::default()
            },
        )
        .expect("refund");
    assert_eq!(refund["amount_minor"], 1000);
    let refund_id = refund["id"].as_str().expect("refund id").to_string();
    wait_until("the ERP has the credit note", DEADLINE, async || {
        !s.erp.credit_notes(Some(&placed.key)).is_empty()
    })
    .await;
    let notes = s.erp.credit_notes(Some(&placed.key));
    assert_eq!(notes.len(), 1);
    let cn = &notes[0];
    assert_eq!(cn.refund.id, refund_id);
    assert_eq!(cn.refund.amount_minor, 1000, "exactly the refunded amount");
    assert_eq!(
        cn.refund.lines,
        vec![item("A", 1)],
        "exactly the refunded line"
    );
    s.hub.wait_state(&placed.key, "partially_refunded").await;
    // The return is expected; the unit is back on hand only once the ERP receives it.
    let rma = cn
        .return_id
        .clone()
        .expect("a return for the restocked line");
    let on_hand = s.erp.stock("A", "WH1").expect("stock").on_hand;
    assert_eq!(on_hand, 8);
    s.pool_matches_erp(&["A"]).await;
    assert_eq!(s.hub.ats("A").await, 8, "not back before it is received");
    s.erp.receive_return(&rma).expect("receive");
    s.pool_matches_erp(&["A"]).await;
    assert_eq!(s.hub.ats("A").await, 9, "received: sellable again");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_booked_in_the_erp_reaches_the_store_and_the_order_is_paid() {
    let s = Setup::start(Flows {
        payments_from_erp: true,
        ..ALL
    })
    .await;
    let placed = s.checkout("kim@example.com", &[("C", 5)]).await;
    let so = s.accepted(&placed.key).await;
    s.erp.ship(&so.id).expect("ship");
    let invoice = s.erp.invoice(&so.id).expect("invoice");
    s.hub.wait_state(&placed.key, "invoiced").await;
    // The customer pays by bank transfer, booked in the ERP.
    let pay = s
        .erp
        .pay_invoice(&invoice.number, None)
        .expect("bank transfer");
    assert_eq!(pay["amount_minor"], 2000);
    let pay_id = pay["id"].as_str().expect("payment id").to_string();
    wait_until(
        "the store has the payment and the paid invoice",
        DEADLINE,
        async || {
            s.shop.order(&placed.id).is_some_and(|o| {
                o.payments
                    .iter()
                    .any(|p| p["id"] == pay_id.as_str() && p["status"] == "captured")
                    && o.invoices
                        .iter()
                        .any(|i| i["number"] == invoice.number.as_str() && i["status"] == "paid")
            })
        },
    )
    .await;
    s.hub.wait_state(&placed.key, "paid").await;
    assert_eq!(
        s.hub.path(&placed.key).await,
        ["placed", "accepted", "shipped", "invoiced", "paid"]
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_customer_order_is_parked_until_the_erp_has_the_customer() {
    let s = Setup::start(Flows {
        customers_to_erp: false,
        ..ALL
    })
    .await;
    let placed = s.checkout("erin@newco.example", &[("A", 1)]).await;
    // The order reaches the hub (journaled) but cannot go to the ERP.
    wait_until("the hub captured the order", DEADLINE, async || {
        s.hub
            .engine
            .store()
            .entity(concord_core::Kind::Order, &placed.key)
            .await
            .expect("entity")
            .is_some()
    })
    .await;
    // Parked, visibly: waiting on the customer at the ERP.
    wait_until(
        "the order is parked waiting on its customer",
        DEADLINE,
        async || {
            s.hub
                .engine
                .parked(100)
                .await
                .expect("parked")
                .iter()
                .any(|p| {
                    p.dest == "erp"
                        && p.key == placed.key
                        && p.waiting_on
                            == [(
                                concord_core::Kind::Customer,
                                "erin@newco.example".to_string(),
                            )]
                })
        },
    )
    .await;
    assert!(
        s.erp.order_by_reference(&placed.key).is_none(),
        "parked: the ERP does not know the customer"
    );
    let posts = |s: &Setup| {
        s.erp
            .write_log()
            .iter()
            .filter(|w| w.path == "/api/sales-orders")
            .count()
    };
    assert_eq!(posts(&s), 0, "not even tried");
    assert_eq!(s.hub.state(&placed.key).await.as_deref(), Some("placed"));

    // The account manager creates the customer in the ERP; the order follows, once.
    let r = reqwest::Client::new()
        .post(format!("{}/api/customers", s.erp.base_url()))
        .json(&json!({"email": "erin@newco.example", "name": "Erin"}))
        .send()
        .await
        .expect("create the customer at the ERP");
    assert_eq!(r.status().as_u16(), 201);
    let so = s.accepted(&placed.key).await;
    assert_eq!(so.email, "erin@newco.example");
    assert_eq!(s.sales_orders_of(&placed.key).len(), 1);
    assert_eq!(posts(&s), 1, "created once, with no failed attempt before");
    s.hub.wait_state(&placed.key, "accepted").await;
    wait_until("nothing is parked any more", DEADLINE, async || {
        s.hub.engine.parked(100).await.expect("parked").is_empty()
    })
    .await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_order_webhook_three_times_makes_one_erp_order() {
    let s = Setup::start(ALL).await;
    // A customer the ERP knows, so the order can go straight through.
    let first = s.checkout("gus@example.com", &[("B", 1)]).await;
    s.accepted(&first.key).await;
    // A webhook delivery of order web/7001 exactly as the store signs it, retried three times.
    let body = json!({"events": [{"kind": "order", "id": "ord_7001", "version": "900001",
        "record": {"channel": "web", "number": "7001", "customer": {"email": "gus@example.com"},
                   "status": "placed", "currency": "USD",
                   "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 1000}],
                   "total_minor": 1000}}]})
    .to_string();
    let signature = concord_sandbox::sign(SECRET.as_bytes(), body.as_bytes());
    for attempt in 0..3 {
        let r = s
            .hub
            .http
            .post(format!("{}/hooks/web", s.hub.base))
            .header("Content-Type", "application/json")
            .header(concord_sandbox::TOPIC_HEADER, "order")
            .header(concord_sandbox::SIGNATURE_HEADER, &signature)
            .body(body.clone())
            .send()
            .await
            .expect("deliver the webhook");
        assert!(
            r.status().is_success(),
            "delivery {attempt}: {}",
            r.status()
        );
    }
    let so = s.accepted("web/7001").await;
    // Let anything else that was queued run out: the first order's later records and this one.
    wait_until(
        "the hub's outbox to the ERP is drained",
        DEADLINE,
        async || {
            let stats = s.hub.engine.store().stats().await.expect("stats");
            stats.journal_pending == 0
                && stats
                    .queues
                    .iter()
                    .filter(|q| q.dest == "erp")
                    .all(|q| q.pending + q.inflight + q.parked == 0)
        },
    )
    .await;
    assert_eq!(s.sales_orders_of("web/7001").len(), 1);
    let posts = s
        .erp
        .write_log()
        .iter()
        .filter(|w| w.path == "/api/sales-orders" && w.body["number"] == "7001")
        .count();
    assert_eq!(posts, 1, "created once, never re-posted");
    let attempts = s.hub.attempts("web/7001", "erp").await;
    assert_eq!(
        attempts,
        [("create".to_string(), "delivered".to_string())],
        "one delivery, one create"
    );
    assert_eq!(so.lines[0].quantity, 1);
    s.shutdown().await;
}
