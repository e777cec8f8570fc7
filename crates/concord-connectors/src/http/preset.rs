//! Presets of the `http` connector: a vendor's whole configuration (auth, reads, writes,
//! webhooks, rate limits, error rules) shipped inside the binary, which an endpoint takes with
//! `preset = "shopify"` and completes or overrides with its own options.
//!
//! A preset is a TOML file in `presets/` (compiled in with `include_str!`): a `[preset]` table
//! (`description`, and `requires`: option paths the endpoint must set itself — its credential,
//! the ids of its own objects — each with what to put there) and, beside it, ordinary options
//! of the `http` connector. [`resolve`] merges the endpoint's options over the preset's: tables
//! merge key by key, at any depth; anything else (a string, a number, an array — e.g. a write's
//! list of steps) is replaced whole by the endpoint's value. The result is then checked like any
//! other options, so a mistake names its field path (`options.write.stock.upsert[1].body`)
//! whether it came from the preset or from the endpoint.
//!
//! Must never: do I/O, or read a preset from anywhere but the binary (a preset is reviewed code,
//! tested against its contract server in `tests/preset_<name>.rs`).

use crate::options::err;
use concord_engine::connector::BuildError;
use serde_json::{Map, Value};

/// Every preset: its name and its file.
pub const PRESETS: &[(&str, &str)] = &[
    ("shopify", include_str!("presets/shopify.toml")),
    ("bigcommerce", include_str!("presets/bigcommerce.toml")),
    ("sap-b1", include_str!("presets/sap-b1.toml")),
    ("netsuite", include_str!("presets/netsuite.toml")),
];

/// The names of the presets, for messages and documentation.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// A parsed preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub name: String,
    pub description: String,
    /// Option paths (relative to `options`) the endpoint must set, with what goes there.
    pub requires: Vec<(String, String)>,
    /// The options it provides.
    pub options: Map<String, Value>,
}

/// The preset called `name` (`Err`: its message, for the caller to place at a path).
pub fn load(name: &str) -> Result<Preset, String> {
    let (_, text) = PRESETS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        format!(
            "`{name}` is not a preset; the presets are: {}",
            names().join(", ")
        )
    })?;
    parse(name, text)
}

/// Parse a preset's text (the `[preset]` table and the options beside it).
pub fn parse(name: &str, text: &str) -> Result<Preset, String> {
    let value: Value = toml::from_str(text).map_err(|e| format!("preset `{name}`: {e}"))?;
    let Value::Object(mut options) = value else {
        return Err(format!("preset `{name}`: not a table"));
    };
    let meta = match options.remove("preset") {
        Some(Value::Object(m)) => m,
        _ => return Err(format!("preset `{name}`: the `[preset]` table is missing")),
    };
    let description = meta
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut requires = Vec::new();
    if let Some(r) = meta.get("requires") {
        let Value::Object(r) = r else {
            return Err(format!(
                "preset `{name}`: `preset.requires` must be a table of path = what"
            ));
        };
        for (path, what) in r {
            requires.push((path.clone(), what.as_str().unwrap_or_default().to_string()));
        }
    }
    Ok(Preset {
        name: name.to_string(),
        description,
        requires,
        options,
    })
}

/// `over` merged over `base`: tables key by key at any depth, everything else replaced.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The value at a dotted path (`auth.value`, `vars.locations`), if any and not empty.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.as_object()?.get(part)?;
    }
    match cur {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(m) if m.is_empty() => None,
        other => Some(other),
    }
}

/// The endpoint's options with its preset (if it names one) merged under them. Options
/// without `preset` come back as they are.
pub fn resolve(options: &Value) -> Result<Value, BuildError> {
    let Some(obj) = options.as_object() else {
        return Ok(options.clone());
    };
    let Some(name) = obj.get("preset") else {
        return Ok(options.clone());
    };
    let name = name
        .as_str()
        .ok_or_else(|| err("options.preset", "must be the name of a preset (a string)"))?;
    let preset = load(name).map_err(|e| err("options.preset", e))?;
    let mut own = obj.clone();
    own.remove("preset");
    let own = Value::Object(own);
    for (path, what) in &preset.requires {
        if lookup(&own, path).is_none() {
            return Err(err(
                &format!("options.{path}"),
                format!("is required by preset `{name}`: {what}"),
            ));
        }
    }
    let mut merged = Value::Object(preset.options);
    merge(&mut merged, own);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::config::Options;
    use serde_json::json;

    #[test]
    fn tables_merge_at_every_depth_and_the_rest_is_replaced() {
        let mut base = json!({"auth": {"type": "api_key", "name": "x-key"},
                              "write": {"stock": {"upsert": [{"path": "/a"}, {"path": "/b"}], "idempotency_header": "k"}},
                              "vars": {"version": "2026-01", "locations": {"WH": "1"}}});
        merge(
            &mut base,
            json!({"auth": {"value": "secret"},
                   "write": {"stock": {"upsert": {"path": "/c"}}},
                   "vars": {"locations": {"WH2": "2"}}}),
        );
        assert_eq!(
            base,
            json!({"auth": {"type": "api_key", "name": "x-key", "value": "secret"},
                   "write": {"stock": {"upsert": {"path": "/c"}, "idempotency_header": "k"}},
                   "vars": {"version": "2026-01", "locations": {"WH": "1", "WH2": "2"}}})
        );
    }

    #[test]
    fn every_shipped_preset_parses_and_checks_once_completed() {
        assert!(!PRESETS.is_empty());
        for (name, _) in PRESETS {
            let p = load(name).unwrap();
            assert!(!p.description.is_empty(), "{name} has a description");
            // Fill every required path with a plausible value: the result must be valid options.
            let mut own = json!({"preset": name});
            for (path, _) in &p.requires {
                let mut v = json!("x");
                if path == "vars.locations" {
                    v = json!({"WH": "gid://x/Location/1"});
                }
                for part in path.split('.').rev() {
                    v = json!({ part: v });
                }
                merge(&mut own, v);
            }
            let merged = resolve(&own).unwrap();
            Options::parse(&merged, Some("whsec")).unwrap_or_else(|e| {
                panic!("preset {name} does not check: {}: {}", e.path, e.message)
            });
        }
    }

    #[test]
    fn an_unknown_preset_or_a_missing_requirement_is_named() {
        let e = resolve(&json!({"preset": "shopfy"})).unwrap_err();
        assert_eq!(e.path, "options.preset");
        assert!(e.message.contains("shopify"), "{}", e.message);
        let e = resolve(&json!({"preset": 3})).unwrap_err();
        assert_eq!(e.path, "options.preset");
        let e = resolve(&json!({"preset": "shopify"})).unwrap_err();
        assert!(e.path.starts_with("options."), "{}", e.path);
        assert!(
            e.message.contains("required by preset `shopify`"),
            "{}",
            e.message
        );
        // Without `preset`, options are untouched.
        let o = json!({"read": {}});
        assert_eq!(resolve(&o).unwrap(), o);
    }

    #[test]
    fn an_override_is_checked_with_its_field_path() {
        let p = load("shopify").unwrap();
        let mut own = json!({"preset": "shopify"});
        for (path, _) in &p.requires {
            let mut v = json!({"WH": "gid://shopify/Location/1"});
            if !path.starts_with("vars.locations") {
                v = json!("x");
            }
            for part in path.split('.').rev() {
                v = json!({ part: v });
            }
            merge(&mut own, v);
        }
        merge(
            &mut own,
            json!({"write": {"stock": {"idempotency_header": "bad header"}}}),
        );
        let merged = resolve(&own).unwrap();
        let e = Options::parse(&merged, Some("whsec")).unwrap_err();
        assert_eq!(e.path, "options.write.stock.idempotency_header");

        // A generic option the sap-b1 preset uses, misused in an override.
        let own = json!({"preset": "sap-b1", "vars": {"company_db": "D", "user": "u", "password": "p"},
                         "auth": {"also_cookies": ["ROUTEID", "bad=x"]}});
        let e = Options::parse(&resolve(&own).unwrap(), None).unwrap_err();
        assert_eq!(e.path, "options.auth.also_cookies[1]");
        // The webhook's shared-secret header takes no HMAC options.
        let own = json!({"preset": "bigcommerce", "auth": {"value": "t"}, "vars": {"locations": {"WH": 1}},
                         "webhook": {"signature": {"encoding": "hex"}}});
        let e = Options::parse(&resolve(&own).unwrap(), Some("s")).unwrap_err();
        assert_eq!(e.path, "options.webhook.signature.encoding");
    }
}
