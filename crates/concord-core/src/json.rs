//! Strict parsing of JSON from outside the hub (webhook bodies, `/v1` and `/api/v1` bodies): one
//! function, [`parse_strict`], used by every boundary.
//!
//! serde_json resolves a repeated object key silently, "last wins": `{"on_hand": 1, "on_hand":
//! 900}` is `900` to the hub while a sender's own validation, or an intermediary that checked
//! the body, may have read `1`. A document whose meaning depends on who reads it is refused
//! instead, naming the key and where it is. Everything else is serde_json's own parser: invalid
//! UTF-8 (raw or as an unpaired `\u` surrogate) is an error, and so is nesting deeper than its
//! recursion limit (128, [`crate::limits::MAX_JSON_DEPTH`]), which the visitor here keeps because
//! it descends through serde_json's deserializer, never around it.
//!
//! Must never: accept a document that `serde_json::from_slice` refuses, or resolve a duplicate.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::fmt;

/// Why a JSON document was refused.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON (or invalid UTF-8, or nested too deeply), at `line`:`column`.
    #[error("malformed JSON at line {line} column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// A key appears twice in one object. `path` is the object's path (`events[0].record`,
    /// empty for the top level).
    #[error("duplicate key `{key}` in {}", if path.is_empty() { "the top-level object".to_string() } else { format!("`{path}`") })]
    DuplicateKey { path: String, key: String },
}

/// Parse `bytes` as one JSON document, refusing duplicate keys (see the module docs).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let path = RefCell::new(Vec::new());
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        path: &path,
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => match duplicate.into_inner() {
            Some(d) => Err(d),
            None => Err(JsonError::Syntax {
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            }),
        },
    }
}

enum Segment {
    Key(String),
    Index(usize),
}

fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A seed that deserializes any JSON value, tracking the path for the error message.
#[derive(Clone, Copy)]
struct Strict<'a> {
    path: &'a RefCell<Vec<Segment>>,
    duplicate: &'a RefCell<Option<JsonError>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never produces a non-finite float from text.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            self.path.borrow_mut().push(Segment::Index(out.len()));
            let next = seq.next_element_seed(self);
            self.path.borrow_mut().pop();
            match next? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                let path = render(&self.path.borrow());
                *self.duplicate.borrow_mut() = Some(JsonError::DuplicateKey { path, key: k });
                return Err(de::Error::custom("duplicate key"));
            }
            self.path.borrow_mut().push(Segment::Key(k.clone()));
            let v = map.next_value_seed(self);
            self.path.borrow_mut().pop();
            out.insert(k, v?);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        let e = parse_strict(br#"{"a": 1, "a": 2}"#).unwrap_err();
        assert_eq!(e.to_string(), "duplicate key `a` in the top-level object");
        let e =
            parse_strict(br#"{"events": [{"record": {"sku": "A", "on_hand": 1, "on_hand": 9}}]}"#)
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "duplicate key `on_hand` in `events[0].record`"
        );
        // The same key in two objects is fine.
        let v = parse_strict(br#"[{"a": 1}, {"a": 2}]"#).unwrap();
        assert_eq!(v, json!([{"a": 1}, {"a": 2}]));
    }

    #[test]
    fn everything_serde_json_refuses_is_refused() {
        for bad in [
            &b"{"[..],
            b"{\"a\": 1} x",
            b"[\xff]",
            b"\"\xc3\x28\"",
            br#""\ud800""#,
            b"",
        ] {
            assert!(serde_json::from_slice::<Value>(bad).is_err());
            assert!(
                matches!(parse_strict(bad), Err(JsonError::Syntax { .. })),
                "{bad:?}"
            );
        }
        let e = parse_strict(b"{\n \"a\": }").unwrap_err();
        assert!(e.to_string().contains("line 2 column"), "{e}");
    }

    #[test]
    fn nesting_is_bounded_by_an_error_not_a_crash() {
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_strict(ok.as_bytes()).is_ok());
        for depth in [200, 100_000] {
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let e = parse_strict(deep.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("recursion limit"), "{e}");
            let deep = "{\"a\":".repeat(depth) + &"}".repeat(depth);
            assert!(parse_strict(deep.as_bytes()).is_err());
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Without duplicates the strict parser reads what serde_json reads.
        #[test]
        fn agrees_with_serde_json_on_documents_without_duplicates(v in arb_json()) {
            let text = serde_json::to_vec(&v).unwrap();
            prop_assert_eq!(parse_strict(&text).unwrap(), v);
        }

        /// Any bytes: never a panic, and never accepts what serde_json refuses.
        #[test]
        fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if parse_strict(&bytes).is_ok() {
                prop_assert!(serde_json::from_slice::<Value>(&bytes).is_ok());
            }
        }
    }
}
