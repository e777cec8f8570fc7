//! Data-driven config tests: every `examples/*.toml` loads; every
//! `tests/configs/broken/*.toml` fails with the error its header announces:
//!
//! ```toml
//! # expect: <substring of the message>
//! # path: <the exact field path; empty for errors without one (TOML syntax)>
//! ```

use concord_core::Kind;
use concord_engine::config::{Config, Mode, Pattern};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// `${NAME}` references in a file (outside comment lines).
fn env_refs(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut names = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("${") {
        let escaped = at > 0 && rest.as_bytes()[at - 1] == b'$';
        rest = &rest[at + 2..];
        if let Some(end) = rest.find('}') {
            if !escaped {
                names.push(rest[..end].to_string());
            }
        }
    }
    names
}

/// The variables an example needs, with dummy values. Each must be documented in the file
/// (`export NAME=`), so a user knows what to set.
fn example_env(file: &Path, text: &str) -> BTreeMap<String, String> {
    env_refs(text)
        .into_iter()
        .map(|name| {
            assert!(
                text.contains(&format!("export {name}=")),
                "{}: `${{{name}}}` is used but not documented with `export {name}=...`",
                file.display()
            );
            let value = format!("test-value-of-{name}");
            (name, value)
        })
        .collect()
}

fn load_example(file: &Path) -> Config {
    let text = std::fs::read_to_string(file).unwrap();
    let env = example_env(file, &text);
    Config::load_with_env(file, |name| env.get(name).cloned())
        .unwrap_or_else(|e| panic!("example does not load: {e}"))
}

#[test]
fn every_example_loads() {
    let files = toml_files(&repo_root().join("examples"));
    assert!(files.len() >= 2, "examples missing: {files:?}");
    for file in files {
        let config = load_example(&file);
        assert!(!config.flows.is_empty(), "{}", file.display());
        // Relative store paths are resolved against the example's directory.
        assert!(
            config.store.path.starts_with(file.parent().unwrap()),
            "{}",
            config.store.path.display()
        );
    }
}

#[tokio::test]
async fn sandbox_example_has_the_demo_topology() {
    let c = load_example(&repo_root().join("examples/sandbox.toml"));
    assert_eq!(c.endpoints["erp"].connector, "sandbox-erp");
    assert_eq!(c.endpoints["web1"].connector, "sandbox-shop");
    assert_eq!(c.endpoints["web2"].connector, "sandbox-shop");
    assert_eq!(
        c.endpoints["erp"]
            .webhook_secret
            .as_ref()
            .map(|s| s.expose()),
        Some("test-value-of-CONCORD_ERP_WEBHOOK_SECRET")
    );

    let stock: Vec<_> = c.flows_for(Kind::Stock, "erp").collect();
    assert_eq!(stock.len(), 1);
    assert_eq!(stock[0].pattern, Pattern::Broadcast);
    assert!(matches!(stock[0].mode, Mode::Realtime { poll: Some(_) }));
    assert_eq!(stock[0].to, ["web1", "web2"]);
    let vars = concord_engine::mapping::MapVars {
        dest: "web1".into(),
        source: "erp".into(),
        kind: "stock".into(),
    };
    let out = stock[0]
        .map_out_for("web1")
        .expect("stock map_out")
        .apply(
            &serde_json::json!({"sku": "A", "location": "WH1", "on_hand": 3, "committed": 5}),
            &vars,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        serde_json::json!({"sku": "A", "location": "WH1", "available": 0})
    );

    let product = c.flows_for(Kind::Product, "erp").next().unwrap();
    assert!(matches!(product.mode, Mode::Batch { .. }));
    for kind in [Kind::Customer, Kind::Order] {
        for shop in ["web1", "web2"] {
            let f: Vec<_> = c.flows_for(kind, shop).collect();
            assert_eq!(f.len(), 1, "{kind} from {shop}");
            assert_eq!(f[0].pattern, Pattern::Aggregation);
            assert_eq!(f[0].to, ["erp"]);
        }
    }
    let shipments = c.flows_for(Kind::Shipment, "erp").next().unwrap();
    assert_eq!(
        shipments.mode,
        Mode::Delta {
            interval: std::time::Duration::from_secs(1)
        }
    );
    assert_eq!(c.ownership[&Kind::Product].default.as_deref(), Some("erp"));
}

#[test]
fn bidirectional_example_syncs_both_ways() {
    let c = load_example(&repo_root().join("examples/bidirectional.toml"));
    let f = &c.flows[0];
    assert_eq!(f.pattern, Pattern::Bidirectional);
    assert_eq!(f.from, ["eu", "us"]);
    assert_eq!(f.to, ["eu", "us"]);
    assert_eq!(c.flows_for(Kind::Customer, "eu").count(), 1);
    assert_eq!(c.flows_for(Kind::Customer, "us").count(), 1);
    assert_eq!(f.destinations_for("us").collect::<Vec<_>>(), ["eu"]);
}

/// The CLI's `concord demo` writes its own config from a template; keep it valid too.
#[test]
fn cli_demo_template_loads() {
    let template = repo_root().join("crates/concord-cli/src/demo.toml");
    let Ok(text) = std::fs::read_to_string(&template) else {
        return; // not part of this checkout
    };
    let text = text
        .replace("{{STORE}}", "/tmp/concord-demo/concord.sqlite")
        .replace("{{LISTEN}}", "127.0.0.1:8080")
        .replace("{{ERP_URL}}", "http://127.0.0.1:7001")
        .replace("{{WEB1_URL}}", "http://127.0.0.1:7002")
        .replace("{{WEB2_URL}}", "http://127.0.0.1:7003")
        .replace("{{SECRET}}", "demo-secret");
    if let Err(e) = Config::from_toml_str_with_env(&text, &template, |_| None) {
        panic!("{e}");
    }
}

#[test]
fn every_broken_config_fails_with_its_announced_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/broken");
    let files = toml_files(&dir);
    assert!(files.len() >= 20, "{} broken configs", files.len());
    let mut failures = Vec::new();
    for file in files {
        if let Err(why) = check_broken(&file) {
            failures.push(why);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn check_broken(file: &Path) -> Result<(), String> {
    {
        let text = std::fs::read_to_string(file).unwrap();
        let mut lines = text.lines();
        let expect = lines
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", file.display()));
        let path = lines
            .next()
            .and_then(|l| l.strip_prefix("# path:"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{}: second line must be `# path: ...`", file.display()));
        let err = match Config::load_with_env(file, |_| None) {
            Ok(_) => return Err(format!("{}: loaded, expected an error", file.display())),
            Err(e) => e,
        };
        let shown = err.to_string();
        if !err.message.contains(expect) {
            return Err(format!(
                "{}: expected the message to contain {expect:?}, got: {shown}",
                file.display()
            ));
        }
        if err.path != path {
            return Err(format!(
                "{}: expected path {path:?}, got: {shown}",
                file.display()
            ));
        }
        assert_eq!(err.file, file);
        assert!(shown.starts_with(&file.display().to_string()), "{shown}");
        if !path.is_empty() {
            assert!(shown.contains(&format!(": {path}: ")), "{shown}");
        }
    }
    Ok(())
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let e = Config::load(Path::new("/nonexistent/concord.toml")).unwrap_err();
    assert!(e.message.contains("cannot read"), "{e}");
}
