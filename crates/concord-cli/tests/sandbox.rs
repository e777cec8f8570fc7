//! `concord sandbox` + `concord run -c examples/sandbox.toml` behave like the demo: the two
//! binaries run as separate processes (the sandbox on ephemeral ports, the shipped example
//! config pointed at them, with a storefront key per store), and the sandbox storefronts check
//! out through the hub's stock pool — with their keys, since the config closes `/v1` — so a
//! checkout beyond the pool is refused by the hub, and each order reaches the ERP with the
//! location its reservation took, where the ERP commits the units.
//!
//! Every wait is a condition polled under a deadline; both children are killed on every exit.

use concord_testkit::{free_port, wait_for_some};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);
const SECRETS: [(&str, &str); 3] = [
    ("CONCORD_ERP_WEBHOOK_SECRET", "sandbox-test-erp"),
    ("CONCORD_WEB1_WEBHOOK_SECRET", "sandbox-test-web1"),
    ("CONCORD_WEB2_WEBHOOK_SECRET", "sandbox-test-web2"),
];

/// A child process, SIGKILLed and reaped however the test ends; its output goes to `log`.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    /// Panics with the child's output when it has exited on its own.
    fn assert_alive(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("{what} exited by itself with {status}; its output:\n{log}");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn concord() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_concord"));
    c.env_remove("CONCORD_CONFIG")
        .env("CONCORD_LOG", "warn")
        .stdin(Stdio::null());
    for (k, v) in SECRETS {
        c.env(k, v);
    }
    c
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::File::create(path).expect("create a log file")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `concord sandbox` on ephemeral ports, checking out through `hub` with `keys`; returns the
/// child and the URLs it printed (`erp`, `web1`, `web2`).
fn start_sandbox(
    dir: &Path,
    hub: &str,
    keys: [(&str, &str); 2],
) -> (Running, BTreeMap<String, String>) {
    let log = dir.join("sandbox.log");
    let mut cmd = concord();
    cmd.args([
        "sandbox",
        "--hub",
        hub,
        "--skus",
        "3",
        "--auto-ship-ms",
        "0",
    ])
    .args(["--erp", "127.0.0.1:0", "--web1", "127.0.0.1:0"])
    .args(["--web2", "127.0.0.1:0"])
    .stdout(Stdio::piped())
    .stderr(log_file(&log));
    for (var, key) in keys {
        cmd.env(var, key);
    }
    let mut child = cmd.spawn().expect("spawn `concord sandbox`");
    let stdout = child.stdout.take().expect("the sandbox's stdout");
    let running = Running { child, log };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut urls = BTreeMap::new();
    let until = Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("`concord sandbox` printed no \"Ctrl-C to stop\": {e}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["sandbox", "ERP", url, ..] => {
                urls.insert("erp".to_string(), url.to_string());
            }
            ["sandbox", "store", name, url, ..] => {
                assert!(
                    line.contains("checkout through the hub's stock pool")
                        && line.contains("with its storefront key"),
                    "{line}"
                );
                urls.insert(name.to_string(), url.to_string());
            }
            ["Ctrl-C", ..] => break,
            _ => {}
        }
    }
    assert_eq!(
        urls.keys().collect::<Vec<_>>(),
        ["erp", "web1", "web2"],
        "{urls:?}"
    );
    (running, urls)
}

/// `examples/sandbox.toml`, pointed at the running sandbox and a hub on `port`, with a
/// storefront key per store (so `/v1` is closed to anyone without one).
fn example_config(
    dir: &Path,
    port: u16,
    urls: &BTreeMap<String, String>,
    keys: &[(&str, &str)],
) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sandbox.toml");
    let mut text = std::fs::read_to_string(&example).expect("read examples/sandbox.toml");
    for (fixed, actual) in [
        ("\"http://127.0.0.1:7001\"", format!("\"{}\"", urls["erp"])),
        ("\"http://127.0.0.1:7002\"", format!("\"{}\"", urls["web1"])),
        ("\"http://127.0.0.1:7003\"", format!("\"{}\"", urls["web2"])),
        (
            "listen = \"127.0.0.1:8080\"",
            format!("listen = \"127.0.0.1:{port}\""),
        ),
    ] {
        assert!(text.contains(fixed), "examples/sandbox.toml lost {fixed}");
        text = text.replace(fixed, &actual);
    }
    for (channel, key) in keys {
        let hash = hex(&concord_engine::config::access::token_hash(key));
        text.push_str(&format!(
            "\n[[commerce.keys]]\nname = \"{channel}\"\nchannel = \"{channel}\"\nsha256 = \"{hash}\"\n"
        ));
    }
    let path = dir.join("concord.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

async fn get(http: &reqwest::Client, url: &str, key: Option<&str>) -> Option<(u16, Value)> {
    let mut req = http.get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let resp = http.post(url).json(&body).send().await.expect("POST");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Poll `probe` until it returns `Some`; panic naming `what` after [`DEADLINE`] (or at once,
/// with the hub's output, when the hub has died).
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    hub: &mut Running,
    mut probe: impl FnMut() -> F,
) -> T {
    wait_for_some(what, DEADLINE, async || {
        hub.assert_alive("`concord run`");
        probe().await
    })
    .await
}

#[tokio::test]
async fn sandbox_storefronts_check_out_through_the_hub_like_the_demo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let hub_url = format!("http://127.0.0.1:{port}");
    let keys = [
        ("web1", "sandbox-test-key-web1"),
        ("web2", "sandbox-test-key-web2"),
    ];
    let (_sandbox, urls) = start_sandbox(
        dir.path(),
        &hub_url,
        [
            ("CONCORD_WEB1_STOREFRONT_KEY", keys[0].1),
            ("CONCORD_WEB2_STOREFRONT_KEY", keys[1].1),
        ],
    );
    let config = example_config(dir.path(), port, &urls, &keys);
    let log = dir.path().join("hub.log");
    let out = log_file(&log);
    let err = out.try_clone().expect("clone the log file handle");
    let child = concord()
        .arg("run")
        .arg("-c")
        .arg(&config)
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn `concord run`");
    let mut hub = Running { child, log };
    let http = reqwest::Client::new();

    // The pool knows the ERP's figures: 30 units at WH1 and at WH2 for web1.
    let ats_url = format!("{hub_url}/v1/availability?channel=web1&sku=SKU-0001");
    let ats = |http: reqwest::Client, url: String| async move {
        match get(&http, &url, Some(keys[0].1)).await {
            Some((200, v)) => v["skus"][0]["ats"].as_i64(),
            _ => None,
        }
    };
    wait_for("web1 may sell the 60 units of SKU-0001", &mut hub, || {
        let (http, url) = (http.clone(), ats_url.clone());
        async move { ats(http, url).await.filter(|n| *n == 60) }
    })
    .await;

    // Each store's checkout reserves in the pool; its lines carry the reservation's location.
    let checkout =
        |lines: Value| json!({"email": "ann@example.com", "name": "Ann", "lines": lines});
    let (st, o1) = post(
        &http,
        &format!("{}/api/checkout", urls["web1"]),
        checkout(json!([{"sku": "SKU-0001", "quantity": 2}])),
    )
    .await;
    assert_eq!(st, 201, "{o1}");
    assert_eq!(
        o1["lines"][0]["location"], "WH1",
        "web1 takes WH1 first: {o1}"
    );
    let (st, o2) = post(
        &http,
        &format!("{}/api/checkout", urls["web2"]),
        checkout(json!([{"sku": "SKU-0001", "quantity": 3}])),
    )
    .await;
    assert_eq!(st, 201, "{o2}");
    assert_eq!(
        o2["lines"][0]["location"], "WH2",
        "web2 takes WH2 first: {o2}"
    );

    // Beyond the pool: the hub refuses it (not the store's own copy of the inventory).
    let (st, refused) = post(
        &http,
        &format!("{}/api/checkout", urls["web1"]),
        checkout(json!([{"sku": "SKU-0002", "quantity": 61}])),
    )
    .await;
    assert_eq!(st, 409, "{refused}");
    let (_, counters) = get(&http, &format!("{}/_control/counters", urls["web1"]), None)
        .await
        .expect("web1's counters");
    assert_eq!(
        (&counters["hub_refused"], &counters["oversell_refused"]),
        (&json!(1), &json!(0)),
        "{counters}"
    );

    // The orders reach the ERP, which commits each line where the hub held it.
    for (reference, location, sku_location, quantity) in [
        ("web1/1001", "WH1", "SKU-0001/WH1", 2),
        ("web2/1001", "WH2", "SKU-0001/WH2", 3),
    ] {
        let url = format!("{}/api/sales-orders?reference={reference}", urls["erp"]);
        let line = wait_for(&format!("the ERP has {reference}"), &mut hub, || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let (_, v) = get(&http, &url, None).await?;
                v["orders"][0]["record"]["lines"].get(0).cloned()
            }
        })
        .await;
        assert_eq!(
            (&line["location"], &line["quantity"]),
            (&json!(location), &json!(quantity)),
            "{reference}: {line}"
        );
        let (_, stock) = get(
            &http,
            &format!("{}/api/stock/{sku_location}", urls["erp"]),
            None,
        )
        .await
        .expect("the ERP's stock");
        assert_eq!(stock["committed"], quantity, "{sku_location}: {stock}");
    }
    // …and the pool follows: 60 − 5 units left for web1, once the ERP's figures are in.
    wait_for("web1 may sell 55 units of SKU-0001", &mut hub, || {
        let (http, url) = (http.clone(), ats_url.clone());
        async move { ats(http, url).await.filter(|n| *n == 55) }
    })
    .await;
    hub.assert_alive("`concord run`");
}
