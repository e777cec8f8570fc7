//! The `concord` binary from the outside: `validate` on every shipped example (exit 0, "OK") and
//! on every broken config of the engine's test suite (exit 2, naming the file and the faulty
//! field's path from the file's `# path:` header), on a missing file and on a config that asks a
//! connector for something it cannot do; `dlq list` and `status` on a fresh store; and the whole
//! `concord demo`, which must end with `lost: 0`; `concord token new` (a fresh token printed once,
//! its hashed config entry valid; `validate` warns when the storefront API is open); `config
//! schema` prints the committed `docs/concord.schema.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn concord(args: &[&str], envs: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .env_remove("CONCORD_CONFIG")
        .output()
        .expect("run the concord binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// `export NAME=...` lines in an example's comments: the variables it documents.
fn documented_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim_start_matches('#').trim().strip_prefix("export "))
        .filter_map(|rest| rest.split('=').next())
        .map(|name| (name.trim().to_string(), format!("test-{}", name.trim())))
        .collect()
}

#[test]
fn every_example_validates() {
    let examples = toml_files(&workspace().join("examples"));
    assert!(!examples.is_empty(), "no examples found");
    for file in examples {
        let body = std::fs::read_to_string(&file).expect("read example");
        let envs = documented_env(&body);
        let out = concord(&["validate", "-c", file.to_str().unwrap()], &envs);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} (env {envs:?}): stderr {}",
            file.display(),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("OK"),
            "{}: stdout {}",
            file.display(),
            text(&out.stdout)
        );
    }
}

#[test]
fn every_broken_config_is_refused_with_its_path() {
    let dir = workspace().join("crates/concord-engine/tests/configs/broken");
    let files = toml_files(&dir);
    assert!(
        files.len() > 10,
        "broken configs not found in {}",
        dir.display()
    );
    for file in files {
        let body = std::fs::read_to_string(&file).expect("read broken config");
        let header = |key: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(&format!("# {key}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("{} has no `# {key}:` header", file.display()))
        };
        let (expect, path) = (header("expect"), header("path"));
        let out = concord(&["validate", "-c", file.to_str().unwrap()], &[]);
        let err = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: expected exit 2; stderr {err}",
            file.display()
        );
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            err.contains(name),
            "{name}: stderr does not name the file: {err}"
        );
        assert!(
            err.contains(&path),
            "{name}: stderr does not name `{path}`: {err}"
        );
        assert!(
            err.contains(&expect),
            "{name}: stderr does not say `{expect}`: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{name}: stdout {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let out = concord(&["validate", "-c", missing.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "stderr {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("nope.toml"));
}

const SHOP_SHIPMENTS: &str = r#"
[store]
path = "concord.sqlite"

[endpoints.erp]
connector = "sandbox-erp"
url = "http://127.0.0.1:7001"

[endpoints.web1]
connector = "sandbox-shop"
url = "http://127.0.0.1:7002"

# A storefront cannot read shipments: it only receives them.
[[flows]]
name = "shipments-from-shop"
kind = "shipment"
pattern = "broadcast"
mode = "delta"
interval = "1s"
from = ["web1"]
to = ["erp"]
"#;

#[test]
fn a_flow_the_connector_cannot_serve_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("caps.toml");
    std::fs::write(&file, SHOP_SHIPMENTS).unwrap();
    let out = concord(&["validate", "-c", file.to_str().unwrap()], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr {err}");
    assert!(err.contains("caps.toml"), "{err}");
    assert!(err.contains("flows[0].mode"), "{err}");
    assert!(err.contains("web1"), "{err}");
    // `run` refuses it the same way, before binding anything.
    let out = concord(&["run", "-c", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "stderr {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("flows[0].mode"));
}

const FRESH: &str = r#"
[store]
path = "state/concord.sqlite"

[endpoints.erp]
connector = "sandbox-erp"
url = "http://127.0.0.1:7001"

[endpoints.web1]
connector = "sandbox-shop"
url = "http://127.0.0.1:7002"

[[flows]]
name = "orders-to-erp"
kind = "order"
pattern = "aggregation"
mode = "delta"
interval = "5s"
from = ["web1"]
to = ["erp"]
"#;

#[test]
fn dlq_and_status_work_on_a_fresh_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fresh.toml");
    std::fs::write(&file, FRESH).unwrap();
    let cfg = file.to_str().unwrap();
    for args in [
        vec!["dlq", "list", "-c", cfg],
        vec!["dlq", "-c", cfg, "list"],
        vec!["dlq", "list", "--json", "-c", cfg],
        vec!["status", "-c", cfg],
        vec!["status", "--json", "-c", cfg],
    ] {
        let out = concord(&args, &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: stderr {}",
            text(&out.stderr)
        );
    }
    let out = concord(&["dlq", "list", "-c", cfg], &[]);
    assert!(
        text(&out.stdout).contains("no dead letters"),
        "{}",
        text(&out.stdout)
    );
    let out = concord(&["status", "--json", "-c", cfg], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert_eq!(v["store"]["journal_total"], 0, "{v}");
    assert_eq!(v["store"]["dead_letters_open"], 0, "{v}");
    assert_eq!(
        v["orders"],
        serde_json::json!({}),
        "no orders by state yet: {v}"
    );
    assert_eq!(v["parked"], serde_json::json!([]), "{v}");
    // An order the hub never saw is a usage error naming the key shape.
    let out = concord(&["order", "web1/404", "-c", cfg], &[]);
    assert_eq!(out.status.code(), Some(2), "stderr {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no order `web1/404`"),
        "{}",
        text(&out.stderr)
    );
    // The store was created where the config says (relative to the config file).
    assert!(dir.path().join("state/concord.sqlite").exists());
    // Acting on nothing is a usage error, not a crash.
    let out = concord(&["dlq", "replay", "-c", cfg], &[]);
    assert_eq!(out.status.code(), Some(2), "stderr {}", text(&out.stderr));
    let out = concord(&["dlq", "list"], &[]);
    assert_eq!(out.status.code(), Some(2), "stderr {}", text(&out.stderr));
    // A standby needs a shared database: on an SQLite store it is a usage error, at once.
    let out = concord(&["run", "--standby", "-c", cfg], &[]);
    assert_eq!(out.status.code(), Some(2), "stderr {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--standby needs a PostgreSQL store ([store] url)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_demo_loses_nothing() {
    let out = concord(&["demo", "--seconds", "8"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "demo failed:\n{stdout}\nstderr {}",
        text(&out.stderr)
    );
    assert!(stdout.contains("lost: 0"), "{stdout}");
    assert!(stdout.contains("result: OK"), "{stdout}");
}

/// `concord token new` prints a fresh token once and the config entry with its SHA-256; the
/// entry makes a valid config; a bad role or name is a usage error.
#[test]
fn token_new_prints_the_token_and_its_hashed_entry() {
    let run = |args: &[&str]| concord(args, &[]);
    let out = run(&["token", "new", "--name", "ops", "--role", "operator"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    let token = lines
        .iter()
        .position(|l| l.starts_with("token (shown once"))
        .and_then(|i| lines.get(i + 1))
        .expect("the token line")
        .to_string();
    assert_eq!(token.len(), 64, "32 random bytes in hex: {token}");
    let hash: String = concord_engine::config::access::token_hash(&token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(stdout.contains("[[admin.tokens]]"), "{stdout}");
    assert!(stdout.contains(&format!("sha256 = \"{hash}\"")), "{stdout}");
    assert!(stdout.contains("role = \"operator\""), "{stdout}");
    let again = text(&run(&["token", "new", "--name", "ops", "--role", "viewer"]).stdout);
    assert!(!again.contains(&token), "every token is new");

    // The printed entry is a valid config entry.
    let dir = tempfile::tempdir().expect("tempdir");
    let entry = &stdout[stdout.find("[[admin.tokens]]").expect("entry")..];
    let config = format!(
        "[endpoints.erp]\nconnector = \"sandbox-erp\"\nurl = \"http://127.0.0.1:7001\"\n\n\
         [endpoints.web1]\nconnector = \"sandbox-shop\"\nurl = \"http://127.0.0.1:7002\"\n\n\
         [[flows]]\nname = \"stock\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\n\
         from = [\"erp\"]\nto = [\"web1\"]\n\n{entry}"
    );
    let file = dir.path().join("concord.toml");
    std::fs::write(&file, &config).expect("write config");
    let out = concord(&["validate", "-c", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // No storefront keys: validate says the storefront API is open.
    assert!(
        text(&out.stdout).contains("warning: the storefront API (/v1) is open"),
        "{}",
        text(&out.stdout)
    );

    let key = text(&run(&["token", "new", "--name", "shop", "--channel", "web1"]).stdout);
    assert!(
        key.contains("[[commerce.keys]]") && key.contains("channel = \"web1\""),
        "{key}"
    );
    for bad in [
        &["token", "new", "--name", "ops", "--role", "admin"][..],
        &["token", "new", "--name", "Ops!", "--role", "viewer"][..],
        &["token", "new", "--name", "ops"][..],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
    }
}

/// `concord order KEY` prints one order's history from the store (text and `--json`), and
/// `concord status` counts orders by state.
#[tokio::test]
async fn order_prints_one_orders_history() {
    use concord_store::{NewOrderEvent, OrderWrite, ProcessBatch, SqliteStore, Store};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fresh.toml");
    std::fs::write(&file, FRESH).unwrap();
    let cfg = file.to_str().unwrap();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    {
        let store = SqliteStore::open(dir.path().join("state/concord.sqlite")).unwrap();
        let event =
            |from: Option<&str>, to: &str, applied: bool, reason: Option<&str>| NewOrderEvent {
                at: 1_764_000_000_000,
                from: from.map(str::to_owned),
                to: to.into(),
                applied,
                event: if applied { "transition" } else { "rejected" }.into(),
                cause_kind: Some(concord_core::Kind::Order),
                cause_key: Some("web1/1001".into()),
                reason: reason.map(str::to_owned),
                journal_id: None,
            };
        let write = |state: Option<&str>, ev: NewOrderEvent| OrderWrite {
            key: "web1/1001".into(),
            channel: "web1".into(),
            state: state.map(str::to_owned),
            facts: state.map(|_| serde_json::json!({"ordered": {"SKU-1": 2}})),
            child: None,
            event: Some(ev),
        };
        store
            .apply(
                ProcessBatch {
                    orders: vec![
                        write(Some("placed"), event(None, "placed", true, None)),
                        write(
                            None,
                            event(Some("placed"), "cancelled", false, Some("a test reason")),
                        ),
                    ],
                    ..ProcessBatch::default()
                },
                1_764_000_000_000,
            )
            .await
            .unwrap();
        store.close().await;
    }
    let out = concord(&["order", "web1/1001", "-c", cfg], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr {}", text(&out.stderr));
    assert!(stdout.contains("order web1/1001"), "{stdout}");
    assert!(stdout.contains("state: placed"), "{stdout}");
    assert!(
        stdout.contains("placed → cancelled REFUSED by order web1/1001: a test reason"),
        "{stdout}"
    );
    let out = concord(&["order", "web1/1001", "--json", "-c", cfg], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("order --json is JSON");
    assert_eq!(v["order"]["state"], "placed", "{v}");
    assert_eq!(v["events"].as_array().map(Vec::len), Some(2), "{v}");
    let out = concord(&["status", "--json", "-c", cfg], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(v["orders"]["placed"], 1, "{v}");
    let out = concord(&["status", "-c", cfg], &[]);
    assert!(
        text(&out.stdout).contains("orders by state"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn config_schema_prints_the_committed_schema() {
    let out = concord(&["config", "schema"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let committed = std::fs::read_to_string(workspace().join("docs/concord.schema.json"))
        .expect("docs/concord.schema.json");
    assert!(
        text(&out.stdout) == committed,
        "`concord config schema` differs from docs/concord.schema.json: regenerate it with \
         `concord config schema > docs/concord.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(schema["additionalProperties"], false);
    assert!(schema["properties"]["flows"].is_object(), "{schema}");
}
