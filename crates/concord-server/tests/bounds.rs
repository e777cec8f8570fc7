//! The bounded domain at the hub's HTTP boundaries (issue 12, "A bounded domain" and "One version
//! order"), against a real hub: an engine over a `SqliteStore` in a temporary directory with the
//! sandbox connectors, served on 127.0.0.1 and spoken to over real HTTP.
//!
//! Every case sends what an outsider could send — quantities over the whole `i64` range,
//! repeated SKUs, NUL bytes and 100 KB strings, duplicate JSON keys, deep nesting, impossible
//! dates, invalid UTF-8 in a query, too many lines or `sku` values, the wrong Content-Type,
//! another channel's reservation — and checks that it gets a 4xx naming the field (and the
//! record, for webhooks), that nothing of it is stored, and that the hub keeps serving: the
//! ledger stays whole (`held` an integer, availability answering for every SKU) and valid
//! requests sent afterwards work. Versions stamped with UTC offsets are ordered as instants.
//!
//! Every wait is a condition polled under a deadline.

mod support;

use concord_engine::config::access::token_hash;
use concord_sandbox::shop::ShopHandle;
use concord_sandbox::{sign, SIGNATURE_HEADER, TOPIC_HEADER};
use concord_store::Store;
use serde_json::{json, Value};
use std::time::Duration;
use support::{config_head, hub_listener, shop_endpoint, start_shop, wait_until, Hub, DEADLINE};

const SECRET: &str = "bounds-test-secret";
const KEY_WEB1: &str = "web1-key-3e1f0c9a8b7d6e5f4a3b2c1d0e9f8a7b";
const KEY_WEB2: &str = "web2-key-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d";
const OPERATOR: &str = "operator-token-1f2e3d4c5b6a79881726354453627180";

fn sha(t: &str) -> String {
    token_hash(t).iter().map(|b| format!("{b:02x}")).collect()
}

struct Setup {
    hub: Hub,
    shops: Vec<ShopHandle>,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// A hub with the ERP `erp` (webhooks only), two pool channels `web1` and `web2` fed by
    /// WH1 and WH2, a storefront key per channel and an operator token.
    async fn start() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let (listener, addr, base) = hub_listener().await;
        let mut shops = Vec::new();
        let mut endpoints = String::new();
        for name in ["web1", "web2"] {
            let shop = start_shop(&base, SECRET, name, None).await;
            endpoints.push_str(&shop_endpoint(name, &shop.base_url(), SECRET));
            endpoints.push('\n');
            shops.push(shop);
        }
        let config = format!(
            r#"{head}
{endpoints}
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web1", "web2"]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'

[[flows]]
name = "catalog"
kind = "product"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web1"]

[inventory]
source = "erp"
[inventory.channels.web1]
locations = ["WH1", "WH2"]
[inventory.channels.web2]
locations = ["WH1", "WH2"]

[[commerce.keys]]
name = "web1-checkout"
channel = "web1"
sha256 = "{k1}"

[[commerce.keys]]
name = "web2-checkout"
channel = "web2"
sha256 = "{k2}"

[[admin.tokens]]
name = "ops"
role = "operator"
sha256 = "{op}"
"#,
            // The domain's own limits are what these tests exercise, so the body limit of the
            // APIs is raised above them (at the default 256 KiB a 10,000-line reservation is a
            // 413 before it is read; `limits.rs` tests that layer).
            head = config_head(dir.path(), addr, "http://127.0.0.1:9", SECRET)
                .replace("[server]\n", "[server]\napi_max_body_bytes = \"8MiB\"\n"),
            k1 = sha(KEY_WEB1),
            k2 = sha(KEY_WEB2),
            op = sha(OPERATOR),
        );
        let hub = Hub::start(listener, &config, dir.path()).await;
        Setup {
            hub,
            shops,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.hub.stop().await;
        for s in &self.shops {
            s.shutdown().await;
        }
    }
}

async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

impl Hub {
    /// POST raw bytes to `/hooks/erp`, signed.
    async fn hook(&self, body: &[u8]) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/hooks/erp", self.base))
            .header("content-type", "application/json")
            .header(TOPIC_HEADER, "stock")
            .header(SIGNATURE_HEADER, sign(SECRET.as_bytes(), body))
            .timeout(Duration::from_secs(20))
            .body(body.to_vec())
            .send()
            .await
            .expect("POST the webhook");
        answer(r).await
    }

    /// A stock figure from the ERP.
    async fn figure(
        &self,
        sku: &str,
        location: &str,
        version: &str,
        on_hand: Value,
    ) -> (u16, Value) {
        let body = json!({"events": [{"kind": "stock", "id": format!("{sku}@{location}"),
            "version": version, "record": {"sku": sku, "location": location, "on_hand": on_hand}}]});
        self.hook(body.to_string().as_bytes()).await
    }

    /// A request to the storefront API with `key`; `body` is sent as is with `content_type`.
    async fn v1(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .timeout(Duration::from_secs(30));
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        answer(req.send().await.expect("request to the hub")).await
    }

    async fn reserve(&self, key: &str, body: Value) -> (u16, Value) {
        self.v1(
            reqwest::Method::POST,
            "/v1/reservations",
            key,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    async fn journal_total(&self) -> u64 {
        self.store.stats().await.expect("stats").journal_total
    }

    /// `(on_hand, held)` of a ledger position; reading it fails if a column is not an integer.
    async fn position(&self, sku: &str, location: &str) -> Option<(i64, i64)> {
        self.store
            .levels(&[sku.to_string()])
            .await
            .expect("the ledger reads back (every column an integer)")
            .into_iter()
            .find(|l| l.location == location)
            .map(|l| (l.on_hand, l.held))
    }

    async fn ats(&self, key: &str, channel: &str, sku: &str) -> (u16, Value) {
        self.v1(
            reqwest::Method::GET,
            &format!("/v1/availability?channel={channel}&sku={sku}"),
            key,
            None,
        )
        .await
    }

    /// Seed `sku` with `on_hand` at WH1 and wait until the ledger has it.
    async fn seed(&self, sku: &str, on_hand: i64) {
        let (st, v) = self.figure(sku, "WH1", "1", json!(on_hand)).await;
        assert_eq!(st, 200, "seeding {sku}: {v}");
        wait_until(&format!("the ledger has {sku}@WH1"), DEADLINE, async || {
            self.position(sku, "WH1").await.map(|p| p.0) == Some(on_hand)
        })
        .await;
    }
}

fn text(v: &Value) -> String {
    v.to_string()
}

/// An error answer's `(code, field)`, as a program reads it.
fn fault(v: &Value) -> (&str, &str) {
    (
        v["code"].as_str().unwrap_or("(no code)"),
        v["field"].as_str().unwrap_or("(no field)"),
    )
}

/// The first per-record message of a refused webhook (which names the record and the field).
fn detail(v: &Value) -> &str {
    v["details"][0].as_str().unwrap_or("")
}

/// The reported exploit: two lines of one SKU, each `i64::MAX`, answered 201 with a held line
/// of −2. Now refused (nothing reserved), and afterwards the ledger is whole: `held` an integer,
/// availability answering, a normal reservation working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_lines_of_i64_max_are_refused_and_the_ledger_stays_whole() {
    let s = Setup::start().await;
    let hub = &s.hub;
    hub.seed("X", 10).await;
    let max = i64::MAX;
    for (what, lines) in [
        (
            "two lines of i64::MAX",
            json!([{"sku": "X", "quantity": max}, {"sku": "X", "quantity": max}]),
        ),
        (
            "lines summing past i64",
            json!([{"sku": "X", "quantity": max - 5}, {"sku": "X", "quantity": 10}]),
        ),
        (
            "repeated in-range lines summing past the bound",
            json!([{"sku": "X", "quantity": 600_000_000}, {"sku": "X", "quantity": 600_000_000}]),
        ),
        ("i64::MIN", json!([{"sku": "X", "quantity": i64::MIN}])),
        (
            "one line above the bound",
            json!([{"sku": "X", "quantity": 1_000_000_001}]),
        ),
    ] {
        let (st, v) = hub
            .reserve(
                KEY_WEB1,
                json!({"channel": "web1", "key": what, "lines": lines}),
            )
            .await;
        assert_eq!(st, 400, "{what}: {v}");
        let (code, field) = fault(&v);
        assert_eq!(code, "invalid_field", "{what}: {v}");
        assert!(
            field.starts_with("lines") && text(&v).contains("quantity"),
            "{what}: names the field: {v}"
        );
        assert_eq!(hub.position("X", "WH1").await, Some((10, 0)), "{what}");
    }
    // The ledger still serves every SKU, and a normal reservation works.
    let (st, v) = hub.ats(KEY_WEB1, "web1", "X").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["skus"][0]["ats"], 10, "{v}");
    let (st, v) = hub
        .reserve(
            KEY_WEB1,
            json!({"channel": "web1", "key": "ok", "lines": [{"sku": "X", "quantity": 3}, {"sku": "X", "quantity": 4}]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(hub.position("X", "WH1").await, Some((10, 7)));
    let (st, v) = hub.ats(KEY_WEB2, "web2", "X").await;
    assert_eq!((st, v["skus"][0]["ats"].as_i64()), (200, Some(3)), "{v}");
    s.stop().await;
}

/// `on_hand = i64::MAX` at two locations gave `ats: -2`: refused at the boundary (422 naming
/// the field and the record), nothing journaled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_outside_the_domain_are_refused_at_the_webhook() {
    let s = Setup::start().await;
    let hub = &s.hub;
    let before = hub.journal_total().await;
    for location in ["WH1", "WH2"] {
        let (st, v) = hub.figure("Y", location, "1", json!(i64::MAX)).await;
        assert_eq!(st, 422, "{location}: {v}");
        assert_eq!(fault(&v).0, "invalid_records", "{v}");
        let d = detail(&v);
        assert!(d.contains("on_hand") && d.contains("events[0]"), "{v}");
    }
    let (st, v) = hub.figure("Y", "WH1", "1", json!(1_000_000_001)).await;
    assert_eq!(st, 422, "{v}");
    // 2^64 and beyond are not integers JSON numbers can carry into i64 either.
    let (st, v) = hub
        .hook(br#"{"events": [{"kind": "stock", "id": "Y@WH1", "version": "1", "record": {"sku": "Y", "location": "WH1", "on_hand": 18446744073709551616}}]}"#)
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(fault(&v).0, "invalid_records", "{v}");
    assert!(detail(&v).contains("on_hand"), "{v}");
    assert_eq!(hub.journal_total().await, before, "nothing journaled");
    let (st, v) = hub.ats(KEY_WEB1, "web1", "Y").await;
    assert_eq!((st, v["skus"][0]["ats"].as_i64()), (200, Some(0)), "{v}");
    // The bound itself is accepted.
    hub.seed("Y", 1_000_000_000).await;
    let (st, v) = hub.figure("Y", "WH2", "1", json!(1_000_000_000)).await;
    assert_eq!(st, 200, "{v}");
    wait_until("both figures in the ledger", DEADLINE, async || {
        hub.position("Y", "WH2").await.map(|p| p.0) == Some(1_000_000_000)
    })
    .await;
    let (st, v) = hub.ats(KEY_WEB1, "web1", "Y").await;
    assert_eq!(
        (st, v["skus"][0]["ats"].as_i64()),
        (200, Some(2_000_000_000)),
        "{v}"
    );
    s.stop().await;
}

/// Duplicate keys are refused (not resolved "last wins"), naming the key; deep nesting is a
/// 400, not a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_and_deep_nesting_are_refused() {
    let s = Setup::start().await;
    let hub = &s.hub;
    let before = hub.journal_total().await;
    let (st, v) = hub
        .hook(br#"{"events": [{"kind": "stock", "id": "D@WH1", "version": "1", "record": {"sku": "D", "location": "WH1", "on_hand": 1, "on_hand": 900}}]}"#)
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(fault(&v).0, "invalid_payload", "{v}");
    // The refusal names the duplicated key.
    assert!(text(&v).contains("`on_hand`"), "{v}");
    let (st, v) = hub
        .hook(br#"{"events": [], "events": [{"kind": "stock", "id": "D@WH1", "version": "1", "record": {"sku": "D", "location": "WH1", "on_hand": 1}}]}"#)
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(fault(&v).0, "invalid_payload", "{v}");
    assert!(text(&v).contains("`events`"), "{v}");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (st, v) = hub.hook(format!("{{\"events\": {deep}}}").as_bytes()).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(fault(&v).0, "invalid_payload", "{v}");
    assert_eq!(hub.journal_total().await, before, "nothing journaled");

    let body = br#"{"channel": "web1", "key": "dup", "lines": [{"sku": "D", "quantity": 1, "quantity": 2}]}"#;
    let (st, v) = hub
        .v1(
            reqwest::Method::POST,
            "/v1/reservations",
            KEY_WEB1,
            Some(("application/json", body.to_vec())),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(fault(&v).0, "invalid_json", "{v}");
    assert!(text(&v).contains("`quantity`"), "{v}");
    let body = format!(r#"{{"channel": "web1", "key": "deep", "lines": {deep}}}"#);
    let (st, v) = hub
        .v1(
            reqwest::Method::POST,
            "/v1/reservations",
            KEY_WEB1,
            Some(("application/json", body.into_bytes())),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(fault(&v).0, "invalid_json", "{v}");
    // The hub still serves.
    hub.seed("D", 4).await;
    s.stop().await;
}

/// NUL bytes, 100 KB strings and impossible dates in webhook records and reservations: a 4xx
/// naming the field (and the record), nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_huge_strings_and_impossible_dates_are_refused() {
    let s = Setup::start().await;
    let hub = &s.hub;
    let before = hub.journal_total().await;
    let huge = "H".repeat(100 * 1024);
    for (what, sku) in [
        ("NUL", "A\u{0}B"),
        ("100 KB", huge.as_str()),
        ("escape", "A\u{1b}[31m"),
    ] {
        let body = json!({"events": [{"kind": "stock", "id": "S@WH1", "version": "1",
            "record": {"sku": sku, "location": "WH1", "on_hand": 5}}]});
        let (st, v) = hub.hook(body.to_string().as_bytes()).await;
        assert_eq!(st, 422, "{what}: {v}");
        assert_eq!(fault(&v).0, "invalid_records", "{what}: {v}");
        assert!(
            detail(&v).contains("sku") && detail(&v).contains("events[0]"),
            "{what}: {v}"
        );
        let d = text(&v);
        assert!(
            d.len() < 4096,
            "{what}: the answer does not echo the value ({} bytes)",
            d.len()
        );
        let body = json!({"events": [{"kind": "product", "id": "P1", "version": "1",
            "record": {"sku": "P1", "name": format!("Name {sku}")}}]});
        let (st, v) = hub.hook(body.to_string().as_bytes()).await;
        assert_eq!(st, 422, "{what} in a product name: {v}");
        assert_eq!(fault(&v).0, "invalid_records", "{v}");
        assert!(detail(&v).contains("name"), "{v}");
        // The event id is a key as well.
        let body = json!({"events": [{"kind": "stock", "id": sku, "version": "1",
            "record": {"sku": "Z", "location": "WH1", "on_hand": 1}}]});
        let (st, v) = hub.hook(body.to_string().as_bytes()).await;
        assert!(
            matches!(fault(&v).0, "invalid_payload" | "invalid_records"),
            "{what} in an event id: {st} {v}"
        );
        assert!(text(&v).contains("id"), "{v}");

        let (st, v) = hub
            .reserve(
                KEY_WEB1,
                json!({"channel": "web1", "key": format!("k-{what}"), "lines": [{"sku": sku, "quantity": 1}]}),
            )
            .await;
        assert_eq!(st, 400, "{what}: {v}");
        assert_eq!(fault(&v), ("invalid_field", "lines[0].sku"), "{what}: {v}");
        let (st, v) = hub
            .reserve(
                KEY_WEB1,
                json!({"channel": "web1", "key": sku, "lines": [{"sku": "Z", "quantity": 1}]}),
            )
            .await;
        assert_eq!(st, 400, "{what} in the key: {v}");
        assert_eq!(fault(&v), ("invalid_field", "key"), "{what}: {v}");
    }
    let body = json!({"events": [{"kind": "stock", "id": "E@WH1", "version": "1",
        "record": {"sku": "E", "location": "WH1", "on_hand": 1,
                   "incoming": [{"quantity": 2, "eta": "2026-02-30"}]}}]});
    let (st, v) = hub.hook(body.to_string().as_bytes()).await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(fault(&v).0, "invalid_records", "{v}");
    assert!(detail(&v).contains("incoming[0].eta"), "{v}");
    assert_eq!(hub.journal_total().await, before, "nothing journaled");
    assert!(
        hub.store
            .reservations(None, None, 100)
            .await
            .expect("reservations")
            .is_empty(),
        "nothing reserved"
    );
    s.stop().await;
}

/// Queries: invalid UTF-8 is a 400 (not decoded lossily), too many `sku` values a 400 before
/// the store is asked; too many lines in a reservation likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_and_oversized_requests_are_refused() {
    let s = Setup::start().await;
    let hub = &s.hub;
    hub.seed("Q", 5).await;
    for path in [
        "/v1/availability?channel=web1&sku=%FF",
        "/v1/availability?channel=web1&sku=Q&sku=A%C3%28",
        "/v1/prices?channel=web1&sku=%FF",
    ] {
        let (st, v) = hub.v1(reqwest::Method::GET, path, KEY_WEB1, None).await;
        assert_eq!(st, 400, "{path}: {v}");
        assert_eq!(fault(&v), ("invalid_field", "sku"), "{path}: {v}");
    }
    let many: String = (0..5_000).map(|i| format!("&sku=S{i}")).collect();
    let (st, v) = hub
        .v1(
            reqwest::Method::GET,
            &format!("/v1/availability?channel=web1{many}"),
            KEY_WEB1,
            None,
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(fault(&v), ("invalid_field", "sku"), "{v}");
    let lines: Vec<Value> = (0..10_000)
        .map(|i| json!({"sku": format!("S{i}"), "quantity": 1}))
        .collect();
    let (st, v) = hub
        .reserve(
            KEY_WEB1,
            json!({"channel": "web1", "key": "many", "lines": lines}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(fault(&v), ("invalid_field", "lines"), "{v}");
    // The limits themselves are fine.
    let ok: String = (0..200).map(|i| format!("&sku=S{i}")).collect();
    let (st, v) = hub
        .v1(
            reqwest::Method::GET,
            &format!("/v1/availability?channel=web1{ok}"),
            KEY_WEB1,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["skus"].as_array().map(Vec::len), Some(200));
    assert!(
        hub.store
            .reservations(None, None, 100)
            .await
            .expect("reservations")
            .is_empty(),
        "nothing reserved"
    );
    s.stop().await;
}

/// JSON endpoints answer 415 to another Content-Type (a form-shaped `text/plain` login is a
/// cross-site request a browser sends without asking); `application/json; charset=utf-8` is
/// JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_endpoints_refuse_other_content_types() {
    let s = Setup::start().await;
    let hub = &s.hub;
    hub.seed("C", 5).await;
    let body = json!({"channel": "web1", "key": "ct", "lines": [{"sku": "C", "quantity": 1}]})
        .to_string()
        .into_bytes();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ] {
        let (st, v) = hub
            .v1(
                reqwest::Method::POST,
                "/v1/reservations",
                KEY_WEB1,
                Some((ct, body.clone())),
            )
            .await;
        assert_eq!(st, 415, "{ct}: {v}");
        assert_eq!(fault(&v).0, "unsupported_media_type", "{ct}: {v}");
    }
    let login = json!({"token": OPERATOR}).to_string().into_bytes();
    for ct in ["text/plain", "text/plain;charset=UTF-8"] {
        let r = hub
            .http
            .post(format!("{}/api/v1/session", hub.base))
            .header("content-type", ct)
            .body(login.clone())
            .send()
            .await
            .expect("login");
        let (st, v) = answer(r).await;
        assert_eq!(st, 415, "{ct} login: {v}");
    }
    let r = hub
        .http
        .post(format!("{}/api/v1/session", hub.base))
        .header("content-type", "application/json; charset=utf-8")
        .body(login.clone())
        .send()
        .await
        .expect("login");
    assert_eq!(r.status().as_u16(), 200);
    // An admin action with a body, likewise.
    let r = hub
        .http
        .post(format!("{}/api/v1/dead-letters/replay", hub.base))
        .bearer_auth(OPERATOR)
        .header("content-type", "text/plain")
        .body(r#"{"ids": [1]}"#)
        .send()
        .await
        .expect("replay");
    assert_eq!(r.status().as_u16(), 415);
    let (st, v) = hub
        .v1(
            reqwest::Method::POST,
            "/v1/reservations",
            KEY_WEB1,
            Some(("application/json; charset=utf-8", body)),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    s.stop().await;
}

/// Another channel's reservation is answered exactly like an unknown one (404), and ids carry
/// 128 random bits (32 hex digits), distinct across many reservations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_of_other_channels_are_not_found_and_ids_are_unguessable() {
    let s = Setup::start().await;
    let hub = &s.hub;
    hub.seed("R", 1_000).await;
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..40 {
        let (st, v) = hub
            .reserve(
                KEY_WEB1,
                json!({"channel": "web1", "key": format!("cart-{i}"), "lines": [{"sku": "R", "quantity": 1}]}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        let id = v["id"].as_str().expect("id").to_string();
        let hex = id
            .strip_prefix("res_")
            .unwrap_or_else(|| panic!("{id}: res_ prefix"));
        assert!(
            hex.len() == 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{id}: 32 lower-case hex digits (128 bits)"
        );
        ids.insert(id);
    }
    assert_eq!(ids.len(), 40, "ids are unique");
    let id = ids.iter().next().expect("an id").clone();
    let unknown = format!("res_{}", "0".repeat(32));
    for (method, suffix) in [
        (reqwest::Method::GET, ""),
        (reqwest::Method::DELETE, ""),
        (reqwest::Method::POST, "/commit"),
    ] {
        let body = (method == reqwest::Method::POST)
            .then(|| ("application/json", br#"{"order": "1001"}"#.to_vec()));
        let (st_other, v_other) = hub
            .v1(
                method.clone(),
                &format!("/v1/reservations/{id}{suffix}"),
                KEY_WEB2,
                body.clone(),
            )
            .await;
        let (st_unknown, v_unknown) = hub
            .v1(
                method.clone(),
                &format!("/v1/reservations/{unknown}{suffix}"),
                KEY_WEB2,
                body,
            )
            .await;
        assert_eq!(
            (st_other, st_unknown),
            (404, 404),
            "{method} {suffix}: {v_other} {v_unknown}"
        );
        assert_eq!(
            text(&v_other).replace(&id, "ID"),
            text(&v_unknown).replace(&unknown, "ID"),
            "the same answer"
        );
    }
    // The owner still sees it, untouched.
    let (st, v) = hub
        .v1(
            reqwest::Method::GET,
            &format!("/v1/reservations/{id}"),
            KEY_WEB1,
            None,
        )
        .await;
    assert_eq!((st, v["state"].as_str()), (200, Some("held")), "{v}");
    s.stop().await;
}

/// Versions are ordered as instants: a figure stamped `10:00+02:00` (08:00Z) that arrives after
/// one stamped `09:30+00:00` is older and does not roll the ledger back; at a daylight-saving
/// fall-back the later figure `02:10+01:00` (01:10Z) after `02:30+02:00` (00:30Z) is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_with_offsets_are_ordered_as_instants() {
    let s = Setup::start().await;
    let hub = &s.hub;
    let (st, v) = hub
        .figure("V", "WH1", "2026-03-01T09:30:00+00:00", json!(7))
        .await;
    assert_eq!(st, 200, "{v}");
    wait_until("the first figure", DEADLINE, async || {
        hub.position("V", "WH1").await.map(|p| p.0) == Some(7)
    })
    .await;
    let (st, v) = hub
        .figure("V", "WH1", "2026-03-01T10:00:00+02:00", json!(3))
        .await;
    assert_eq!(st, 200, "{v}");
    // A marker figure on another SKU, sent after: once it is applied, the older one was seen.
    hub.seed("V-marker", 1).await;
    assert_eq!(
        hub.position("V", "WH1").await.map(|p| p.0),
        Some(7),
        "no roll-back"
    );

    let (st, v) = hub
        .figure("W", "WH1", "2026-10-25T02:30:00+02:00", json!(5))
        .await;
    assert_eq!(st, 200, "{v}");
    wait_until("the summer-time figure", DEADLINE, async || {
        hub.position("W", "WH1").await.map(|p| p.0) == Some(5)
    })
    .await;
    let (st, v) = hub
        .figure("W", "WH1", "2026-10-25T02:10:00+01:00", json!(9))
        .await;
    assert_eq!(st, 200, "{v}");
    wait_until(
        "the later winter-time figure is applied",
        DEADLINE,
        async || hub.position("W", "WH1").await.map(|p| p.0) == Some(9),
    )
    .await;
    s.stop().await;
}

/// Reservations over the full domain against the running hub: lines of SKUs with NUL bytes,
/// escapes, 300 bytes or 100 KB, quantities anywhere in `i64`, repeated SKUs, up to 600 lines.
/// Every request is answered 201/200/409 or a 400 naming a line's field (or the key, or
/// `lines`), never a 5xx; afterwards every SKU's ledger reads back (`held` an integer equal to
/// its held lines), and availability answers with an ats that is never negative.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_over_the_full_domain_keep_the_ledger_whole() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let s = Setup::start().await;
    let hub = &s.hub;
    for (sku, on_hand) in [("P1", 50), ("P2", 1_000_000_000)] {
        hub.seed(sku, on_hand).await;
    }
    let sku = prop_oneof![
        6 => Just("P1".to_string()),
        6 => Just("P2".to_string()),
        1 => Just("P\u{0}1".to_string()),
        1 => Just("\u{1b}[2J".to_string()),
        1 => Just("S".repeat(300)),
        1 => Just("H".repeat(100 * 1024)),
        1 => Just(" ".to_string()),
        1 => any::<String>(),
    ];
    let quantity = prop_oneof![
        4 => 1i64..30,
        2 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(0i64),
        1 => Just(1_000_000_000i64),
        1 => Just(1_000_000_001i64),
    ];
    let lines = prop_oneof![
        8 => prop::collection::vec((sku, quantity), 0..6),
        1 => (1i64..3).prop_map(|q| vec![("P1".to_string(), q); 600]),
    ];
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 150,
        ..Config::default()
    });
    let n = std::sync::atomic::AtomicU32::new(0);
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let result = tokio::task::block_in_place(|| {
        runner.run(&lines, |lines| {
            let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = json!({"channel": "web1", "key": format!("prop-{n}"),
                "lines": lines.iter().map(|(s, q)| json!({"sku": s, "quantity": q})).collect::<Vec<_>>()});
            let (st, v) = handle.block_on(hub.reserve(KEY_WEB1, body));
            if let Ok(mut seen) = statuses.lock() {
                *seen.entry(st).or_insert(0u32) += 1;
            }
            match st {
                200 | 201 | 409 => {}
                400 => {
                    let m = v["error"].as_str().unwrap_or("");
                    let (code, field) = fault(&v);
                    prop_assert!(
                        code == "invalid_field" && (field.starts_with("lines") || field == "key"),
                        "a 400 names the field: {}", v
                    );
                    prop_assert!(m.len() < 1024, "the answer does not echo the value");
                }
                other => prop_assert!(false, "status {} for {} lines: {}", other, lines.len(), v),
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Both sides of the domain were exercised (each has a probability far above 1/150 a case).
    let seen = statuses.into_inner().expect("statuses");
    assert!(
        seen.contains_key(&201) && seen.contains_key(&400),
        "{seen:?}"
    );
    // The ledger is whole: held = Σ held lines of active reservations, availability answers.
    let reservations = hub
        .store
        .reservations(None, None, 10_000)
        .await
        .expect("reservations");
    for sku in ["P1", "P2"] {
        let held: i64 = reservations
            .iter()
            .filter(|r| r.state.is_active())
            .flat_map(|r| &r.lines)
            .filter(|l| l.sku == sku && l.released_at.is_none() && !l.backorder)
            .map(|l| l.quantity)
            .sum();
        assert_eq!(
            hub.position(sku, "WH1").await.map(|p| p.1),
            Some(held),
            "{sku}"
        );
        for (key, channel) in [(KEY_WEB1, "web1"), (KEY_WEB2, "web2")] {
            let (st, v) = hub.ats(key, channel, sku).await;
            assert_eq!(st, 200, "{v}");
            let ats = v["skus"][0]["ats"].as_i64().expect("ats");
            assert!(ats >= 0, "{sku} on {channel}: {ats}");
        }
    }
    s.stop().await;
}
