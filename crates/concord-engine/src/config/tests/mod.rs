//! Unit tests of loading: defaults, `${ENV}`, each rule with the path it reports. This file:
//! the helpers, defaults, `${ENV}` and syntax; `flows.rs` the flow and ownership rules;
//! `sections.rs` endpoints, engine, server and the other sections.

mod flows;
mod sections;

use super::*;
use serde_json::json;

const ENDPOINTS: &str = r#"
[endpoints.erp]
connector = "sandbox-erp"
url = "http://127.0.0.1:7001"
[endpoints.web1]
connector = "sandbox-shop"
url = "http://127.0.0.1:7002"
[endpoints.web2]
connector = "sandbox-shop"
url = "http://127.0.0.1:7003"
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str_with_env(text, Path::new("/etc/concord/concord.toml"), no_env)
}

/// The endpoints above plus one flow given as its body.
fn with_flow(flow: &str) -> Result<Config, ConfigError> {
    load(&format!(
        "{ENDPOINTS}\n[[flows]]\nname = \"f\"\nkind = \"stock\"\n{flow}\n"
    ))
}

#[track_caller]
fn assert_err(r: Result<Config, ConfigError>, path: &str, message: &str) {
    match r {
        Ok(_) => panic!("expected an error at {path} containing {message:?}, got Ok"),
        Err(e) => {
            assert_eq!(e.path, path, "{e}");
            assert!(e.message.contains(message), "{e}");
        }
    }
}

#[test]
fn minimal_config_gets_every_default() {
    let c = with_flow(
        "pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]",
    )
    .unwrap();
    assert_eq!(c.store.path, PathBuf::from("/etc/concord/concord.sqlite"));
    assert_eq!(c.server, ServerConfig::default());
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.max_body_bytes, 1_048_576);
    assert_eq!(c.engine, EngineSettings::default());
    assert_eq!(c.engine.batch_size, 256);
    assert_eq!(c.engine.backoff_base, Duration::from_millis(200));
    assert_eq!(c.engine.endpoint_concurrency, 8);
    assert_eq!(
        c.engine.jq,
        Budget {
            steps: 1_000_000,
            timeout: Duration::from_secs(1),
            max_bytes: 4 << 20,
        }
    );
    let f = &c.flows[0];
    assert_eq!(f.overlap, Duration::from_secs(5));
    assert_eq!(f.page_size, 500);
    assert_eq!(f.mode, Mode::Realtime { poll: None });
    assert!(f.filter.is_none() && f.map_in.is_none() && f.map_out.is_empty());
    let erp = &c.endpoints["erp"];
    assert_eq!(erp.timeout, Duration::from_secs(10));
    assert_eq!(erp.options, json!({}));
    assert_eq!(erp.webhook_secret, None);
    assert!(c.ownership.is_empty());
    assert_eq!(c.ownership_of(Kind::Product), Ownership::default());
}

#[tokio::test]
async fn explicit_settings_are_read() {
    let text = format!(
        r#"
[store]
path = "data/hub.sqlite"
[server]
listen = "0.0.0.0:9000"
max_body_bytes = "2MiB"
[engine]
batch_size = 10
lease = "1m"
backoff_base = "50ms"
backoff_cap = "5s"
max_attempts = 3
breaker_threshold = 2
breaker_open = "500ms"
breaker_max_open = "10s"
endpoint_concurrency = 4
jq_steps = 5000
jq_timeout = "250ms"
jq_max_bytes = "64KiB"
{ENDPOINTS}
[endpoints.erp.options]
location = "WH1"
nested = {{ a = [1, 2.5, true] }}
[[flows]]
name = "stock-to-stores"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
poll = "30s"
from = ["erp"]
to = ["web1", "web2"]
filter = '.on_hand >= 0'
overlap = "0s"
page_size = 50
[flows.map_out]
web1 = '{{sku, available: (.on_hand - .committed)}}'
"*" = '.'
[ownership.product]
default = "erp"
fields = {{ description = "web1" }}
"#
    );
    let c = Config::from_toml_str_with_env(&text, Path::new("concord.toml"), no_env).unwrap();
    assert_eq!(c.store.path, PathBuf::from("data/hub.sqlite"));
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(c.server.max_body_bytes, 2 << 20);
    assert_eq!(
        c.engine,
        EngineSettings {
            batch_size: 10,
            lease: Duration::from_secs(60),
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_secs(5),
            max_attempts: 3,
            breaker_threshold: 2,
            breaker_open: Duration::from_millis(500),
            breaker_max_open: Duration::from_secs(10),
            endpoint_concurrency: 4,
            jq: Budget {
                steps: 5000,
                timeout: Duration::from_millis(250),
                max_bytes: 64 << 10,
            },
            ..EngineSettings::default()
        }
    );
    // Every program is compiled with the budget and named by its path.
    let f = &c.flows[0];
    for (m, name) in [
        (f.filter.as_ref().unwrap(), "flows[0].filter"),
        (f.map_out_for("web1").unwrap(), "flows[0].map_out.web1"),
        (f.map_out_for("web2").unwrap(), "flows[0].map_out.\"*\""),
    ] {
        assert_eq!(m.budget(), &c.engine.jq);
        assert_eq!(m.name(), name);
    }
    assert_eq!(
        c.endpoints["erp"].options,
        json!({"location": "WH1", "nested": {"a": [1, 2.5, true]}})
    );
    let f = &c.flows[0];
    assert_eq!(
        f.mode,
        Mode::Realtime {
            poll: Some(Duration::from_secs(30))
        }
    );
    assert_eq!(f.overlap, Duration::ZERO);
    assert_eq!(f.page_size, 50);
    let vars = crate::mapping::MapVars::default();
    let rec = json!({"sku": "A", "on_hand": 5, "committed": 2});
    assert_eq!(f.filter.as_ref().unwrap().test(&rec, &vars).await, Ok(true));
    assert_eq!(
        f.map_out_for("web1").unwrap().apply(&rec, &vars).await,
        Ok(json!({"sku": "A", "available": 3}))
    );
    assert_eq!(f.map_out_for("web2").unwrap().source(), ".");
    assert_eq!(
        c.ownership[&Kind::Product].owner("description"),
        Some("web1")
    );
    assert_eq!(c.ownership[&Kind::Product].owner("name"), Some("erp"));
    assert_eq!(c.flows_for(Kind::Stock, "erp").count(), 1);
    assert_eq!(c.flows_for(Kind::Stock, "web1").count(), 0);
    assert_eq!(c.flows_for(Kind::Product, "erp").count(), 0);
}

#[test]
fn env_references_are_resolved() {
    let text = ENDPOINTS.replace(
        "url = \"http://127.0.0.1:7001\"",
        "url = \"http://${ERP_HOST}:7001\"\nwebhook_secret = \"${ERP_SECRET}\"\n[endpoints.erp.options]\nliteral = \"$${NOT_A_VAR}\"",
    ) + "[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n";
    let env = |name: &str| match name {
        "ERP_HOST" => Some("erp.internal".to_string()),
        "ERP_SECRET" => Some("s3cr3t-value".to_string()),
        _ => None,
    };
    let c = Config::from_toml_str_with_env(&text, Path::new("c.toml"), env).unwrap();
    let erp = &c.endpoints["erp"];
    assert_eq!(erp.url, "http://erp.internal:7001");
    assert_eq!(
        erp.webhook_secret.as_ref().map(|s| s.expose()),
        Some("s3cr3t-value")
    );
    assert_eq!(erp.options, json!({"literal": "${NOT_A_VAR}"}));
    assert!(!format!("{c:?}").contains("s3cr3t-value"));

    // A missing variable names the field and the variable.
    let e = Config::from_toml_str_with_env(&text, Path::new("c.toml"), |n: &str| {
        (n == "ERP_HOST").then(|| "h".to_string())
    })
    .unwrap_err();
    assert_eq!(e.path, "endpoints.erp.webhook_secret");
    assert!(e.message.contains("`ERP_SECRET` is not set"), "{e}");
    assert_eq!(
        e.to_string(),
        "c.toml: endpoints.erp.webhook_secret: environment variable `ERP_SECRET` is not set"
    );
}

#[test]
fn substituted_values_never_appear_in_errors() {
    let text = format!(
        "{ENDPOINTS}[server]\nlisten = \"${{LISTEN}}\"\n[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n"
    );
    let e = Config::from_toml_str_with_env(&text, Path::new("c.toml"), |_: &str| {
        Some("hunter2-secret".to_string())
    })
    .unwrap_err();
    assert_eq!(e.path, "server.listen");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(e.message.contains("***"), "{e}");
}

#[test]
fn process_environment_is_used_by_default() {
    // A name no one else uses: tests run in parallel in one process.
    std::env::set_var("CONCORD_CONFIG_UNIT_TEST_URL", "http://10.0.0.9:1");
    let text = ENDPOINTS.replace("http://127.0.0.1:7001", "${CONCORD_CONFIG_UNIT_TEST_URL}")
        + "[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n";
    let c = Config::from_toml_str(&text, Path::new("c.toml")).unwrap();
    assert_eq!(c.endpoints["erp"].url, "http://10.0.0.9:1");
}

#[test]
fn syntax_errors_give_line_and_column() {
    let e = load("[store]\npath = \"x\"\nlisten = = 3\n").unwrap_err();
    assert_eq!(e.path, "");
    assert!(e.message.contains("line 3, column"), "{e}");
    assert!(
        e.to_string()
            .starts_with("/etc/concord/concord.toml: TOML syntax error at line 3"),
        "{e}"
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    assert_err(load("stoer = 1\n"), "stoer", "unknown field `stoer`");
    assert_err(
        load("[engine]\nbatchsize = 1\n"),
        "engine.batchsize",
        "unknown field `batchsize`",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\nintervall = \"1s\""),
        "flows[0].intervall",
        "expected one of",
    );
    assert_err(
        load(&ENDPOINTS.replace("[endpoints.web2]", "[endpoints.web2]\nsecret = \"x\"")),
        "endpoints.web2.secret",
        "unknown field `secret`",
    );
}

#[test]
fn types_are_checked_with_their_path() {
    assert_err(
        with_flow(
            "pattern = \"broadcast\"\nmode = \"sometimes\"\nfrom = [\"erp\"]\nto = [\"web1\"]",
        ),
        "flows[0].mode",
        "unknown variant `sometimes`",
    );
    assert_err(
        load(&format!("{ENDPOINTS}[[flows]]\nname = \"f\"\nkind = \"stocks\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n")),
        "flows[0].kind",
        "unknown variant `stocks`",
    );
    assert_err(
        load("[engine]\nbatch_size = \"many\"\n"),
        "engine.batch_size",
        "invalid type",
    );
    assert_err(load("[engine]\nbatch_size = -1\n"), "engine.batch_size", "");
}
