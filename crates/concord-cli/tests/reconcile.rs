//! `concord reconcile` from the outside (issue 16), against sandbox emulators started in this
//! test: a storefront holding a product the hub never sent is reported as unknown to the hub
//! (text and `--json`), `--heal` never deletes it (the store's write counters stay 0), the
//! exit status says drift remains, and an unknown flow name is a configuration error.

use concord_sandbox::erp::{ErpOptions, ErpSim};
use concord_sandbox::shop::{ShopOptions, ShopSim};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_reports_a_record_unknown_to_the_hub_and_never_deletes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let erp = ErpSim::start(ErpOptions::default()).await.expect("erp");
    let shop = ShopSim::start(ShopOptions::default()).await.expect("shop");
    shop.upsert_product(json!({"sku": "STRAY-1", "name": "Added in the store's admin"}))
        .expect("product");
    let cfg = dir.path().join("concord.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\npath = \"{}\"\n\n[endpoints.erp]\nconnector = \"sandbox-erp\"\nurl = \"{}\"\n\n\
             [endpoints.web]\nconnector = \"sandbox-shop\"\nurl = \"{}\"\n\n\
             [[flows]]\nname = \"products\"\nkind = \"product\"\npattern = \"broadcast\"\nmode = \"realtime\"\n\
             from = [\"erp\"]\nto = [\"web\"]\n",
            dir.path().join("hub.sqlite").display(),
            erp.base_url(),
            shop.base_url()
        ),
    )
    .expect("config");
    let cfg = cfg.to_str().expect("utf-8").to_string();
    let run = |args: &[&str]| {
        let cfg = cfg.clone();
        let mut all = vec!["reconcile".to_string(), "-c".into(), cfg];
        all.extend(args.iter().map(|a| a.to_string()));
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            concord(&refs)
        })
    };

    let out = run(&[]).await.expect("join");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("1 drifted key(s)"), "{stdout}");
    assert!(
        stdout.contains("unknown   STRAY-1  not known to the hub (reported, never deleted)"),
        "{stdout}"
    );

    let out = run(&["--json", "--heal", "--wait", "5"])
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["heal"], true);
    let result = &report["results"][0];
    assert_eq!(result["flow"], "products");
    assert_eq!(result["dest"], "web");
    assert_eq!(result["comparison"]["drifted"][0]["key"], "STRAY-1");
    assert_eq!(result["comparison"]["drifted"][0]["drift"], "unknown");
    assert_eq!(result["healed"], json!([]));
    assert!(
        report["id"].as_i64().is_some(),
        "the run is stored: {report}"
    );
    assert!(
        shop.counters().writes.values().all(|n| *n == 0),
        "nothing written to the store: {:?}",
        shop.counters()
    );
    assert!(Path::new(&dir.path().join("hub.sqlite")).exists());

    let out = run(&["nope"]).await.expect("join");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no flow is named `nope`"),
        "{}",
        text(&out.stderr)
    );
}
