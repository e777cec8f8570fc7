//! Unit tests of loading: defaults, `${ENV}`, each rule with the path it reports.

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

#[test]
fn at_least_one_endpoint_and_one_flow() {
    assert_err(load(""), "endpoints", "at least one endpoint");
    assert_err(load(ENDPOINTS), "flows", "at least one flow");
}

#[test]
fn broadcast_needs_exactly_one_source_and_some_destinations() {
    assert!(with_flow(
        "pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\", \"web2\"]"
    )
    .is_ok());
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\", \"web1\"]\nto = [\"web2\"]"),
        "flows[0].from",
        "a broadcast flow has exactly one source, got 2",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = []"),
        "flows[0].to",
        "at least one destination",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]"),
        "flows[0].to",
        "missing",
    );
}

#[test]
fn aggregation_needs_some_sources_and_exactly_one_destination() {
    assert!(with_flow("pattern = \"aggregation\"\nmode = \"realtime\"\nfrom = [\"web1\", \"web2\"]\nto = [\"erp\"]").is_ok());
    assert_err(
        with_flow("pattern = \"aggregation\"\nmode = \"realtime\"\nfrom = [\"web1\"]\nto = [\"erp\", \"web2\"]"),
        "flows[0].to",
        "exactly one destination, got 2",
    );
    assert_err(
        with_flow("pattern = \"aggregation\"\nmode = \"realtime\"\nfrom = []\nto = [\"erp\"]"),
        "flows[0].from",
        "at least one source",
    );
}

#[test]
fn bidirectional_uses_between_two_endpoints() {
    let c = with_flow(
        "pattern = \"bidirectional\"\nmode = \"realtime\"\nbetween = [\"web1\", \"web2\"]",
    )
    .unwrap();
    let f = &c.flows[0];
    assert_eq!(f.pattern, Pattern::Bidirectional);
    assert_eq!(f.from, ["web1", "web2"]);
    assert_eq!(f.to, ["web1", "web2"]);
    assert_eq!(f.destinations_for("web1").collect::<Vec<_>>(), ["web2"]);
    assert_eq!(c.flows_for(Kind::Stock, "web2").count(), 1);

    assert_err(
        with_flow("pattern = \"bidirectional\"\nmode = \"realtime\"\nbetween = [\"web1\", \"web2\", \"erp\"]"),
        "flows[0].between",
        "exactly 2 distinct endpoints, got 3",
    );
    assert_err(
        with_flow(
            "pattern = \"bidirectional\"\nmode = \"realtime\"\nbetween = [\"web1\", \"web1\"]",
        ),
        "flows[0].between[1]",
        "listed twice",
    );
    assert_err(
        with_flow(
            "pattern = \"bidirectional\"\nmode = \"realtime\"\nfrom = [\"web1\"]\nto = [\"web2\"]",
        ),
        "flows[0].from",
        "`between",
    );
    assert_err(
        with_flow("pattern = \"bidirectional\"\nmode = \"realtime\""),
        "flows[0].between",
        "missing",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nbetween = [\"web1\", \"web2\"]"),
        "flows[0].between",
        "only for bidirectional",
    );
}

#[test]
fn correlation_needs_sources_and_destinations() {
    assert!(with_flow("pattern = \"correlation\"\nmode = \"delta\"\ninterval = \"1s\"\nfrom = [\"erp\"]\nto = [\"web1\", \"web2\"]").is_ok());
    assert!(with_flow("pattern = \"correlation\"\nmode = \"delta\"\ninterval = \"1s\"\nfrom = [\"web1\", \"web2\"]\nto = [\"erp\"]").is_ok());
    assert_err(
        with_flow("pattern = \"correlation\"\nmode = \"delta\"\ninterval = \"1s\"\nfrom = [\"erp\"]\nto = []"),
        "flows[0].to",
        "at least one destination",
    );
}

#[test]
fn migration_pattern_runs_in_migration_mode() {
    let c = with_flow("pattern = \"migration\"\nfrom = [\"erp\"]\nto = [\"web1\"]").unwrap();
    assert_eq!(c.flows[0].mode, Mode::Migration);
    assert!(with_flow("pattern = \"migration\"\nmode = \"migration\"\nfrom = [\"erp\"]\nto = [\"web1\", \"web2\"]").is_ok());
    assert_err(
        with_flow(
            "pattern = \"migration\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]",
        ),
        "flows[0].mode",
        "expected mode \"migration\"",
    );
}

#[test]
fn sources_and_destinations_are_disjoint_and_known() {
    assert_err(
        with_flow("pattern = \"correlation\"\nmode = \"realtime\"\nfrom = [\"erp\", \"web1\"]\nto = [\"web1\"]"),
        "flows[0].to",
        "`web1` is both a source and a destination",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\", \"web9\"]"),
        "flows[0].to[1]",
        "unknown endpoint `web9`",
    );
}

#[test]
fn mode_fields_belong_to_their_mode() {
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\ninterval = \"2s\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].interval",
        "only for mode \"delta\", but this flow's mode is \"realtime\"",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"delta\"\npoll = \"2s\"\ninterval = \"2s\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].poll",
        "only for mode \"realtime\"",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"delta\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].interval",
        "missing",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"batch\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].schedule",
        "missing",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"batch\"\nschedule = \"every day\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].schedule",
        "invalid cron schedule",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"delta\"\ninterval = \"soon\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].interval",
        "expected a duration",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nfrom = [\"erp\"]\nto = [\"web1\"]"),
        "flows[0].mode",
        "missing",
    );
    let c = with_flow("pattern = \"broadcast\"\nmode = \"batch\"\nschedule = \"0 */5 * * * *\"\nfrom = [\"erp\"]\nto = [\"web1\"]").unwrap();
    match &c.flows[0].mode {
        Mode::Batch { schedule, expr } => {
            assert_eq!(expr, "0 */5 * * * *");
            assert!(schedule.upcoming(chrono::Utc).next().is_some());
        }
        other => panic!("{other:?}"),
    }
    let c = with_flow("pattern = \"broadcast\"\nmode = \"delta\"\ninterval = \"1s\"\nfrom = [\"erp\"]\nto = [\"web1\"]").unwrap();
    assert_eq!(
        c.flows[0].mode,
        Mode::Delta {
            interval: Duration::from_secs(1)
        }
    );
}

#[test]
fn jq_programs_compile_at_load() {
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\nfilter = '.on_hand >='"),
        "flows[0].filter",
        "jq compile error: expected term",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\nmap_in = 'nosuchfn'"),
        "flows[0].map_in",
        "undefined filter `nosuchfn/0`",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n[flows.map_out]\nweb1 = '{sku'"),
        "flows[0].map_out.web1",
        "jq compile error",
    );
    assert_err(
        with_flow("pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n[flows.map_out]\nweb9 = '.'"),
        "flows[0].map_out.web9",
        "not a destination of this flow",
    );
}

#[test]
fn flow_names_are_unique_and_well_formed() {
    let flow = "[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n";
    assert_err(
        load(&format!("{ENDPOINTS}{flow}{flow}")),
        "flows[1].name",
        "duplicate flow name `f` (already used by flows[0])",
    );
    assert_err(
        load(&format!(
            "{ENDPOINTS}{}",
            flow.replace("\"f\"", "\"Stock Flow\"")
        )),
        "flows[0].name",
        "invalid flow name",
    );
    assert_err(
        load(&format!(
            "{}{flow}",
            ENDPOINTS.replace("endpoints.web2", "endpoints.Web2")
        )),
        "endpoints.Web2",
        "invalid endpoint name",
    );
}

#[test]
fn endpoints_are_checked() {
    let flow = "[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n";
    assert_err(
        load(&format!(
            "{}{flow}",
            ENDPOINTS.replace("http://127.0.0.1:7002", "ftp://x")
        )),
        "endpoints.web1.url",
        "expected an http(s) URL",
    );
    assert_err(
        load(&format!(
            "{}{flow}",
            ENDPOINTS.replace("[endpoints.web2]", "[endpoints.web2]\ntimeout = \"0s\"")
        )),
        "endpoints.web2.timeout",
        "longer than zero",
    );
    // A duration the engine's millisecond arithmetic would overflow on is refused at load.
    assert_err(
        load(&format!(
            "{}{flow}",
            ENDPOINTS.replace(
                "[endpoints.web2]",
                "[endpoints.web2]\ntimeout = \"300000000000y\""
            )
        )),
        "endpoints.web2.timeout",
        "at most 100 years",
    );
    assert_err(
        load(&format!(
            "{}{flow}",
            ENDPOINTS.replace("\"sandbox-erp\"", "\"\"")
        )),
        "endpoints.erp.connector",
        "connector type",
    );
    assert_err(
        load(&format!(
            "{}{flow}",
            ENDPOINTS.replace(
                "[endpoints.web2]",
                "[endpoints.web2]\nwebhook_secret = \"\""
            )
        )),
        "endpoints.web2.webhook_secret",
        "is empty",
    );
    assert_err(
        load(&format!(
            "{ENDPOINTS}[endpoints.web3]\nurl = \"http://x\"\n{flow}"
        )),
        "endpoints.web3",
        "missing field `connector`",
    );
}

#[test]
fn engine_and_server_values_are_checked() {
    let base = |extra: &str| {
        load(&format!("{extra}\n{ENDPOINTS}[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n"))
    };
    assert_err(
        base("[engine]\nbatch_size = 0"),
        "engine.batch_size",
        "positive",
    );
    assert_err(
        base("[engine]\nmax_attempts = 0"),
        "engine.max_attempts",
        "positive",
    );
    assert_err(
        base("[engine]\njq_steps = 0"),
        "engine.jq_steps",
        "positive",
    );
    assert_err(
        base("[engine]\njq_timeout = \"0s\""),
        "engine.jq_timeout",
        "longer than zero",
    );
    assert_err(
        base("[engine]\njq_timeout = \"5m\""),
        "engine.jq_timeout",
        "at most 1m",
    );
    assert_err(
        base("[engine]\njq_max_bytes = 0"),
        "engine.jq_max_bytes",
        "positive",
    );
    assert_err(
        base("[engine]\njq_max_bytes = \"1GiB\""),
        "engine.jq_max_bytes",
        "at most 64MiB",
    );
    assert_err(
        base("[engine]\nlease = \"forever\""),
        "engine.lease",
        "expected a duration",
    );
    assert_err(
        base("[engine]\nbackoff_base = \"1m\""),
        "engine.backoff_cap",
        "at least `backoff_base`",
    );
    assert_err(
        base("[engine]\nbreaker_open = \"1m\""),
        "engine.breaker_max_open",
        "at least `breaker_open`",
    );
    assert_err(
        base("[server]\nlisten = \"localhost\""),
        "server.listen",
        "address and port",
    );
    assert_err(
        base("[server]\nmax_body_bytes = \"lots\""),
        "server.max_body_bytes",
        "expected a size",
    );
    assert_err(
        base("[server]\nmax_body_bytes = 0"),
        "server.max_body_bytes",
        "positive",
    );
    assert_err(base("[store]\npath = \"\""), "store.path", "empty");
    let c =
        base("[store]\npath = \"/var/lib/concord.db\"\n[server]\nmax_body_bytes = 4096").unwrap();
    assert_eq!(c.store.path, PathBuf::from("/var/lib/concord.db"));
    assert_eq!(c.server.max_body_bytes, 4096);
}

#[test]
fn ownership_is_checked() {
    let flow = "[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n";
    assert_err(
        load(&format!(
            "{ENDPOINTS}{flow}[ownership.prodcut]\ndefault = \"erp\"\n"
        )),
        "ownership.prodcut",
        "unknown kind `prodcut`",
    );
    assert_err(
        load(&format!(
            "{ENDPOINTS}{flow}[ownership.product]\ndefault = \"sap\"\n"
        )),
        "ownership.product.default",
        "unknown endpoint `sap`",
    );
    assert_err(
        load(&format!("{ENDPOINTS}{flow}[ownership.product]\ndefault = \"erp\"\nfields = {{ description = \"web9\" }}\n")),
        "ownership.product.fields.description",
        "unknown endpoint `web9`",
    );
    let c = load(&format!(
        "{ENDPOINTS}{flow}[ownership.customer]\nfields = {{ email = \"web1\" }}\n"
    ))
    .unwrap();
    assert_eq!(c.ownership[&Kind::Customer].owner("email"), Some("web1"));
    assert_eq!(c.ownership[&Kind::Customer].owner("name"), None);
}

#[test]
fn inbound_mappings_must_agree_per_source_and_kind() {
    let flow = |name: &str, to: &str, map_in: &str| {
        format!("[[flows]]\nname = \"{name}\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"{to}\"]\nmap_in = '{map_in}'\n")
    };
    let ok = load(&format!(
        "{ENDPOINTS}{}{}",
        flow("a", "web1", "{sku: .code}"),
        flow("b", "web2", "{sku: .code} ")
    ))
    .unwrap();
    assert_eq!(
        ok.map_in_for(Kind::Stock, "erp").map(|m| m.source()),
        Some("{sku: .code}")
    );
    assert_err(
        load(&format!(
            "{ENDPOINTS}{}{}",
            flow("a", "web1", "{sku: .code}"),
            flow("b", "web2", "{sku: .id}")
        )),
        "flows[1].map_in",
        "inbound mapping must agree: flows[0] (`a`)",
    );
}

#[test]
fn flows_for_items_outlive_the_source_name() {
    let c = with_flow(
        "pattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]",
    )
    .unwrap();
    let found: Vec<&FlowConfig> = {
        let source = String::from("erp");
        c.flows_for(Kind::Stock, &source).collect()
    };
    assert_eq!(found.len(), 1);
    assert!(c.map_in_for(Kind::Stock, "erp").is_none());
    assert_eq!(c.flow("f").map(|f| f.name.as_str()), Some("f"));
}

/// Config quantities and amounts lie in the bounded domain (`concord_core::limits`): a buffer,
/// a backorder limit or a price tolerance beyond it is refused at load, naming the field.
#[test]
fn config_quantities_are_bounded() {
    let base = |extra: &str| {
        load(&format!(
            "{ENDPOINTS}[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n{extra}\n"
        ))
    };
    let inventory =
        "[inventory]\nsource = \"erp\"\n[inventory.channels.web1]\nlocations = [\"WH1\"]\n";
    assert_err(
        base(&format!("{inventory}backorder_limit = 1000000001\n")),
        "inventory.channels.web1.backorder_limit",
        "at most 1000000000",
    );
    assert_err(
        base(&format!(
            "{inventory}[[inventory.buffers]]\nunits = 9223372036854775807\n"
        )),
        "inventory.buffers[0].units",
        "at most 1000000000",
    );
    assert_err(
        base("[pricing]\ntolerance_minor = 1000000000000001"),
        "pricing.tolerance_minor",
        "at most",
    );
    let ok = base(&format!(
        "{inventory}backorder_limit = 1000000000\n[[inventory.buffers]]\nunits = 1000000000\n[pricing]\ntolerance_minor = 1000000000000000"
    ))
    .unwrap();
    let inv = ok.inventory.expect("inventory");
    assert_eq!(inv.channels["web1"].backorder_limit, Some(1_000_000_000));
}

const STOCK_FLOW: &str = "\n[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web\"]\n";

/// An `erp` endpoint of `connector` at `url` with `extra` lines in its table (options after),
/// and a `web` storefront.
fn erp_at(url: &str, extra: &str) -> String {
    format!(
        "[endpoints.erp]\nconnector = \"tryton\"\nurl = \"{url}\"\n{extra}\n\
         [endpoints.web]\nconnector = \"sandbox-shop\"\nurl = \"http://127.0.0.1:7002\"\n{STOCK_FLOW}"
    )
}

/// Regression (issue 12): a password went over plain http to any host without a word.
#[test]
fn credentials_over_plain_http_to_another_host_need_allow_insecure_http() {
    let env = |name: &str| (name == "PW").then(|| "hunter2".to_string());
    let load = |text: &str| Config::from_toml_str_with_env(text, Path::new("c.toml"), env);
    let options = "[endpoints.erp.options]\ndatabase = \"db\"\npassword = \"${PW}\"";
    assert_err(
        load(&erp_at("http://erp.example.com:8000", options)),
        "endpoints.erp.url",
        "would send credentials (`options.password`) in clear",
    );
    let e = load(&erp_at("http://erp.example.com:8000", options)).unwrap_err();
    assert!(e.message.contains("allow_insecure_http = true"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    // Allowed explicitly, over https, or to this machine.
    let c = load(&erp_at(
        "http://erp.example.com:8000",
        &format!("allow_insecure_http = true\n{options}"),
    ))
    .unwrap();
    assert!(c.endpoints["erp"].allow_insecure_http);
    load(&erp_at("https://erp.example.com", options)).unwrap();
    load(&erp_at("http://127.0.0.1:8011", options)).unwrap();
    load(&erp_at("http://localhost:8011", options)).unwrap();
    // Credentials in the URL itself count too; no credentials, no objection.
    assert_err(
        load(&erp_at("http://ann:pw@erp.example.com", "")),
        "endpoints.erp.url",
        "user info or query string",
    );
    load(&erp_at(
        "http://erp.example.com",
        "[endpoints.erp.options]\ndatabase = \"db\"",
    ))
    .unwrap();
    // The alert webhook: a token in its query string over plain http to another host.
    assert_err(
        load(&format!(
            "{}\n[alerts]\nwebhook_url = \"http://hooks.example.com/x?token=abc\"\n",
            erp_at("http://127.0.0.1:1", "")
        )),
        "alerts.webhook_url",
        "allow_insecure_http",
    );
}

#[test]
fn response_size_limit_per_endpoint() {
    let c = load(&erp_at(
        "http://127.0.0.1:1",
        "max_response_bytes = \"2MiB\"",
    ))
    .unwrap();
    assert_eq!(c.endpoints["erp"].max_response_bytes, 2 << 20);
    assert_eq!(
        c.endpoints["web"].max_response_bytes,
        crate::outbound::DEFAULT_MAX_RESPONSE_BYTES
    );
    assert_err(
        load(&erp_at("http://127.0.0.1:1", "max_response_bytes = 0")),
        "endpoints.erp.max_response_bytes",
        "positive",
    );
}

/// Regression (issue 12): literal secrets in the config passed without a warning.
#[test]
fn literal_secrets_are_warned_about_by_field() {
    let env = |name: &str| Some(format!("value-of-{name}"));
    let text = format!(
        "{}\n[alerts]\nwebhook_url = \"http://127.0.0.1:9/a\"\nwebhook_secret = \"${{ALERT}}\"\n",
        erp_at(
            "http://127.0.0.1:8011",
            "webhook_secret = \"literal-hook\"\n[endpoints.erp.options]\ndatabase = \"db\"\npassword = \"hunter2\"\nuser = \"admin\""
        )
    );
    let c = Config::from_toml_str_with_env(&text, Path::new("/etc/c.toml"), env).unwrap();
    assert_eq!(
        c.literal_secrets,
        [
            "endpoints.erp.webhook_secret",
            "endpoints.erp.options.password"
        ]
    );
    let warnings = c.literal_secret_warnings();
    assert_eq!(warnings.len(), 2);
    assert!(
        warnings[1].starts_with(
            "endpoints.erp.options.password is a secret written as a literal in /etc/c.toml"
        ),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().all(|w| !w.contains("hunter2")),
        "{warnings:?}"
    );
    // All references: nothing to warn about.
    let text = erp_at(
        "http://127.0.0.1:8011",
        "webhook_secret = \"${HOOK}\"\n[endpoints.erp.options]\npassword = \"${PW}\"",
    );
    let c = Config::from_toml_str_with_env(&text, Path::new("c.toml"), env).unwrap();
    assert!(c.literal_secrets.is_empty(), "{:?}", c.literal_secrets);
}

#[test]
fn metrics_settings() {
    let c = load(&erp_at("http://127.0.0.1:1", "")).unwrap();
    assert_eq!(c.metrics, MetricsConfig::default());
    assert!(!c.metrics.per_sku, "no per-SKU series by default");
    let c = load(&format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:9090\"\nper_sku = true\n[[metrics.tokens]]\nname = \"prom\"\nsha256 = \"{}\"\n",
        erp_at("http://127.0.0.1:1", ""),
        "ab".repeat(32)
    ))
    .unwrap();
    assert_eq!(c.metrics.listen.map(|a| a.port()), Some(9090));
    assert!(c.metrics.per_sku);
    assert_eq!(c.metrics.tokens[0].name, "prom");
    assert!(!format!("{:?}", c.metrics).contains("abab"));
    assert_err(
        load(&format!(
            "{}\n[metrics]\nlisten = \"nowhere\"\n",
            erp_at("http://127.0.0.1:1", "")
        )),
        "metrics.listen",
        "expected an address",
    );
    assert_err(
        load(&format!(
            "{}\n[[metrics.tokens]]\nname = \"prom\"\nsha256 = \"short\"\n",
            erp_at("http://127.0.0.1:1", "")
        )),
        "metrics.tokens[0].sha256",
        "64 hex digits",
    );
}

#[test]
fn failed_attempt_throttle_settings() {
    let c = load(&erp_at("http://127.0.0.1:1", "")).unwrap();
    assert_eq!(
        (c.admin.failed_attempts, c.admin.failed_attempts_refill),
        (10, Duration::from_secs(6))
    );
    let c = load(&format!(
        "{}\n[admin]\nfailed_attempts = 3\nfailed_attempts_refill = \"1m\"\n",
        erp_at("http://127.0.0.1:1", "")
    ))
    .unwrap();
    assert_eq!(
        (c.admin.failed_attempts, c.admin.failed_attempts_refill),
        (3, Duration::from_secs(60))
    );
    for bad in ["0", "10001", "99999999999"] {
        assert_err(
            load(&format!(
                "{}\n[admin]\nfailed_attempts = {bad}\n",
                erp_at("http://127.0.0.1:1", "")
            )),
            "admin.failed_attempts",
            "must be from 1 to 10000",
        );
    }
}

/// Regression (issue 12): `Debug` of an endpoint printed connector passwords; every `Debug` of
/// the config, raw or checked, now masks secrets.
#[test]
fn debug_of_the_config_prints_no_secret() {
    let text = format!(
        "{}\n[alerts]\nwebhook_url = \"https://hooks.example/services/T0/B0/hook-path-secret?k=hook-query-secret\"\nwebhook_secret = \"alert-secret\"\n",
        erp_at(
            "https://ann:url-secret@erp.example.com/?api_key=url-key-secret",
            "webhook_secret = \"hook-secret\"\n[endpoints.erp.options]\ndatabase = \"db\"\npassword = \"option-secret\""
        )
    );
    let secrets = [
        "url-secret",
        "url-key-secret",
        "hook-secret",
        "option-secret",
        "hook-path-secret",
        "hook-query-secret",
        "alert-secret",
    ];
    let raw: raw::RawConfig = toml::from_str(&text).unwrap();
    let checked = load(&text).unwrap();
    for shown in [format!("{raw:?}"), format!("{checked:?}")] {
        for s in secrets {
            assert!(!shown.contains(s), "{s} leaked: {shown}");
        }
        assert!(shown.contains("erp.example.com"), "{shown}");
    }
}
