//! Endpoints (URLs, credentials over plain http, response limits), `[engine]` and `[server]`
//! values, bounded quantities, metrics, throttles and secrets in `Debug`.

use super::*;

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

/// `[store] url`: a PostgreSQL store instead of the SQLite file. Alone (SQLite's settings
/// exclude it), well formed, its `${ENV}` password resolved and never printed; a literal
/// password is warned about.
#[test]
fn store_url_selects_postgres_alone_and_never_prints_its_password() {
    let env = |name: &str| (name == "PG_PW").then(|| "hunter2".to_string());
    let load = |store: &str| {
        Config::from_toml_str_with_env(
            &format!("[store]\n{store}\n{ENDPOINTS}[[flows]]\nname = \"f\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"realtime\"\nfrom = [\"erp\"]\nto = [\"web1\"]\n"),
            Path::new("/etc/concord/concord.toml"),
            env,
        )
    };
    let c = load("url = \"postgres://concord:${PG_PW}@db.internal:5432/concord\"").unwrap();
    let url = c.store.url.as_ref().expect("a PostgreSQL store");
    assert_eq!(
        url.expose(),
        "postgres://concord:hunter2@db.internal:5432/concord"
    );
    assert!(!format!("{:?}", c.store).contains("hunter2"));
    assert!(c.literal_secrets.is_empty(), "{:?}", c.literal_secrets);
    assert_eq!(load("").unwrap().store.url, None, "SQLite by default");

    for other in [
        "path = \"hub.sqlite\"",
        "synchronous = \"normal\"",
        "write_queue = 10",
    ] {
        let field = other.split(' ').next().unwrap_or_default();
        assert_err(
            load(&format!("url = \"postgres://h/db\"\n{other}")),
            "store.url",
            &format!("`{field}`"),
        );
    }
    for bad in [
        "mysql://u:${PG_PW}@h/db",
        "postgres://u:${PG_PW}@h:port/db",
        "",
    ] {
        match load(&format!("url = \"{bad}\"")) {
            Ok(_) => panic!("{bad} was accepted"),
            Err(e) => {
                assert_eq!(e.path, "store.url", "{e}");
                assert!(!e.to_string().contains("hunter2"), "{e}");
            }
        }
    }
    let c = load("url = \"postgres://concord:literal-pw@db/concord\"").unwrap();
    assert_eq!(c.literal_secrets, ["store.url"]);
    let c = load("url = \"postgres://concord@127.0.0.1/concord\"").unwrap();
    assert!(
        c.literal_secrets.is_empty(),
        "no password, nothing to warn about"
    );
}
