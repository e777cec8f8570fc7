//! Unit tests of the options: a complete configuration, every refusal with its field path,
//! and the messages.

use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<Options> {
    Options::parse(&v, Some("whsec"))
}

/// The field path of the error `v` is refused with.
fn path(v: Value) -> String {
    match parse(v) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.path,
    }
}

fn minimal() -> Value {
    json!({
        "read": {"order": {
            "request": {"path": "/orders", "query": {"since": "{$cursor}", "offset": "{$page}"}},
            "records": ".orders",
            "pagination": {"kind": "offset", "has_more": ".more"},
            "incremental": {"field": ".updated_at", "look_back": "2s"}
        }},
        "write": {"stock": {
            "upsert": {"method": "PUT", "path": "/inventory/{.sku}", "body": "{on_hand}"}
        }},
    })
}

#[test]
fn a_complete_configuration_parses_and_declares_its_capabilities() {
    let o = parse(json!({
        "vars": {"channel": "sc_1"},
        "headers": {"x-client": "concord"},
        "auth": {"type": "oauth2", "token_url": "/oauth/token", "client_id": "c",
                 "grant": "refresh_token", "refresh_token": "r0"},
        "rate_limit": {"requests": 40, "per": "20s", "concurrency": 4,
                       "remaining_header": "x-ratelimit-remaining",
                       "reset_header": "x-ratelimit-reset"},
        "errors": [{"status": [409], "when": ".type == \"conflict\"", "class": "transient"}],
        "webhook": {
            "signature": {"header": "x-signature", "algorithm": "sha1", "encoding": "base64",
                          "prefix": "sha1=", "signed": "{timestamp}.{body}",
                          "timestamp_header": "x-timestamp", "secrets": ["a", "b"]},
            "dedupe": {"header": "x-event-id"},
            "records": ".events",
            "routes": [{"kind": "stock", "when": ".type == \"inventory\"", "id": ".sku",
                        "map": "{sku, location, on_hand, committed: 0}"}]
        },
        "read": {"order": {
            "request": {"path": "/orders"},
            "pagination": {"kind": "graphql", "page_info": ".data.orders.pageInfo"}
        }},
        "write": {
            "product": {
                "find": {"path": "/products", "query": {"sku": "{.sku}"}, "select": ".products[0]"},
                "create": {"path": "/products", "body": "{title: .name}"},
                "update": {"path": "/products/{$id}", "body": "{title: .name}"},
                "id": ".product.id",
                "idempotency_header": "Idempotency-Key"
            },
            "shipment": {"create": [
                {"name": "ful", "path": "/orders/{$refs[\"order:\" + .order]}/fulfillments",
                 "body": "{}", "select": ".fulfillment"},
                {"path": "/fulfillments/{$ful.id}/shipments", "body": "{tracking: .tracking_number}"}
            ]},
            "stock": {"upsert": {"method": "PUT", "path": "/inventory/{.sku}", "body": "."},
                      "bulk": {"max": 50, "request": {"path": "/inventory/batch", "body": "map(.record)"}}}
        }
    }))
    .unwrap();
    let caps = o.capabilities();
    assert!(caps.kind(Kind::Order).read.changes && caps.kind(Kind::Order).read.snapshot);
    assert!(!caps.kind(Kind::Order).write.upsert);
    assert!(caps.kind(Kind::Stock).read.webhook && caps.kind(Kind::Stock).write.upsert);
    assert_eq!(caps.kind(Kind::Stock).write.max_batch, 50);
    assert!(caps.kind(Kind::Shipment).write.upsert);
    assert!(!caps.kind(Kind::Customer).write.upsert && !caps.kind(Kind::Customer).read.changes);
    assert_eq!(caps.rate_limit.requests_per_sec, Some(2.0));
    assert_eq!(caps.rate_limit.max_concurrency, Some(4));
    assert!(!caps.rate_limit.adaptive);
    // Secrets never print.
    let shown = format!("{o:?}");
    assert!(!shown.contains("r0") || !shown.contains("refresh_token: Some(Secret(\"r0"));
    assert!(shown.contains("***"));
    assert!(!shown.contains("\"whsec\""));
    let o = parse(json!({"vars": {"password": "hunter2"},
        "write": {"stock": {"upsert": {"path": "/a"}}}}))
    .unwrap();
    let shown = format!("{o:?}");
    assert!(
        shown.contains("password") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn bad_configurations_are_refused_with_the_field_path() {
    assert!(parse(minimal()).is_ok());
    // `minimal()` with the value at `pointer` set (parents must exist).
    let with = |pointer: &str, v: Value| {
        let mut m = minimal();
        let (parent, last) = pointer.rsplit_once('/').expect(pointer);
        m.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect(parent)
            .insert(last.to_string(), v);
        m
    };
    let cases: Vec<(Value, &str)> = vec![
        (Value::Null, "options"),
        (json!({}), "options"),
        (json!({"reed": {}}), "options.reed"),
        (json!({"read": {"orders": {}}}), "options.read.orders"),
        (
            with("/read/order/request/path", json!("orders")),
            "options.read.order.request.path",
        ),
        (
            with("/read/order/request/path", json!("/orders/{.x")),
            "options.read.order.request.path",
        ),
        (
            with("/read/order/request/method", json!("FETCH")),
            "options.read.order.request.method",
        ),
        (
            with("/read/order/request/query/since", json!("{$nope}")),
            "options.read.order.request.query.since",
        ),
        (
            with("/read/order/records", json!(".orders[")),
            "options.read.order.records",
        ),
        (
            with("/read/order/pagination/kind", json!("pages")),
            "options.read.order.pagination.kind",
        ),
        (
            with("/read/order/pagination/has_more", json!(1)),
            "options.read.order.pagination.has_more",
        ),
        (
            with(
                "/read/order/pagination",
                json!({"kind": "offset", "next": ".n"}),
            ),
            "options.read.order.pagination.next",
        ),
        (
            with("/read/order/pagination", json!({"kind": "cursor"})),
            "options.read.order.pagination.next",
        ),
        (
            with("/read/order/pagination", json!({"kind": "graphql"})),
            "options.read.order.pagination.page_info",
        ),
        (
            with("/read/order/incremental/format", json!("date")),
            "options.read.order.incremental.format",
        ),
        (
            with("/read/order/incremental/look_back", json!("soon")),
            "options.read.order.incremental.look_back",
        ),
        (
            with("/read/order/incremental/field", json!("$found")),
            "options.read.order.incremental.field",
        ),
        (
            with("/read/order/request/when", json!("true")),
            "options.read.order.request.when",
        ),
        (
            with("/read/order/max_pages", json!(0)),
            "options.read.order.max_pages",
        ),
        (
            with("/write/stock/upsert/body", json!("{on_hand")),
            "options.write.stock.upsert.body",
        ),
        (
            with(
                "/write/stock/upsert/path",
                json!("/inventory/{$refs[\"a\"}"),
            ),
            "options.write.stock.upsert.path",
        ),
        (
            with("/write/stock/upsert/headers", json!({"bad header": "x"})),
            "options.write.stock.upsert.headers.\"bad header\"",
        ),
        (
            with("/write/stock/upsert/success", json!([99])),
            "options.write.stock.upsert.success[0]",
        ),
        (
            with("/write/stock/upsert/id", json!(".id")),
            "options.write.stock.upsert.id",
        ),
        (with("/write/stock", json!({})), "options.write.stock"),
        (
            with("/write/stock", json!({"upsert": []})),
            "options.write.stock.upsert",
        ),
        (
            with(
                "/write/stock",
                json!({"create": [{"name": "vars", "path": "/a"}]}),
            ),
            "options.write.stock.create[0].name",
        ),
        (
            with(
                "/write/stock",
                json!({"create": [{"path": "/a", "select": "."}]}),
            ),
            "options.write.stock.create[0].select",
        ),
        (
            with(
                "/write/stock",
                json!({"create": [{"path": "/a/{$later.id}"}, {"name": "later", "path": "/b"}]}),
            ),
            "options.write.stock.create[0].path",
        ),
        (
            with(
                "/write/stock",
                json!({"create": {"path": "/a"}, "find": {"path": "/a", "when": "true"}}),
            ),
            "options.write.stock.find.when",
        ),
        (
            with(
                "/write/stock",
                json!({"upsert": {"path": "/a"}, "bulk": {"max": 1, "request": {"path": "/b"}}}),
            ),
            "options.write.stock.bulk.max",
        ),
        (
            with(
                "/write/stock",
                json!({"upsert": {"path": "/a"}, "bulk": {"ops": ["cancel"], "request": {"path": "/b"}}}),
            ),
            "options.write.stock.bulk.ops[0]",
        ),
        (
            with(
                "/write/stock",
                json!({"upsert": {"path": "/a"}, "idempotency_header": "a b"}),
            ),
            "options.write.stock.idempotency_header",
        ),
        (
            with("/write/stock/upsert/frobnicate", json!(1)),
            "options.write.stock.upsert.frobnicate",
        ),
        (
            json!({"auth": {"type": "bearer"}, "write": minimal()["write"]}),
            "options.auth.token",
        ),
        (
            json!({"auth": {"type": "magic"}, "write": minimal()["write"]}),
            "options.auth.type",
        ),
        (
            json!({"auth": {"type": "basic", "user": "a:b"}, "write": minimal()["write"]}),
            "options.auth.user",
        ),
        (
            json!({"auth": {"type": "api_key", "name": "k", "value": "v", "in": "body"}, "write": minimal()["write"]}),
            "options.auth.in",
        ),
        (
            json!({"auth": {"type": "oauth2", "token_url": "ftp://x", "client_id": "c", "client_secret": "s"}, "write": minimal()["write"]}),
            "options.auth.token_url",
        ),
        (
            json!({"auth": {"type": "oauth2", "token_url": "/t", "client_id": "c", "grant": "refresh_token"}, "write": minimal()["write"]}),
            "options.auth.refresh_token",
        ),
        (
            json!({"auth": {"type": "oauth2", "token_url": "/t", "client_id": "c", "client_secret": "s", "extra": 1}, "write": minimal()["write"]}),
            "options.auth.extra",
        ),
        (
            json!({"auth": {"type": "login", "request": {"path": "/login"}}, "write": minimal()["write"]}),
            "options.auth",
        ),
        (
            json!({"auth": {"type": "login", "request": {"path": "/login"}, "token": ".token ["}, "write": minimal()["write"]}),
            "options.auth.token",
        ),
        (
            json!({"rate_limit": {"requests": -1}, "write": minimal()["write"]}),
            "options.rate_limit.requests",
        ),
        (
            json!({"rate_limit": {"concurrency": 0}, "write": minimal()["write"]}),
            "options.rate_limit.concurrency",
        ),
        (
            json!({"rate_limit": {"per": "0s", "requests": 1}, "write": minimal()["write"]}),
            "options.rate_limit.per",
        ),
        (
            json!({"rate_limit": {"reset": "later"}, "write": minimal()["write"]}),
            "options.rate_limit.reset",
        ),
        (
            json!({"errors": [{"class": "transient"}], "write": minimal()["write"]}),
            "options.errors[0]",
        ),
        (
            json!({"errors": [{"status": [500], "class": "fatal"}], "write": minimal()["write"]}),
            "options.errors[0].class",
        ),
        (
            json!({"errors": [{"when": ".a ==", "class": "permanent"}], "write": minimal()["write"]}),
            "options.errors[0].when",
        ),
        (
            json!({"max_response_bytes": 10, "write": minimal()["write"]}),
            "options.max_response_bytes",
        ),
        (
            json!({"webhook": {"routes": [{"kind": "stock"}]}}),
            "options.webhook.signature",
        ),
        (
            json!({"webhook": {"signature": {}, "routes": [{"kind": "stock"}]}}),
            "options.webhook.signature.header",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s", "algorithm": "md5"}, "routes": [{"kind": "stock"}]}}),
            "options.webhook.signature.algorithm",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s", "encoding": "hex64"}, "routes": [{"kind": "stock"}]}}),
            "options.webhook.signature.encoding",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s", "signed": "{timestamp}"}, "routes": [{"kind": "stock"}]}}),
            "options.webhook.signature.signed",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s", "signed": "{timestamp}.{body}"}, "routes": [{"kind": "stock"}]}}),
            "options.webhook.signature.timestamp_header",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s", "signed": "{id}.{body}"}, "routes": [{"kind": "stock"}]}}),
            "options.webhook.signature.signed",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s", "signed": "{nonce}.{body}"}, "routes": [{"kind": "stock"}]}}),
            "options.webhook.signature.signed",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s", "tolerance": "0s"}, "routes": [{"kind": "stock"}]}}),
            "options.webhook.signature.tolerance",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s", "secrets": []}, "routes": [{"kind": "stock"}]}}),
            "options.webhook.signature.secrets",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s", "secrets": ["a", ""]}, "routes": [{"kind": "stock"}]}}),
            "options.webhook.signature.secrets[1]",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s"}, "dedupe": {}, "routes": [{"kind": "stock"}]}}),
            "options.webhook.dedupe",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s"}}}),
            "options.webhook.routes",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s"}, "routes": []}}),
            "options.webhook.routes",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s"}, "routes": [{"kind": "stocks"}]}}),
            "options.webhook.routes[0].kind",
        ),
        (
            json!({"webhook": {"signature": {"header": "x-s"}, "routes": [{"kind": "stock", "when": "$key"}]}}),
            "options.webhook.routes[0].when",
        ),
    ];
    for (v, want) in cases {
        let got = path(v.clone());
        assert_eq!(got, want, "for {v}");
    }
    // Without a webhook_secret and without secrets.
    let e = Options::parse(
        &json!({"webhook": {"signature": {"header": "x-s"}, "routes": [{"kind": "stock"}]}}),
        None,
    )
    .unwrap_err();
    assert_eq!(e.path, "options.webhook.signature.secrets");
}

#[test]
fn messages_say_what_is_wrong() {
    let e = parse(json!({"read": {"order": {"request": {"path": "/o/{$nope}"}}}})).unwrap_err();
    assert!(e.message.contains("nope"), "{e}");
    let e = parse(json!({"write": {"stock": {"upsert": {"path": "/a", "mehtod": "PUT"}}}}))
        .unwrap_err();
    assert_eq!(e.path, "options.write.stock.upsert.mehtod");
    assert!(e.message.contains("unknown option"), "{e}");
    let e = parse(json!({"read": {"order": {"request": {"path": "/o"}, "records": ".a |\n ]"}}}))
        .unwrap_err();
    assert!(e.message.contains("line 2"), "{e}");
}

fn with_bulk(bulk: Value) -> Value {
    let mut v = minimal();
    v["read"]["order"]["bulk"] = bulk;
    v
}

fn a_bulk() -> Value {
    json!({
        "start": {"path": "/graphql", "body": "{query: \"mutation { run }\"}"},
        "job": ".data.run.job.id",
        "poll": {"path": "/graphql", "body": "{query: \"query\", variables: {id: $job}}"},
        "status": ".data.node.status",
        "running": ["CREATED", "RUNNING"],
        "done": ["COMPLETED"],
        "error": ".data.node.errorCode",
        "url": ".data.node.url",
        "interval": "1s",
        "timeout": "5m",
        "records": "if .sku == null then null else . end"
    })
}

#[test]
fn a_bulk_export_parses_with_its_defaults() {
    let o = parse(with_bulk(a_bulk())).unwrap();
    let b = o.read[&Kind::Order].bulk.as_ref().unwrap();
    assert_eq!(b.running, vec!["CREATED".to_string(), "RUNNING".into()]);
    assert_eq!(b.interval, Duration::from_secs(1));
    assert_eq!(b.timeout, Duration::from_secs(300));
    assert_eq!(b.max_line_bytes, 1024 * 1024);
    assert_eq!(b.max_bytes, bulk::DEFAULT_BULK_MAX_BYTES);
    // Without a bulk table a read has none.
    assert!(parse(minimal()).unwrap().read[&Kind::Order].bulk.is_none());
}

#[test]
fn a_bulk_export_is_refused_at_its_field_path() {
    let at = "options.read.order.bulk";
    let drop = |f: &str| {
        let mut b = a_bulk();
        b.as_object_mut().unwrap().remove(f);
        with_bulk(b)
    };
    for f in ["start", "job", "poll", "status", "running", "done", "url"] {
        assert_eq!(path(drop(f)), format!("{at}.{f}"), "without {f}");
    }
    let set = |f: &str, v: Value| {
        let mut b = a_bulk();
        b[f] = v;
        with_bulk(b)
    };
    assert_eq!(path(set("pol", json!(1))), format!("{at}.pol"));
    assert_eq!(path(set("done", json!(["RUNNING"]))), format!("{at}.done"));
    assert_eq!(path(set("running", json!([]))), format!("{at}.running"));
    assert_eq!(path(set("interval", json!("0s"))), format!("{at}.interval"));
    assert_eq!(
        path(set("timeout", json!("100ms"))),
        format!("{at}.timeout")
    );
    assert_eq!(path(set("timeout", json!("soon"))), format!("{at}.timeout"));
    assert_eq!(path(set("max_bytes", json!(10))), format!("{at}.max_bytes"));
    assert_eq!(
        path(set("max_line_bytes", json!(100_000_000))),
        format!("{at}.max_line_bytes")
    );
    assert_eq!(
        path(set("status", json!(".data |||"))),
        format!("{at}.status")
    );
    // The poll sees `$job`, the start does not.
    assert_eq!(
        path(set("start", json!({"path": "/g", "body": "{id: $job}"}))),
        format!("{at}.start.body")
    );
    assert_eq!(
        path(set("poll", json!({"path": "/g", "body": "{id: $page}"}))),
        format!("{at}.poll.body")
    );
    assert_eq!(
        path(set("poll", json!({"path": "/g", "select": ".x"}))),
        format!("{at}.poll.select")
    );
    assert_eq!(path(set("records", json!("$job"))), format!("{at}.records"));
}

#[test]
fn the_readme_sample_of_a_bulk_export_parses() {
    let readme = include_str!("../../../../../README.md");
    let start = readme
        .find("[endpoints.shop.options.read.product.bulk]")
        .expect("README has the sample");
    let end = start + readme[start..].find("```").unwrap();
    let doc: Value = toml::from_str(&readme[start..end]).unwrap();
    let bulk = doc["endpoints"]["shop"]["options"]["read"]["product"]["bulk"].clone();
    let mut v = minimal();
    v["read"]["product"] = json!({"request": {"path": "/p"}, "bulk": bulk});
    let o = parse(v).unwrap();
    assert!(o.read[&Kind::Product].bulk.is_some());
}
