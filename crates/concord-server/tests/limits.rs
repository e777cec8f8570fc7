//! Issue 12, "nothing from outside can stall the hub": the HTTP server's limits and the store's
//! back-pressure, against a real hub (engine over a `SqliteStore` in a temporary directory,
//! served on 127.0.0.1) spoken to over raw TCP and real HTTP.
//!
//! - Half-open connections (half a request line, never finished) are closed within
//!   `[server] header_read_timeout`, while a webhook and a checkout go through, during and after.
//! - Beyond `[server] max_connections`, a connection waits until another one closes.
//! - A body that stops arriving is cut at `[server] body_read_timeout`.
//! - Every route has a body limit: `/v1` and `/api/v1` at `api_max_body_bytes`, webhooks at
//!   `max_body_bytes`.
//! - With the store's writer held and its queue (`[store] write_queue`) full, webhooks and
//!   checkouts are answered 503 with `Retry-After` at once; once it drains they go through, and
//!   every event ever acknowledged is in the journal.
//! - An engine task that keeps failing makes `/readyz` answer 503 naming the task, never its
//!   error text.
//!
//! Every wait is a condition polled under a deadline, or a read bounded by one.

mod support;

use concord_sandbox::shop::{ShopHandle, ShopOptions, ShopSim};
use concord_sandbox::{sign, SIGNATURE_HEADER};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{hub_listener, wait_until, Hub, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "limits-test-secret";

/// A hub with the sandbox ERP as a webhook source (its own server is never needed: the test
/// signs the webhooks itself), a sandbox storefront `web` as the pool's one channel, and
/// `server` / `store` lines added to `[server]` / `[store]`.
struct Setup {
    hub: Hub,
    shop: ShopHandle,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    version: u64,
}

impl Setup {
    async fn start(server: &str, store: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let (listener, addr, _) = hub_listener().await;
        let shop = ShopSim::start(ShopOptions {
            name: "web".into(),
            ..ShopOptions::default()
        })
        .await
        .expect("start the storefront");
        let config = format!(
            r#"
[store]
path = "{db}"
{store}

[server]
listen = "{addr}"
{server}

[engine]
backoff_base = "50ms"
backoff_cap = "500ms"

[endpoints.erp]
connector = "sandbox-erp"
url = "http://127.0.0.1:9"
webhook_secret = "{SECRET}"

[endpoints.web]
connector = "sandbox-shop"
url = "{shop}"
timeout = "5s"

[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'

[inventory]
source = "erp"
[inventory.channels.web]
locations = ["WH1"]
"#,
            db = dir.path().join("concord.sqlite").display(),
            shop = shop.base_url(),
        );
        let mut hub = Hub::start(listener, &config, dir.path()).await;
        // No pooled connections: these tests set header timeouts of 1-2 s, after which the
        // server closes an idle keep-alive connection; a pooled one reused at that instant
        // fails with IncompleteMessage (the HTTP/1.1 keep-alive race, not what is tested).
        hub.http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        Setup {
            hub,
            shop,
            addr,
            dir,
            version: 0,
        }
    }

    /// A signed ERP webhook setting `sku`@WH1 to `on_hand` (a new version each time), padded
    /// to about `pad` bytes. Returns the status, the `Retry-After` header and the body.
    async fn webhook(
        &mut self,
        sku: &str,
        on_hand: i64,
        pad: usize,
    ) -> (u16, Option<String>, Value) {
        self.version += 1;
        let body = webhook_body(sku, on_hand, self.version, pad);
        post_webhook(&self.hub, body).await
    }

    /// A checkout of one unit of `sku` on channel `web`.
    async fn checkout(&self, key: &str, sku: &str) -> (u16, Option<String>, Value) {
        post_json(
            &self.hub,
            "/v1/reservations",
            json!({"channel": "web", "key": key, "lines": [{"sku": sku, "quantity": 1}]}),
        )
        .await
    }

    async fn on_hand(&self, sku: &str) -> Option<i64> {
        self.hub
            .engine
            .store()
            .levels(&[sku.to_string()])
            .await
            .expect("levels")
            .into_iter()
            .find(|l| l.location == "WH1")
            .map(|l| l.on_hand)
    }

    async fn stop(self) {
        self.hub.stop().await;
        self.shop.shutdown().await;
        drop(self.dir);
    }
}

fn webhook_body(sku: &str, on_hand: i64, version: u64, pad: usize) -> Vec<u8> {
    let event = json!({"kind": "stock", "id": format!("{sku}@WH1"), "version": version.to_string(),
                       "record": {"sku": sku, "location": "WH1", "on_hand": on_hand}});
    let mut v = json!({ "events": [event] });
    if pad > 0 {
        v["pad"] = Value::String("x".repeat(pad));
    }
    serde_json::to_vec(&v).expect("json")
}

async fn post_webhook(hub: &Hub, body: Vec<u8>) -> (u16, Option<String>, Value) {
    let resp = hub
        .http
        .post(format!("{}/hooks/erp", hub.base))
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, sign(SECRET.as_bytes(), &body))
        .body(body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("POST the webhook");
    answer(resp).await
}

async fn post_json(hub: &Hub, path: &str, body: Value) -> (u16, Option<String>, Value) {
    let resp = hub
        .http
        .post(format!("{}{path}", hub.base))
        .json(&body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("POST to the hub");
    answer(resp).await
}

async fn answer(resp: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry_after, v)
}

/// Read from `stream` until the server closes it (EOF or reset); the instant it did, or `None`
/// when it is still open at `deadline`.
async fn closed_by_server(mut stream: tokio::net::TcpStream, deadline: Instant) -> Option<Instant> {
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => {} // an error answer (408/400) before the close: read on
        }
    }
}

/// The reported problem: 200 half-open connections stayed open for ever. Now each is closed
/// within the header timeout, and a webhook and a checkout succeed meanwhile and afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_within_the_header_timeout_while_webhooks_and_checkouts_go_on(
) {
    let mut s = Setup::start("header_read_timeout = \"1s\"", "").await;
    let (status, _, v) = s.webhook("A", 50, 0).await;
    assert_eq!(status, 200, "{v}");
    wait_until("the ledger has A", DEADLINE, async || {
        s.on_hand("A").await == Some(50)
    })
    .await;

    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut c = tokio::net::TcpStream::connect(s.addr)
            .await
            .expect("connect");
        c.write_all(b"POST /hooks/erp HTT")
            .await
            .expect("write half a line");
        slow.push((Instant::now(), c));
    }
    // Meanwhile: a webhook and a checkout are served.
    let (status, _, v) = s.webhook("A", 60, 0).await;
    assert_eq!(status, 200, "webhook during the slow connections: {v}");
    let (status, _, v) = s.checkout("during", "A").await;
    assert_eq!(status, 201, "checkout during the slow connections: {v}");

    // Every slow connection is closed by the server within the header timeout (plus slack for
    // a loaded machine), none is left open.
    let slack = Duration::from_secs(5);
    let waits: Vec<_> = slow
        .into_iter()
        .map(|(opened, c)| {
            tokio::spawn(async move {
                let closed = closed_by_server(c, opened + Duration::from_secs(1) + slack).await;
                closed.map(|t| t.duration_since(opened))
            })
        })
        .collect();
    let mut open = 0;
    let mut longest = Duration::ZERO;
    for w in waits {
        match w.await.expect("join") {
            Some(d) => longest = longest.max(d),
            None => open += 1,
        }
    }
    assert_eq!(
        open, 0,
        "connections still open after the header timeout + {slack:?}"
    );
    assert!(
        longest >= Duration::from_millis(900),
        "closed before the timeout: {longest:?}"
    );

    // Afterwards too.
    let (status, _, v) = s.webhook("A", 70, 0).await;
    assert_eq!(status, 200, "webhook afterwards: {v}");
    wait_until("the ledger has A = 70", DEADLINE, async || {
        s.on_hand("A").await == Some(70)
    })
    .await;
    let (status, _, v) = s.checkout("after", "A").await;
    assert_eq!(status, 201, "checkout afterwards: {v}");
    s.stop().await;
}

/// `max_connections`: a connection beyond the cap is served only once another one closed —
/// here when the four idle connections holding every slot reach the header timeout (2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_the_cap_waits_until_one_closes() {
    let s = Setup::start("max_connections = 4\nheader_read_timeout = \"2s\"", "").await;
    // Four idle connections take every slot.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(
            tokio::net::TcpStream::connect(s.addr)
                .await
                .expect("connect"),
        );
    }
    let opened = Instant::now();
    let deadline = opened + Duration::from_secs(20);
    let closes: Vec<_> = idle
        .into_iter()
        .map(|c| tokio::spawn(closed_by_server(c, deadline)))
        .collect();
    // A fifth client's request waits for a slot.
    let r = s
        .hub
        .http
        .get(format!("{}/healthz", s.hub.base))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("the fifth request is answered");
    let waited = opened.elapsed();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        waited >= Duration::from_millis(1500),
        "the fifth connection was served after {waited:?}, before any slot was free"
    );
    for c in closes {
        assert!(
            c.await.expect("join").is_some(),
            "an idle connection outlived the header timeout"
        );
    }
    s.stop().await;
}

/// A body that stops arriving is cut at `body_read_timeout` (answered, connection closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_at_the_body_timeout() {
    let s = Setup::start("body_read_timeout = \"1s\"\nrequest_timeout = \"20s\"", "").await;
    let mut c = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let sent = Instant::now();
    c.write_all(
        b"POST /v1/reservations HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"channel\":",
    )
    .await
    .expect("write");
    let closed = closed_by_server(c, sent + Duration::from_secs(10)).await;
    let closed = closed.expect("the stalled upload is cut");
    assert!(closed.duration_since(sent) >= Duration::from_millis(900));
    s.stop().await;
}

/// Explicit body limits on every route: 256 KiB by default on `/v1` and `/api/v1` (axum's
/// implicit 2 MB before), `max_body_bytes` on webhooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_has_an_explicit_body_limit() {
    let mut s = Setup::start("", "").await;
    let big = "x".repeat(300 << 10);
    let (status, _, v) = post_json(
        &s.hub,
        "/v1/reservations",
        json!({"channel": "web", "key": big, "lines": []}),
    )
    .await;
    assert_eq!(status, 413, "/v1: {v}");
    // axum's own 413 answers the same JSON shape as every other error.
    assert_eq!(v["code"], "body_too_large", "/v1: {v}");
    let (status, _, v) = post_json(&s.hub, "/api/v1/session", json!({"token": big})).await;
    assert_eq!(status, 413, "/api/v1: {v}");
    assert_eq!(v["code"], "body_too_large", "/api/v1: {v}");
    // A webhook of the same size is within its own (1 MiB) limit…
    let (status, _, v) = s.webhook("B", 5, 300 << 10).await;
    assert_eq!(status, 200, "webhook of 300 KiB: {v}");
    // …and one past it is not.
    let (status, _, v) = s.webhook("B", 6, 1100 << 10).await;
    assert_eq!(status, 413, "webhook over 1 MiB: {v}");
    assert_eq!(v["code"], "body_too_large", "webhook: {v}");
    s.stop().await;
}

/// Back-pressure: the store's writer held by another connection's lock, its queue of 8 fills;
/// webhooks and checkouts are then refused at once with 503 + Retry-After (not queued without
/// bound), and go through once the writer drains. Every acknowledged event is journaled and
/// the refused ones, sent again, are too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_answers_503_with_retry_after_and_loses_nothing() {
    const QUEUE: usize = 8;
    let mut s = Setup::start("", &format!("write_queue = {QUEUE}")).await;
    // The engine's own tasks write too (claims, the processor…) and share the queue: a sender
    // retries on 503 as it would in production.
    wait_until("the first webhook is accepted", DEADLINE, async || {
        s.webhook("C", 10, 0).await.0 == 200
    })
    .await;
    wait_until("the ledger has C", DEADLINE, async || {
        s.on_hand("C").await == Some(10)
    })
    .await;

    // Hold the database's write lock from outside: the writer's next transaction waits on it
    // (up to its 5 s busy timeout) and its queue fills behind it.
    let lock = rusqlite::Connection::open(s.dir.path().join("concord.sqlite")).expect("open");
    lock.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let mut sent = Vec::new();
    for n in 0..30u64 {
        s.version += 1;
        let body = webhook_body(&format!("S{n}"), n as i64, s.version, 0);
        let hub_http = s.hub.http.clone();
        let base = s.hub.base.clone();
        let b = body.clone();
        sent.push((
            body,
            tokio::spawn(async move {
                let resp = hub_http
                    .post(format!("{base}/hooks/erp"))
                    .header("content-type", "application/json")
                    .header(SIGNATURE_HEADER, sign(SECRET.as_bytes(), &b))
                    .body(b)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .expect("POST the webhook");
                answer(resp).await
            }),
        ));
    }
    // At least one webhook comes back at once, refused; the lock is still held.
    wait_until(
        "a webhook is refused while the queue is full",
        DEADLINE,
        async || sent.iter().any(|(_, t)| t.is_finished()),
    )
    .await;
    // A checkout now finds the queue full too.
    let (status, retry_after, v) = s.checkout("busy", "C").await;
    assert_eq!(status, 503, "checkout with the queue full: {v}");
    assert_eq!(retry_after.as_deref(), Some("1"), "{v}");
    assert_eq!(v["code"], "overloaded", "{v}");
    drop(lock); // rolls back: the writer goes on

    let mut refused = Vec::new();
    let mut accepted = 0;
    for (body, task) in sent {
        let (status, retry_after, v) = task.await.expect("join");
        match status {
            200 => accepted += 1,
            503 => {
                assert_eq!(retry_after.as_deref(), Some("1"), "{v}");
                assert_eq!(v["code"], "overloaded", "{v}");
                refused.push(body);
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(
        !refused.is_empty(),
        "nothing was refused with the queue full"
    );
    assert!(
        accepted <= QUEUE,
        "{accepted} webhooks got past a queue of {QUEUE}"
    );
    // The senders retry once the writer drained: accepted now.
    for body in refused {
        wait_until(
            "a refused webhook is accepted when sent again",
            DEADLINE,
            async || {
                let (status, _, v) = post_webhook(&s.hub, body.clone()).await;
                assert!(status == 200 || status == 503, "a retried webhook: {v}");
                status == 200
            },
        )
        .await;
    }
    wait_until(
        "a checkout goes through after the drain",
        DEADLINE,
        async || {
            let (status, _, v) = s.checkout("after", "C").await;
            assert!(
                status == 201 || status == 503,
                "checkout after the drain: {v}"
            );
            status == 201
        },
    )
    .await;
    // Nothing acknowledged is lost: every one of the 30 figures reaches the ledger.
    for n in 0..30i64 {
        let sku = format!("S{n}");
        wait_until(&format!("the ledger has {sku}"), DEADLINE, async || {
            s.on_hand(&sku).await == Some(n)
        })
        .await;
    }
    s.stop().await;
}
