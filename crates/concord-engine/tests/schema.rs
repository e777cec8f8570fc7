//! The JSON Schema of `concord.toml` (`concord_engine::config::schema`, printed by
//! `concord config schema`):
//! - the committed `docs/concord.schema.json` is exactly what the code generates (regenerate
//!   with `CONCORD_BLESS=1 cargo test -p concord-engine --test schema`, or
//!   `concord config schema > docs/concord.schema.json`);
//! - every config we ship (`examples/*.toml`, the demo's `demo.toml`) validates, `${ENV}`
//!   references included;
//! - the schema and the loader agree on shape: every broken config the raw structs refuse
//!   (unknown field or table, wrong type, unknown variant) fails the schema too, and every
//!   word the schema enumerates is one the loader accepts.

use concord_engine::config::raw::RawConfig;
use concord_engine::config::schema::{schema, schema_text};
use concord_engine::config::Config;
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

fn validator() -> jsonschema::Validator {
    jsonschema::draft7::new(&schema()).expect("the generated schema is a valid draft-07 schema")
}

/// The TOML document as the JSON an editor's validator sees (before `${ENV}` substitution).
fn as_json(text: &str) -> serde_json::Value {
    let doc: toml::Value = toml::from_str(text).expect("TOML syntax");
    serde_json::to_value(doc).expect("TOML as JSON")
}

/// Every schema error, one per line, each with where it is.
fn schema_errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    validator
        .iter_errors(&as_json(text))
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_committed_schema_is_up_to_date() {
    let file = repo_root().join("docs/concord.schema.json");
    let generated = schema_text();
    if std::env::var_os("CONCORD_BLESS").is_some() {
        std::fs::write(&file, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what the config's raw structs generate; regenerate it with \
         `CONCORD_BLESS=1 cargo test -p concord-engine --test schema` (or \
         `concord config schema > docs/concord.schema.json`) and commit it",
        file.display()
    );
}

#[test]
fn every_shipped_config_validates() {
    let validator = validator();
    let mut files = toml_files(&repo_root().join("examples"));
    assert!(files.len() >= 4, "examples missing: {files:?}");
    files.push(repo_root().join("crates/concord-cli/src/demo.toml"));
    let mut failures = Vec::new();
    let mut with_references = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        with_references += usize::from(text.contains("${"));
        for e in schema_errors(&validator, &text) {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(
        with_references > 0,
        "no shipped config exercises a `${{ENV}}` reference"
    );
}

#[test]
fn a_config_the_raw_structs_refuse_fails_the_schema() {
    let validator = validator();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/broken");
    let mut refused_by_shape = Vec::new();
    for file in toml_files(&dir) {
        let text = std::fs::read_to_string(&file).unwrap();
        if toml::from_str::<toml::Value>(&text).is_err() {
            continue; // a syntax error: no document for a schema to judge
        }
        if toml::from_str::<RawConfig>(&text).is_ok() {
            continue; // its fault is one only `validate` can see (a reference, a duration, …)
        }
        assert!(
            !schema_errors(&validator, &text).is_empty(),
            "{}: refused by the loader's raw structs but valid under the schema",
            file.display()
        );
        refused_by_shape.push(file.file_name().unwrap().to_string_lossy().into_owned());
    }
    for name in [
        "unknown-field.toml",
        "unknown-table.toml",
        "unknown-kind.toml",
        "wrong-type.toml",
    ] {
        assert!(
            refused_by_shape.iter().any(|f| f == name),
            "{name} should be refused by shape: {refused_by_shape:?}"
        );
    }
}

/// A small config that loads, with `extra` appended (TOML tables after the flow).
fn config(extra: &str) -> String {
    format!(
        r#"
[endpoints.erp]
connector = "sandbox-erp"
url = "http://127.0.0.1:7001"

[endpoints.web1]
connector = "sandbox-shop"
url = "http://127.0.0.1:7002"

[[flows]]
name = "stock"
kind = "${{KIND}}"
pattern = "broadcast"
mode = "${{MODE}}"
from = ["erp"]
to = ["web1"]

[server]
max_body_bytes = "${{BODY}}"
api_max_body_bytes = " 512 kib "
{extra}
"#
    )
}

fn loads(text: &str) -> Result<Config, String> {
    Config::from_toml_str_with_env(text, Path::new("test.toml"), |name| match name {
        "KIND" => Some("stock".into()),
        "MODE" => Some("realtime".into()),
        "BODY" => Some("1MiB".into()),
        _ => None,
    })
    .map_err(|e| e.to_string())
}

#[test]
fn every_word_the_schema_offers_loads_and_others_are_refused_by_both() {
    let validator = validator();
    // (field, the words the schema enumerates, the TOML that sets the field to a word)
    type Case = (&'static str, &'static [&'static str], fn(&str) -> String);
    let cases: [Case; 3] = [
        ("role", &["viewer", "operator"], |w| {
            format!(
                "[[admin.tokens]]\nname = \"a\"\nrole = \"{w}\"\nsha256 = \"{}\"\n",
                "ab".repeat(32)
            )
        }),
        (
            "condition",
            &["dead_letters", "lag", "breaker_open", "oversold_risk"],
            |w| {
                let threshold = if w == "lag" {
                    "lag_above = \"1m\"\n"
                } else {
                    ""
                };
                format!("[[alerts.rules]]\nname = \"r\"\ncondition = \"{w}\"\n{threshold}")
            },
        ),
        ("edits", &["cancel_and_replace", "reject"], |w| {
            format!("[orders]\nedits = \"{w}\"\n")
        }),
    ];
    let base = config("");
    assert!(schema_errors(&validator, &base).is_empty());
    loads(&base).expect("the base config loads");
    for (field, words, table) in cases {
        for word in words {
            let text = config(&table(word));
            let errors = schema_errors(&validator, &text);
            assert!(errors.is_empty(), "{field} = {word}: {errors:?}");
            if let Err(e) = loads(&text) {
                panic!("{field} = {word:?} is offered by the schema but refused: {e}");
            }
        }
        let text = config(&table("no-such-word"));
        assert!(
            !schema_errors(&validator, &text).is_empty(),
            "{field}: the schema accepts any word"
        );
        assert!(
            loads(&text).is_err(),
            "{field}: the loader accepts any word"
        );
    }
}

#[test]
fn byte_sizes_under_the_schema_are_what_the_loader_reads() {
    let validator = validator();
    for (size, accepted) in [
        ("1048576", true),
        ("\"1MiB\"", true),
        ("\"512 kib\"", true),
        ("\"2MB\"", true),
        ("\"100B\"", true),
        ("\"100\"", true),
        ("\"${BODY}\"", true),
        ("\"1 parsec\"", false),
        ("\"MiB\"", false),
        ("\"1.5MiB\"", false),
        ("-1", false),
    ] {
        let text = config("").replace(
            "max_body_bytes = \"${BODY}\"",
            &format!("max_body_bytes = {size}"),
        );
        assert_eq!(
            schema_errors(&validator, &text).is_empty(),
            accepted,
            "schema, max_body_bytes = {size}"
        );
        assert_eq!(
            loads(&text).is_ok(),
            accepted,
            "loader, max_body_bytes = {size}"
        );
    }
}

#[test]
fn editors_are_pointed_at_the_schema() {
    // `.taplo.toml` (read by Even Better TOML and the taplo CLI) associates the shipped configs
    // with the committed schema; its path must stay where the schema is.
    let text = std::fs::read_to_string(repo_root().join(".taplo.toml")).expect(".taplo.toml");
    let taplo: toml::Value = toml::from_str(&text).expect(".taplo.toml is TOML");
    let rules = taplo["rule"].as_array().expect("[[rule]]");
    let schema_rule = rules
        .iter()
        .find(|r| r.get("schema").is_some())
        .expect("a rule with a schema");
    let path = schema_rule["schema"]["path"].as_str().expect("schema.path");
    assert_eq!(path, "docs/concord.schema.json");
    assert!(repo_root().join(path).is_file());
    let include = schema_rule["include"].as_array().expect("include");
    assert!(include
        .iter()
        .any(|g| g.as_str() == Some("examples/*.toml")));
}
