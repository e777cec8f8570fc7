//! The malformed-input suite (issue 12 §9): a corpus of hostile requests against a running hub —
//! the real `concord run` binary as a child process, over a sandbox ERP and a sandbox storefront
//! in this process — spoken to over raw TCP so that nothing (no client library) tidies the bytes.
//!
//! Every case must be answered with a 4xx and the hub's error body — a reason and a stable
//! `code` (`concord_server::ErrorCode`), axum's own refusals included (or, for clients that never
//! finish their request, the connection closed by the hub within its timeouts), the hub must
//! keep serving (`/healthz` after every case, the process alive), and the valid events sent in
//! between the cases — signed ERP stock webhooks and checkouts — must all be delivered: at the
//! end the storefront shows the last figure of every SKU and there is no dead letter.
//!
//! The classes covered (issue 12 "Why"): overflowing and repeated quantities, control characters
//! and huge strings, duplicate keys, deep nesting, bad UTF-8 (body and query), impossible dates,
//! wrong content types, slow clients (headers and bodies), oversize requests, unsigned webhooks.
//!
//! It never sleeps and hopes: every wait is a condition polled under a deadline.

mod support;

use concord_sandbox::erp::{ErpOptions, ErpSim};
use concord_sandbox::shop::{ShopHandle, ShopOptions, ShopSim};
use concord_sandbox::{sign, SIGNATURE_HEADER, TOPIC_HEADER};
use concord_testkit::{free_port, try_wait_until};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use support::Hub;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(30);
const SECRET: &str = "malformed-suite-secret";
const ADMIN_TOKEN: &str = "malformed-suite-admin-token";
const SHOP_KEY: &str = "malformed-suite-shop-key";
/// The SKUs the valid events move; the hostile cases never name them.
const VALID_SKUS: [&str; 4] = ["OK-1", "OK-2", "OK-3", "OK-4"];
/// The hub's header-read timeout in this test (short, so slow clients are cut quickly).
const HEADER_TIMEOUT_SECS: u64 = 2;

/// One HTTP answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

/// Send `request` (complete bytes) on a fresh connection and read the answer until the hub
/// closes it (every request says `Connection: close`). `None` when the hub refused the connection
/// or closed it without an answer.
async fn exchange(addr: &str, request: &[u8]) -> Option<Answer> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    // The hub may answer (413, 415, 400) before reading all of a large body and close: a failed
    // write is then not an error of the test; the answer is what counts.
    let _ = stream.write_all(request).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 16 << 10];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the hub neither answered nor closed within {DEADLINE:?}"
    );
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some(Answer { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A request with `Connection: close` and a Content-Length (unless `body` is `None`).
fn request(method: &str, target: &str, headers: &[(&str, String)], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        out.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    bytes
}

fn json_headers(extra: &[(&str, String)]) -> Vec<(&'static str, String)> {
    let mut h = vec![("Content-Type", "application/json".to_string())];
    for (k, v) in extra {
        h.push((leak(k), v.clone()));
    }
    h
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn key_header() -> (&'static str, String) {
    ("Authorization", format!("Bearer {SHOP_KEY}"))
}

/// A `/v1/reservations` POST with raw `body` bytes and the storefront key.
fn reserve_raw(body: &[u8]) -> Vec<u8> {
    request(
        "POST",
        "/v1/reservations",
        &json_headers(&[key_header()]),
        Some(body),
    )
}

/// A signed ERP webhook of raw `body` bytes.
fn erp_hook(body: &[u8], topic: &str) -> Vec<u8> {
    let sig = sign(SECRET.as_bytes(), body);
    request(
        "POST",
        "/hooks/erp",
        &json_headers(&[(SIGNATURE_HEADER, sig), (TOPIC_HEADER, topic.to_string())]),
        Some(body),
    )
}

fn stock_events(records: Vec<(String, Value)>) -> Vec<u8> {
    let events: Vec<Value> = records
        .into_iter()
        .enumerate()
        .map(|(i, (id, record))| {
            json!({"kind": "stock", "id": id, "version": format!("{}", 1_000_000 + i), "record": record})
        })
        .collect();
    serde_json::to_vec(&json!({ "events": events })).expect("serialize")
}

/// A hostile case: its name, the request bytes.
struct Case {
    name: String,
    request: Vec<u8>,
}

fn case(name: impl Into<String>, request: Vec<u8>) -> Case {
    Case {
        name: name.into(),
        request,
    }
}

/// The corpus of requests that must each be refused with a 4xx and a reason.
fn corpus() -> Vec<Case> {
    let max = i64::MAX;
    let mut c = Vec::new();
    let reserve = |lines: Value| {
        serde_json::to_vec(&json!({"channel": "shop", "key": "cart-x", "lines": lines}))
            .expect("serialize")
    };
    // --- quantities: overflowing, repeated, out of range, not integers ----------------------
    c.push(case(
        "reservation: two lines of one SKU, each i64::MAX",
        reserve_raw(&reserve(json!([
            {"sku": "HOT", "quantity": max}, {"sku": "HOT", "quantity": max}
        ]))),
    ));
    c.push(case(
        "reservation: one SKU's lines summing past i64",
        reserve_raw(&reserve(json!([
            {"sku": "HOT", "quantity": max - 1}, {"sku": "HOT", "quantity": 2}
        ]))),
    ));
    for (name, q) in [
        ("i64::MAX", json!(max)),
        ("i64::MIN", json!(i64::MIN)),
        ("u64::MAX", json!(u64::MAX)),
        ("past the bound", json!(1_000_000_001i64)),
        ("zero", json!(0)),
        ("negative", json!(-3)),
        ("a fraction", json!(1.5)),
        ("1e300", json!(1e300)),
        ("a string", json!("3")),
        ("null", Value::Null),
    ] {
        c.push(case(
            format!("reservation: quantity {name}"),
            reserve_raw(&reserve(json!([{ "sku": "HOT", "quantity": q }]))),
        ));
    }
    // --- strings: control characters, huge, empty --------------------------------------------
    for (name, sku) in [
        ("a NUL byte", "A\u{0}B".to_string()),
        ("a bell", "A\u{7}".to_string()),
        ("a newline", "A\nB".to_string()),
        ("100 KB", "S".repeat(100 << 10)),
        ("empty", String::new()),
    ] {
        c.push(case(
            format!("reservation: SKU with {name}"),
            reserve_raw(&reserve(json!([{ "sku": sku, "quantity": 1 }]))),
        ));
    }
    c.push(case(
        "reservation: key of 100 KB",
        reserve_raw(
            &serde_json::to_vec(&json!({"channel": "shop", "key": "k".repeat(100 << 10),
                "lines": [{"sku": "HOT", "quantity": 1}]}))
            .expect("serialize"),
        ),
    ));
    // --- counts ------------------------------------------------------------------------------
    let many: Vec<Value> = (0..10_000)
        .map(|i| json!({"sku": format!("S{i}"), "quantity": 1}))
        .collect();
    c.push(case(
        "reservation: 10,000 lines",
        reserve_raw(&reserve(Value::Array(many))),
    ));
    let skus: String = (0..5_000).map(|i| format!("&sku=S{i}")).collect();
    c.push(case(
        "availability: 5,000 sku values",
        request(
            "GET",
            &format!("/v1/availability?channel=shop{skus}"),
            &[key_header()],
            None,
        ),
    ));
    // --- duplicate keys, nesting, encoding ---------------------------------------------------
    c.push(case(
        "reservation: duplicate key `channel`",
        reserve_raw(
            br#"{"channel": "shop", "channel": "shop", "key": "d", "lines": [{"sku": "HOT", "quantity": 1}]}"#,
        ),
    ));
    c.push(case(
        "reservation: duplicate key `quantity` in a line",
        reserve_raw(
            br#"{"channel": "shop", "key": "d2", "lines": [{"sku": "HOT", "quantity": 1, "quantity": 900}]}"#,
        ),
    ));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    c.push(case(
        "reservation: 100,000 nested arrays",
        reserve_raw(deep.as_bytes()),
    ));
    c.push(case(
        "reservation: invalid UTF-8 in the body",
        reserve_raw(b"{\"channel\": \"shop\", \"key\": \"\xc3\x28\", \"lines\": []}"),
    ));
    c.push(case(
        "availability: invalid UTF-8 in the query",
        request(
            "GET",
            "/v1/availability?channel=shop&sku=%FF%FE",
            &[key_header()],
            None,
        ),
    ));
    c.push(case(
        "reservation: not JSON at all",
        reserve_raw(b"lines=1&sku=HOT"),
    ));
    // --- content types -----------------------------------------------------------------------
    let good = reserve(json!([{ "sku": "HOT", "quantity": 1 }]));
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        c.push(case(
            format!("reservation: Content-Type {ct}"),
            request(
                "POST",
                "/v1/reservations",
                &[("Content-Type", ct.to_string()), key_header()],
                Some(&good),
            ),
        ));
    }
    c.push(case(
        "admin login: Content-Type text/plain (a form-shaped cross-site request)",
        request(
            "POST",
            "/api/v1/session",
            &[("Content-Type", "text/plain".to_string())],
            Some(format!(r#"{{"token": "{ADMIN_TOKEN}"}}"#).as_bytes()),
        ),
    ));
    c.push(case(
        "admin login: duplicate key `token`",
        request(
            "POST",
            "/api/v1/session",
            &json_headers(&[]),
            Some(format!(r#"{{"token": "wrong", "token": "{ADMIN_TOKEN}"}}"#).as_bytes()),
        ),
    ));
    // --- webhooks: bad figures, strings, dates, keys, nesting, encoding, size, signature ------
    // Each bad record has an id of its own, so none is answered as a duplicate of another.
    let n = std::cell::Cell::new(0);
    let stock = |record: Value| {
        n.set(n.get() + 1);
        stock_events(vec![(format!("bad-{}", n.get()), record)])
    };
    for (name, record) in [
        (
            "on_hand i64::MAX",
            json!({"sku": "BAD", "location": "WH1", "on_hand": max}),
        ),
        (
            "on_hand past the bound",
            json!({"sku": "BAD", "location": "WH1", "on_hand": 1_000_000_001i64}),
        ),
        (
            "committed i64::MIN",
            json!({"sku": "BAD", "location": "WH1", "on_hand": 1, "committed": i64::MIN}),
        ),
        (
            "on_hand 1e30",
            json!({"sku": "BAD", "location": "WH1", "on_hand": 1e30}),
        ),
        (
            "a SKU with a NUL byte",
            json!({"sku": "B\u{0}D", "location": "WH1", "on_hand": 1}),
        ),
        (
            "a 100 KB SKU",
            json!({"sku": "B".repeat(100 << 10), "location": "WH1", "on_hand": 1}),
        ),
        (
            "a location with a control character",
            json!({"sku": "BAD", "location": "WH\u{1b}1", "on_hand": 1}),
        ),
        (
            "an incoming ETA that does not exist (2026-02-30)",
            json!({"sku": "BAD", "location": "WH1", "on_hand": 1,
                   "incoming": [{"quantity": 5, "eta": "2026-02-30"}]}),
        ),
    ] {
        c.push(case(
            format!("webhook: {name}"),
            erp_hook(&stock(record), "stock"),
        ));
    }
    c.push(case(
        "webhook: two records at once with on_hand i64::MAX at two locations",
        erp_hook(
            &stock_events(vec![
                (
                    "w1".into(),
                    json!({"sku": "BAD2", "location": "WH1", "on_hand": max}),
                ),
                (
                    "w2".into(),
                    json!({"sku": "BAD2", "location": "WH2", "on_hand": max}),
                ),
            ]),
            "stock",
        ),
    ));
    c.push(case(
        "webhook: duplicate key `on_hand` in a record",
        erp_hook(
            br#"{"events": [{"kind": "stock", "id": "dup", "version": "5", "record": {"sku": "BAD", "location": "WH1", "on_hand": 1, "on_hand": 900}}]}"#,
            "stock",
        ),
    ));
    c.push(case(
        "webhook: duplicate key `events`",
        erp_hook(br#"{"events": [], "events": []}"#, "stock"),
    ));
    c.push(case(
        "webhook: 100,000 nested arrays",
        erp_hook(deep.as_bytes(), "stock"),
    ));
    c.push(case(
        "webhook: invalid UTF-8",
        erp_hook(
            b"{\"events\": [{\"kind\": \"stock\", \"id\": \"\xff\", \"version\": \"1\", \"record\": {}}]}",
            "stock",
        ),
    ));
    c.push(case(
        "webhook: 3 MiB body over the 1 MiB limit",
        erp_hook(
            format!(r#"{{"events": [], "pad": "{}"}}"#, "x".repeat(3 << 20)).as_bytes(),
            "stock",
        ),
    ));
    let unsigned = stock(json!({"sku": "BAD", "location": "WH1", "on_hand": 1}));
    c.push(case(
        "webhook: unsigned",
        request(
            "POST",
            "/hooks/erp",
            &json_headers(&[(TOPIC_HEADER, "stock".to_string())]),
            Some(&unsigned),
        ),
    ));
    c.push(case(
        "webhook: signed with another secret",
        request(
            "POST",
            "/hooks/erp",
            &json_headers(&[
                (TOPIC_HEADER, "stock".to_string()),
                (SIGNATURE_HEADER, sign(b"not-the-secret", &unsigned)),
            ]),
            Some(&unsigned),
        ),
    ));
    c
}

/// The valid events, one between every two cases: a signed ERP figure for one of the valid
/// SKUs (increasing on hand, increasing version).
fn valid_figure(i: usize) -> (usize, i64, Vec<u8>) {
    let sku = i % VALID_SKUS.len();
    let on_hand = 10 + i as i64;
    let body = serde_json::to_vec(&json!({"events": [{
        "kind": "stock",
        "id": format!("{}@WH1", VALID_SKUS[sku]),
        "version": format!("{}", 100 + i),
        "record": {"sku": VALID_SKUS[sku], "location": "WH1", "on_hand": on_hand, "committed": 0}
    }]}))
    .expect("serialize");
    (sku, on_hand, body)
}

fn config_text(store: &Path, port: u16, erp_url: &str, shop: &ShopHandle) -> String {
    let admin = hex(&concord_engine::config::access::token_hash(ADMIN_TOKEN));
    let key = hex(&concord_engine::config::access::token_hash(SHOP_KEY));
    format!(
        r#"
[store]
path = "{store}"

[server]
listen = "127.0.0.1:{port}"
max_body_bytes = "1MiB"
header_read_timeout = "{HEADER_TIMEOUT_SECS}s"

[engine]
backoff_base = "50ms"
backoff_cap = "500ms"

[endpoints.erp]
connector = "sandbox-erp"
url = "{erp_url}"
webhook_secret = "{SECRET}"
timeout = "5s"

[endpoints.shop]
connector = "sandbox-shop"
url = "{shop_url}"
webhook_secret = "{SECRET}"
timeout = "5s"

[[flows]]
name = "stock-to-shop"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["shop"]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'

[inventory]
source = "erp"
[inventory.channels.shop]
locations = ["WH1"]

[[admin.tokens]]
name = "ops"
role = "operator"
sha256 = "{admin}"

[[commerce.keys]]
name = "shop"
channel = "shop"
sha256 = "{key}"
"#,
        store = store.display(),
        shop_url = shop.base_url(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn wait_for(what: &str, hub: &mut Hub, mut cond: impl AsyncFnMut() -> bool) {
    let held = try_wait_until(DEADLINE, async || {
        hub.assert_alive_after(what);
        cond().await
    })
    .await;
    if !held {
        panic!(
            "timed out after {DEADLINE:?} waiting until {what}; the hub's output:\n{}",
            hub.log()
        );
    }
}

/// The `code` of an error body (`{"error", "code", …}`), if the body is one.
fn error_code(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    v.get("error")?.as_str()?;
    Some(v.get("code")?.as_str()?.to_string())
}

async fn healthz(addr: &str) -> bool {
    exchange(addr, &request("GET", "/healthz", &[], None))
        .await
        .is_some_and(|a| a.status == 200)
}

/// The channel's available-to-sell of `sku`, from `/v1/availability`.
async fn ats(addr: &str, sku: &str) -> Option<i64> {
    let a = exchange(
        addr,
        &request(
            "GET",
            &format!("/v1/availability?channel=shop&sku={sku}"),
            &[key_header()],
            None,
        ),
    )
    .await?;
    let v: Value = serde_json::from_str(&a.body).ok()?;
    v["skus"][0]["ats"].as_i64()
}

/// A valid checkout between the cases: once the hub has applied the figure just sent, reserve
/// one unit of that SKU, then cancel the reservation.
async fn valid_checkout(hub: &mut Hub, addr: &str, i: usize, on_hand: i64) {
    let sku = VALID_SKUS[i % VALID_SKUS.len()];
    let applied = try_wait_until(DEADLINE, async || ats(addr, sku).await == Some(on_hand)).await;
    if !applied {
        let answer = exchange(
            addr,
            &request(
                "GET",
                &format!("/v1/availability?channel=shop&sku={sku}"),
                &[key_header()],
                None,
            ),
        )
        .await;
        panic!(
            "the hub did not apply {on_hand} of {sku} within {DEADLINE:?}: availability answers {answer:?}; the hub's output:\n{}",
            hub.log()
        );
    }
    let body = serde_json::to_vec(&json!({"channel": "shop", "key": format!("ok-cart-{i}"),
        "lines": [{"sku": sku, "quantity": 1}]}))
    .expect("serialize");
    let a = exchange(addr, &reserve_raw(&body))
        .await
        .expect("an answer to a valid reservation");
    assert_eq!(a.status, 201, "a valid reservation between cases: {a:?}");
    let r: Value = serde_json::from_str(&a.body).expect("reservation JSON");
    let id = r["id"].as_str().expect("reservation id").to_string();
    let a = exchange(
        addr,
        &request(
            "DELETE",
            &format!("/v1/reservations/{id}"),
            &[key_header()],
            None,
        ),
    )
    .await
    .expect("an answer to a cancellation");
    assert_eq!(a.status, 200, "cancelling a valid reservation: {a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_is_refused_with_a_reason_and_valid_events_all_arrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let erp = ErpSim::start(ErpOptions::default())
        .await
        .expect("start the ERP emulator");
    let shop = ShopSim::start(ShopOptions {
        name: "shop".into(),
        ..ShopOptions::default()
    })
    .await
    .expect("start the storefront emulator");
    let config = dir.path().join("concord.toml");
    std::fs::write(
        &config,
        config_text(
            &dir.path().join("concord.sqlite"),
            port,
            &erp.base_url(),
            &shop,
        ),
    )
    .expect("write the config");
    let mut hub = Hub::spawn(&config, dir.path().join("hub.log"));
    wait_for("the hub answers /readyz", &mut hub, async || {
        exchange(&addr, &request("GET", "/readyz", &[], None))
            .await
            .is_some_and(|a| a.status == 200)
    })
    .await;

    // Slow clients first, held open for the whole corpus: half a request line each, and a
    // request whose body never comes. The hub must close them within its timeouts and keep
    // serving everyone else meanwhile.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&addr)
            .await
            .expect("connect a slow client");
        s.write_all(b"POST /hooks/erp HT")
            .await
            .expect("half a line");
        slow.push(s);
    }
    let mut stalled_body = TcpStream::connect(&addr).await.expect("connect");
    stalled_body
        .write_all(
            b"POST /v1/reservations HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"chan",
        )
        .await
        .expect("a stalled body");
    let slow_since = Instant::now();

    let mut last = [None::<i64>; VALID_SKUS.len()];
    let cases = corpus();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        // A valid figure and a valid checkout before every case.
        let (sku, on_hand, body) = valid_figure(i);
        let a = exchange(&addr, &erp_hook(&body, "stock"))
            .await
            .expect("an answer to a valid webhook");
        assert_eq!(
            a.status, 200,
            "a valid webhook before case {}: {a:?}",
            c.name
        );
        last[sku] = Some(on_hand);
        if i % 5 == 0 {
            valid_checkout(&mut hub, &addr, i, on_hand).await;
        }

        match exchange(&addr, &c.request).await {
            Some(a) if (400..500).contains(&a.status) && error_code(&a.body).is_some() => {}
            Some(a) => failures.push(format!(
                "{}: {} {}",
                c.name,
                a.status,
                a.body.chars().take(300).collect::<String>()
            )),
            None => failures.push(format!("{}: connection closed without an answer", c.name)),
        }
        hub.assert_alive_after(&c.name);
        assert!(
            healthz(&addr).await,
            "/healthz failed after case {}; hub output:\n{}",
            c.name,
            hub.log()
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were not refused with a 4xx and a reason:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The slow clients: every one closed by the hub within the header timeout (plus slack for
    // a loaded machine), none answered with a success.
    let cutoff = Duration::from_secs(HEADER_TIMEOUT_SECS) + DEADLINE;
    for (n, mut s) in slow.into_iter().enumerate() {
        let mut buf = Vec::new();
        let left = cutoff.saturating_sub(slow_since.elapsed());
        let closed = tokio::time::timeout(left, s.read_to_end(&mut buf)).await;
        assert!(
            closed.is_ok(),
            "slow client {n} still open {:?} after it connected",
            slow_since.elapsed()
        );
        if let Some(a) = parse_answer(&buf) {
            assert!(a.status >= 400, "slow client {n} answered {a:?}");
        }
    }
    let mut buf = Vec::new();
    let left = cutoff.saturating_sub(slow_since.elapsed());
    let closed = tokio::time::timeout(left, stalled_body.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "a request whose body never came is still open"
    );
    if let Some(a) = parse_answer(&buf) {
        assert!(a.status >= 400, "a stalled body was answered {a:?}");
    }

    // Every valid figure arrived: the storefront shows the last one of every SKU.
    for (k, sku) in VALID_SKUS.iter().enumerate() {
        let Some(want) = last[k] else { continue };
        // The pool sends each channel one figure per SKU (its available-to-sell).
        let shown = async || shop.inventory(sku).values().sum::<i64>();
        if !try_wait_until(DEADLINE, async || shown().await == want).await {
            panic!(
                "the storefront shows {:?} of {sku}, not {want}; the hub's output:\n{}",
                shop.inventory(sku),
                hub.log()
            );
        }
    }
    // Nothing dead-lettered, the hub ready.
    let a = exchange(
        &addr,
        &request(
            "GET",
            "/api/v1/dead-letters",
            &[("Authorization", format!("Bearer {ADMIN_TOKEN}"))],
            None,
        ),
    )
    .await
    .expect("an answer from the admin API");
    assert_eq!(a.status, 200, "dead letters: {a:?}");
    let dl: Value = serde_json::from_str(&a.body).expect("dead letters JSON");
    assert_eq!(dl, json!([]), "no dead letter expected");
    let a = exchange(&addr, &request("GET", "/readyz", &[], None))
        .await
        .expect("an answer to /readyz");
    assert_eq!(a.status, 200, "/readyz at the end: {a:?}");
    hub.assert_alive_after("the end");
    eprintln!(
        "MALFORMED: {} hostile requests refused with a 4xx and a reason, 201 slow clients cut, {} valid figures delivered",
        cases.len(),
        cases.len()
    );
}
