//! Alerts end to end: a real engine over a real SQLite store, fake endpoints (`support::Fake`),
//! and a real HTTP receiver (a tiny axum server) as the alert webhook.
//!
//! - A dead letter fires the `dead_letters` rule once; the receiver's first answer is a 500, so
//!   the notification is retried and accepted; the engine is restarted over the same store while
//!   the condition still holds and sends nothing again; replaying the dead letter clears the
//!   condition and exactly one `resolved` notification follows, for the same episode.
//! - An endpoint whose breaker stays open fires `breaker_open`, and the episode resolves when the
//!   endpoint recovers; `lag` fires for the destination that falls behind.
//! - A notification the receiver refused before a restart is owed in the store and sent, once,
//!   after it.
//! - A ledger position whose ERP on-hand is below what is committed fires `oversold_risk` for
//!   that `sku@location` (and not a rule whose threshold is higher), and resolves when stock
//!   covers it again.
//!
//! Waits are conditions under a deadline (`wait_until`); "nothing more was sent" is checked
//! after two complete evaluation rounds observed in the store, never after a sleep.

mod support;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use concord_core::Kind;
use concord_engine::config::Config;
use concord_engine::connector::Connector;
use concord_engine::runtime::Engine;
use concord_store::{DeadLetterFilter, SqliteStore, Store};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use support::{config_text, stock, wait_until, webhook_body, Fake, Outcome, DEADLINE};
use tokio::task::JoinSet;

/// The alert webhook: records every body; answers 500 to the first `fail_first` requests and
/// to every request while `refusing` is set.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Value>>>,
    requests: Arc<Mutex<usize>>,
    fail_first: usize,
    refusing: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Receiver, String) {
        let r = Receiver {
            fail_first,
            ..Receiver::default()
        };
        let app = Router::new()
            .route("/alerts", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/alerts", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (r, url)
    }

    fn accepted(&self) -> Vec<Value> {
        self.got.lock().expect("lock").clone()
    }

    fn requests(&self) -> usize {
        *self.requests.lock().expect("lock")
    }

    /// Wait (`what`) until a notification with `status` has arrived for each of `rules`.
    async fn wait_for(&self, what: &str, rules: &[&str], status: &str) {
        wait_until(what, DEADLINE, async || {
            let s = self.statuses();
            rules
                .iter()
                .all(|r| s.contains(&((*r).to_owned(), status.to_owned())))
        })
        .await;
    }

    fn statuses(&self) -> Vec<(String, String)> {
        self.accepted()
            .iter()
            .map(|v| {
                (
                    v["rule"].as_str().unwrap_or("").to_owned(),
                    v["status"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

async fn receive(State(r): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
    let n = {
        let mut n = r.requests.lock().expect("lock");
        *n += 1;
        *n
    };
    if n <= r.fail_first || r.refusing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.got.lock().expect("lock").push(body);
    StatusCode::OK
}

const STOCK_FLOW: &str = r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
"#;

/// An engine that can be stopped and started again over the same database.
struct Hub {
    engine: Engine,
    store: Arc<SqliteStore>,
    tasks: JoinSet<()>,
}

impl Hub {
    async fn start(config: &str, db: &Path, fakes: &BTreeMap<String, Arc<Fake>>) -> Hub {
        let config = Config::from_toml_str_with_env(config, Path::new("test.toml"), |_| None)
            .unwrap_or_else(|e| panic!("test config: {e}\n{config}"));
        let store = Arc::new(SqliteStore::open(db).expect("open store"));
        let connectors: BTreeMap<String, Arc<dyn Connector>> = fakes
            .iter()
            .map(|(n, f)| (n.clone(), f.clone() as Arc<dyn Connector>))
            .collect();
        let engine = Engine::new(
            Arc::new(config),
            store.clone() as Arc<dyn Store>,
            connectors,
        )
        .expect("engine builds");
        let tasks = engine.start().await.expect("engine starts");
        Hub {
            engine,
            store,
            tasks,
        }
    }

    /// The ERP's webhook reports 1 unit of `sku` at `WH` (version 1).
    async fn erp_reports_one(&self, sku: &str) {
        self.engine
            .capture_webhook(
                "erp",
                &http::HeaderMap::new(),
                &webhook_body(&[(Kind::Stock, &format!("{sku}@WH"), Some("1"), stock(sku, 1))]),
            )
            .await
            .expect("webhook");
    }

    async fn stop(mut self) {
        self.engine.shutdown();
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        drop(self.engine);
        self.store.close().await;
    }

    /// Wait for two evaluation rounds that start after now: the first one's notifications have
    /// then certainly been attempted (notifying follows evaluating in the same round).
    async fn two_rounds(&self, rule: &str) {
        for _ in 0..2 {
            let seen = self.updated_at(rule).await;
            wait_until("an evaluation round", DEADLINE, async || {
                self.updated_at(rule).await > seen
            })
            .await;
        }
    }

    async fn updated_at(&self, rule: &str) -> i64 {
        self.store
            .alert_episodes(true, 100)
            .await
            .expect("episodes")
            .into_iter()
            .filter(|e| e.rule == rule)
            .map(|e| e.updated_at)
            .max()
            .unwrap_or(0)
    }
}

fn fakes() -> BTreeMap<String, Arc<Fake>> {
    [
        Fake::new("erp", &[Kind::Stock]),
        Fake::new("web", &[Kind::Stock]),
    ]
    .into_iter()
    .map(|f| (f.name.clone(), Arc::new(f)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_alert_fires_once_across_a_restart_and_resolves() {
    let (receiver, url) = Receiver::start(1).await;
    let config = format!(
        "{}\n[alerts]\nwebhook_url = \"{url}\"\ninterval = \"50ms\"\n\
         [[alerts.rules]]\nname = \"dlq\"\ncondition = \"dead_letters\"\nabove = 0\n",
        config_text(&["erp", "web"], &[], STOCK_FLOW)
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("concord.sqlite");
    let fakes = fakes();
    fakes["web"].set_key(
        "BAD@WH",
        Some(Outcome::Permanent("HTTP 422: sku BAD is unknown".into())),
    );

    let hub = Hub::start(&config, &db, &fakes).await;
    hub.erp_reports_one("BAD").await;
    wait_until(
        "the firing notification is accepted (after one 500)",
        DEADLINE,
        async || !receiver.accepted().is_empty(),
    )
    .await;
    assert!(receiver.requests() >= 2, "the 500 was retried");
    let firing = receiver.accepted()[0].clone();
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["rule"], "dlq");
    assert_eq!(firing["condition"], "dead_letters");
    assert_eq!(firing["value"], 1.0);
    assert_eq!(firing["threshold"], 0.0);
    assert!(
        firing["summary"]
            .as_str()
            .is_some_and(|s| s.contains("1 open dead letter")),
        "{firing}"
    );
    assert!(firing["since"].as_str().is_some_and(|s| s.ends_with('Z')));
    // The engine marks the notification delivered once the receiver's 2xx is back, a commit
    // after the receiver saw it.
    wait_until(
        "the firing notification is marked delivered",
        DEADLINE,
        async || hub.engine.alerts(10).await.expect("alerts")[0].notified,
    )
    .await;
    let alerts = hub.engine.alerts(10).await.expect("alerts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (alerts[0].state.as_str(), alerts[0].notified),
        ("firing", true)
    );
    hub.two_rounds("dlq").await;
    assert_eq!(receiver.accepted().len(), 1, "no repeat while it holds");

    // Restart over the same database while the dead letter is still open.
    hub.stop().await;
    let hub = Hub::start(&config, &db, &fakes).await;
    hub.two_rounds("dlq").await;
    assert_eq!(
        receiver.statuses(),
        [("dlq".to_owned(), "firing".to_owned())],
        "a restart does not fire the episode again"
    );

    // Fix the cause and replay: the condition clears and the episode resolves, once.
    fakes["web"].set_key("BAD@WH", None);
    let open = hub
        .store
        .dead_letters(DeadLetterFilter::default())
        .await
        .expect("dead letters");
    hub.engine
        .replay_dead_letters(open.iter().map(|d| d.id).collect())
        .await
        .expect("replay");
    wait_until("the resolved notification arrives", DEADLINE, async || {
        receiver.accepted().len() >= 2
    })
    .await;
    let resolved = receiver.accepted()[1].clone();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["episode"], firing["episode"], "same episode");
    assert_eq!(resolved["since"], firing["since"]);
    assert!(resolved["resolved_at"].is_string());
    wait_until(
        "the resolved notification is marked delivered",
        DEADLINE,
        async || hub.engine.alerts(10).await.expect("alerts")[0].notified,
    )
    .await;
    let alerts = hub.engine.alerts(10).await.expect("alerts");
    assert_eq!(
        (alerts[0].state.as_str(), alerts[0].notified),
        ("resolved", true)
    );
    // Two more rounds (no episode is open now, so watch the engine's view instead).
    let before = receiver.requests();
    hub.engine.evaluate_alerts().await.expect("evaluate");
    hub.engine.evaluate_alerts().await.expect("evaluate");
    assert_eq!(receiver.requests(), before, "nothing more is sent");
    hub.stop().await;
    assert_eq!(
        receiver.statuses(),
        [
            ("dlq".to_owned(), "firing".to_owned()),
            ("dlq".to_owned(), "resolved".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_and_lag_alerts_fire_and_resolve_when_the_endpoint_recovers() {
    let (receiver, url) = Receiver::start(0).await;
    let config = format!(
        "{}\n[alerts]\nwebhook_url = \"{url}\"\ninterval = \"50ms\"\n\
         [[alerts.rules]]\nname = \"breaker\"\ncondition = \"breaker_open\"\nopen_for = \"100ms\"\n\
         [[alerts.rules]]\nname = \"lag\"\ncondition = \"lag\"\nlag_above = \"300ms\"\nendpoint = \"web\"\n",
        config_text(
            &["erp", "web"],
            &[("breaker_threshold", "2"), ("max_attempts", "1000")],
            STOCK_FLOW
        )
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let fakes = fakes();
    fakes["web"].set_default(Some(Outcome::Unavailable));
    let hub = Hub::start(&config, &dir.path().join("concord.sqlite"), &fakes).await;
    hub.erp_reports_one("A").await;
    receiver
        .wait_for("breaker and lag alerts fire", &["breaker", "lag"], "firing")
        .await;
    let breaker = receiver
        .accepted()
        .into_iter()
        .find(|v| v["rule"] == "breaker")
        .expect("breaker alert");
    assert_eq!(breaker["subject"], "web");
    assert!(
        breaker["value"].as_f64().is_some_and(|v| v >= 0.1),
        "{breaker}"
    );

    fakes["web"].set_default(None);
    receiver
        .wait_for(
            "both resolve once the endpoint recovers",
            &["breaker", "lag"],
            "resolved",
        )
        .await;
    let firing = receiver
        .statuses()
        .iter()
        .filter(|(_, s)| s == "firing")
        .count();
    assert_eq!(
        firing,
        2,
        "one firing per episode: {:?}",
        receiver.statuses()
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversold_risk_fires_per_position_above_its_threshold_and_resolves() {
    let (receiver, url) = Receiver::start(0).await;
    let config = format!(
        "{}\n[alerts]\nwebhook_url = \"{url}\"\ninterval = \"50ms\"\n\
         [[alerts.rules]]\nname = \"oversold\"\ncondition = \"oversold_risk\"\n\
         [[alerts.rules]]\nname = \"badly-oversold\"\ncondition = \"oversold_risk\"\nabove = 5\n",
        config_text(&["erp", "web"], &[], STOCK_FLOW)
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let fakes = fakes();
    let hub = Hub::start(&config, &dir.path().join("concord.sqlite"), &fakes).await;
    let figure = |on_hand: i64, committed: i64, version: &str| concord_store::LevelUpdate {
        sku: "A".into(),
        location: "WH1".into(),
        on_hand,
        committed,
        incoming: serde_json::json!([]),
        version: version.into(),
        captured_at: hub.engine.now(),
    };
    // The ERP reports fewer units on hand than it has committed: 3 short.
    hub.store
        .update_levels(vec![figure(2, 5, "1")], 0, hub.engine.now())
        .await
        .expect("levels");
    receiver
        .wait_for("the oversold alert fires", &["oversold"], "firing")
        .await;
    let firing = receiver.accepted()[0].clone();
    assert_eq!(firing["subject"], "A@WH1");
    assert_eq!(firing["value"], 3.0);
    // Stock arrives: the position is covered again.
    hub.store
        .update_levels(vec![figure(10, 5, "2")], 0, hub.engine.now())
        .await
        .expect("levels");
    receiver
        .wait_for("the oversold alert resolves", &["oversold"], "resolved")
        .await;
    assert!(
        receiver.statuses().iter().all(|(r, _)| r == "oversold"),
        "3 short is not above 5: {:?}",
        receiver.statuses()
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_refused_before_a_restart_is_sent_after_it_once() {
    let (receiver, url) = Receiver::start(0).await;
    receiver.refusing.store(true, Ordering::SeqCst);
    let config = format!(
        "{}\n[alerts]\nwebhook_url = \"{url}\"\ninterval = \"50ms\"\n\
         [[alerts.rules]]\nname = \"dlq\"\ncondition = \"dead_letters\"\n",
        config_text(&["erp", "web"], &[], STOCK_FLOW)
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("concord.sqlite");
    let fakes = fakes();
    fakes["web"].set_key("BAD@WH", Some(Outcome::Permanent("HTTP 422: no".into())));
    let hub = Hub::start(&config, &db, &fakes).await;
    hub.erp_reports_one("BAD").await;
    wait_until(
        "the firing notification is tried and refused",
        DEADLINE,
        async || receiver.requests() >= 1,
    )
    .await;
    assert!(receiver.accepted().is_empty());
    let alerts = hub.engine.alerts(10).await.expect("alerts");
    assert_eq!(
        (alerts[0].state.as_str(), alerts[0].notified),
        ("firing", false)
    );
    hub.stop().await;

    receiver.refusing.store(false, Ordering::SeqCst);
    let hub = Hub::start(&config, &db, &fakes).await;
    wait_until(
        "the owed notification is sent after the restart",
        DEADLINE,
        async || !receiver.accepted().is_empty(),
    )
    .await;
    hub.two_rounds("dlq").await;
    assert_eq!(
        receiver.statuses(),
        [("dlq".to_owned(), "firing".to_owned())],
        "sent once, after the restart"
    );
    assert!(hub.engine.alerts(10).await.expect("alerts")[0].notified);
    hub.stop().await;
}

/// A receiver that keeps each request's `X-Concord-Signature` header and raw body, and answers
/// `status` (with `Location: redirect_to` when given).
/// One request as received: its signature header, if any, and its raw body.
type RawRequest = (Option<String>, Vec<u8>);

#[derive(Clone, Default)]
struct RawReceiver {
    got: Arc<Mutex<Vec<RawRequest>>>,
}

impl RawReceiver {
    async fn start(status: StatusCode, redirect_to: Option<String>) -> (RawReceiver, String) {
        let r = RawReceiver::default();
        let keep = r.clone();
        let app = Router::new().route(
            "/alerts",
            post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let keep = keep.clone();
                    let redirect_to = redirect_to.clone();
                    async move {
                        let sig = headers
                            .get("x-concord-signature")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        keep.got.lock().expect("lock").push((sig, body.to_vec()));
                        let mut h = axum::http::HeaderMap::new();
                        if let Some(to) = redirect_to {
                            h.insert(
                                axum::http::header::LOCATION,
                                to.parse().expect("location header"),
                            );
                        }
                        (status, h)
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/alerts", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (r, url)
    }

    fn requests(&self) -> Vec<RawRequest> {
        self.got.lock().expect("lock").clone()
    }
}

/// The receiver's own check, written from the documented format (not with the engine's code):
/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
fn receiver_accepts(secret: &str, header: &str, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_owned()),
            Some(("v1", x)) => v1 = hex::decode(x).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(at) = t.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - at).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

/// Regression (issue 12): alert notifications were unsigned, so a receiver could not tell them
/// from anyone's POST. With `[alerts] webhook_secret` each carries an HMAC over a timestamp and
/// the body, which the receiver checks; a tampered body or a wrong key fails the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_notifications_are_signed_with_a_timestamp() {
    let (receiver, url) = RawReceiver::start(StatusCode::OK, None).await;
    let secret = "alert-signing-key";
    let config = format!(
        "{}\n[alerts]\nwebhook_url = \"{url}\"\nwebhook_secret = \"${{ALERT_SECRET}}\"\ninterval = \"50ms\"\n\
         [[alerts.rules]]\nname = \"dlq\"\ncondition = \"dead_letters\"\nabove = 0\n",
        config_text(&["erp", "web"], &[], STOCK_FLOW)
    );
    let config = Config::from_toml_str_with_env(&config, Path::new("test.toml"), |name| {
        (name == "ALERT_SECRET").then(|| secret.to_string())
    })
    .expect("config");
    assert!(
        !format!("{:?}", config.alerts).contains(secret),
        "the key never prints"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let fakes = fakes();
    fakes["web"].set_key(
        "BAD@WH",
        Some(Outcome::Permanent("HTTP 422: sku BAD is unknown".into())),
    );
    let store = Arc::new(SqliteStore::open(dir.path().join("c.sqlite")).expect("store"));
    let connectors: BTreeMap<String, Arc<dyn Connector>> = fakes
        .iter()
        .map(|(n, f)| (n.clone(), f.clone() as Arc<dyn Connector>))
        .collect();
    let engine = Engine::new(
        Arc::new(config),
        store.clone() as Arc<dyn Store>,
        connectors,
    )
    .expect("engine");
    let tasks = engine.start().await.expect("start");
    let hub = Hub {
        engine,
        store,
        tasks,
    };
    hub.erp_reports_one("BAD").await;
    wait_until("a notification arrives", DEADLINE, async || {
        !receiver.requests().is_empty()
    })
    .await;
    let (header, body) = receiver.requests()[0].clone();
    let header = header.expect("the notification carries X-Concord-Signature");
    assert!(header.starts_with("t="), "{header}");
    assert!(receiver_accepts(secret, &header, &body), "{header}");
    let v: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(v["status"], "firing");
    // What a receiver must refuse.
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert!(!receiver_accepts(secret, &header, &tampered));
    assert!(!receiver_accepts("another-key", &header, &body));
    // The engine's own verifier agrees, and refuses an old (replayed) timestamp.
    use concord_engine::runtime::alerts::{signature, verify_signature};
    let now = chrono::Utc::now().timestamp();
    assert!(verify_signature(secret.as_bytes(), &header, &body, now, 300).is_ok());
    let old = signature(secret.as_bytes(), now - 3600, &body);
    assert!(verify_signature(secret.as_bytes(), &old, &body, now, 300)
        .unwrap_err()
        .contains("timestamp"));
    hub.stop().await;
}

/// Regression (issue 12): the alert webhook's client followed redirects, re-sending the
/// notification to wherever an answer pointed. A 3xx is now a failed notification (retried,
/// never marked delivered) and the target is never contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_alert_webhook_is_not_followed() {
    let (elsewhere, elsewhere_url) = RawReceiver::start(StatusCode::OK, None).await;
    let (receiver, url) =
        RawReceiver::start(StatusCode::TEMPORARY_REDIRECT, Some(elsewhere_url)).await;
    let config = format!(
        "{}\n[alerts]\nwebhook_url = \"{url}\"\ninterval = \"50ms\"\n\
         [[alerts.rules]]\nname = \"dlq\"\ncondition = \"dead_letters\"\nabove = 0\n",
        config_text(&["erp", "web"], &[], STOCK_FLOW)
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let fakes = fakes();
    fakes["web"].set_key(
        "BAD@WH",
        Some(Outcome::Permanent("HTTP 422: sku BAD is unknown".into())),
    );
    let hub = Hub::start(&config, &dir.path().join("c.sqlite"), &fakes).await;
    hub.erp_reports_one("BAD").await;
    wait_until(
        "the notification reaches the redirecting webhook",
        DEADLINE,
        async || !receiver.requests().is_empty(),
    )
    .await;
    hub.engine.evaluate_alerts().await.expect("evaluate");
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect's target was contacted"
    );
    let alerts = hub.engine.alerts(10).await.expect("alerts");
    assert!(
        alerts.iter().all(|a| !a.notified),
        "a redirect is not a delivery: {alerts:?}"
    );
    hub.stop().await;
}
