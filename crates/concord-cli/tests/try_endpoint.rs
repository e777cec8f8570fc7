//! `concord try` from the outside: one read and one write against a small local HTTP server,
//! printing the requests (credentials redacted), the answers and the canonical records; a
//! record the configuration maps badly is shown with the reason; a wrong endpoint name is a
//! usage error (exit 2).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// A one-thread HTTP/1.1 server: every request is recorded and answered by `answer`.
fn serve(answer: fn(&str, &str) -> (u16, String)) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let body = String::from_utf8_lossy(&body).into_owned();
            let request_line = head.lines().next().unwrap_or("").to_string();
            log.lock().unwrap().push(format!("{head}\n{body}"));
            let (status, reply) = answer(&request_line, &body);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (url, seen)
}

fn answer(request_line: &str, _body: &str) -> (u16, String) {
    if request_line.starts_with("GET /items") {
        (
            200,
            r#"{"items":[{"code":"SKU-1","title":"One","updated":"2026-01-01T00:00:00Z"},{"code":"SKU-2","title":null,"updated":"2026-01-01T00:00:01Z"}]}"#.into(),
        )
    } else if request_line.starts_with("PUT /items/SKU-9") {
        (200, r#"{"item":{"id":"it-9"}}"#.into())
    } else {
        (404, r#"{"message":"no"}"#.into())
    }
}

fn config(dir: &Path, url: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[store]
path = "{store}"

[endpoints.api]
connector = "http"
url = "{url}"
[endpoints.api.options]
auth = {{ type = "bearer", token = "tok-very-secret" }}
[endpoints.api.options.read.product]
request = {{ path = "/items", query = {{ since = "{{$cursor}}" }} }}
records = ".items"
id = ".code"
map = "{{sku: .code, name: .title}}"
incremental = {{ field = ".updated" }}
[endpoints.api.options.write.product]
id = ".item.id"
upsert = {{ method = "PUT", path = "/items/{{.sku}}", body = "{{title: .name}}" }}

[endpoints.dst]
connector = "http"
url = "{url}"
[endpoints.dst.options.write.product.upsert]
method = "PUT"
path = "/items/{{.sku}}"

[[flows]]
name = "products"
kind = "product"
pattern = "broadcast"
mode = "delta"
interval = "1m"
from = ["api"]
to = ["dst"]
"#,
        store = dir.join("hub.sqlite").display()
    );
    let path = dir.join("concord.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn concord(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(args)
        .env_remove("CONCORD_CONFIG")
        .output()
        .expect("run the concord binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn try_reads_and_writes_once_and_prints_the_exchange() {
    let dir = tempfile::tempdir().expect("tmp");
    let (url, seen) = serve(answer);
    let cfg = config(dir.path(), &url);
    let cfg = cfg.to_str().unwrap();

    let out = concord(&["try", "-c", cfg, "api", "product", "--json"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["requests"][0]["method"], "GET");
    assert_eq!(report["requests"][0]["status"], 200);
    assert!(report["requests"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with("/items"));
    assert_eq!(report["records"][0]["canonical"]["sku"], "SKU-1");
    assert_eq!(report["records"][0]["version"], "2026-01-01T00:00:00Z");
    // A record the configuration maps into something invalid says why.
    assert!(
        report["records"][1]["error"]
            .as_str()
            .unwrap()
            .contains("name"),
        "{report}"
    );
    assert!(report["cursor"]
        .as_str()
        .unwrap()
        .contains("2026-01-01T00:00:01Z"));
    assert!(!stdout.contains("tok-very-secret"), "credential printed");
    assert!(seen.lock().unwrap()[0].contains("Bearer tok-very-secret"));

    let record = dir.path().join("p.json");
    std::fs::write(&record, r#"{"sku": "SKU-9", "name": "Nine"}"#).unwrap();
    let out = concord(&[
        "try",
        "-c",
        cfg,
        "api",
        "product",
        "--write",
        record.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("> PUT "), "{stdout}");
    assert!(stdout.contains("/items/SKU-9"), "{stdout}");
    assert!(stdout.contains(r#"{"title":"Nine"}"#), "{stdout}");
    assert!(stdout.contains("< HTTP 200"), "{stdout}");
    assert!(stdout.contains("\"external_id\": \"it-9\""), "{stdout}");
    assert!(stdout.contains("authorization: ***"), "{stdout}");
    assert!(!stdout.contains("tok-very-secret"));

    // A write the API refuses: exit 1 with the classification.
    std::fs::write(&record, r#"{"sku": "SKU-404", "name": "Gone"}"#).unwrap();
    let out = concord(&[
        "try",
        "-c",
        cfg,
        "api",
        "product",
        "--write",
        record.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("permanent: HTTP 404"),
        "{}",
        text(&out.stdout)
    );

    let out = concord(&["try", "-c", cfg, "nope", "product"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no endpoint `nope`"));
}
