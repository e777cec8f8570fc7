//! Strict JSON for bodies from outside: like `serde_json::from_slice`, but an object with the
//! same key twice is refused instead of silently keeping the last value (two parsers reading
//! `{"sku":"A","sku":"B"}` differently is how a signed body is made to mean something else).
//! serde_json's nesting limit (128) still applies.
//!
//! Must never: accept a document `serde_json` would refuse.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Parse `bytes` as one JSON document, refusing duplicate object keys.
pub fn from_slice_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = StrictValue::deserialize_with(&mut de)?;
    de.end()?;
    Ok(v)
}

struct StrictValue;

impl StrictValue {
    fn deserialize_with<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct Seed;

impl<'de> de::DeserializeSeed<'de> for Seed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize_with(d)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
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
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
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
        while let Some(v) = seq.next_element_seed(Seed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                let shown: String = k.chars().take(60).collect();
                return Err(de::Error::custom(format!("duplicate key `{shown}`")));
            }
            let v = map.next_value_seed(Seed)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert_eq!(
            from_slice_strict(br#"{"a":[1,{"b":null}],"c":-2.5,"d":18446744073709551615}"#)
                .unwrap(),
            json!({"a": [1, {"b": null}], "c": -2.5, "d": 18446744073709551615u64})
        );
        let e = from_slice_strict(br#"{"sku":"A","sku":"B"}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate key `sku`"), "{e}");
        assert!(from_slice_strict(br#"[{"x":{"y":1,"y":2}}]"#).is_err());
        assert!(from_slice_strict(br#"{"a":1} trailing"#).is_err());
        assert!(from_slice_strict(b"").is_err());
        // Same nesting limit as serde_json.
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(from_slice_strict(deep.as_bytes()).is_err());
    }

    #[test]
    fn agrees_with_serde_json_on_documents_without_duplicates() {
        for doc in [
            r#"{"a":"\u00e9\ud83d\ude00","b":[true,false,null],"c":{"":0}}"#,
            r#"-0"#,
            r#"1e308"#,
            r#""x""#,
        ] {
            assert_eq!(
                from_slice_strict(doc.as_bytes()).unwrap(),
                serde_json::from_str::<Value>(doc).unwrap(),
                "{doc}"
            );
        }
    }

    proptest::proptest! {
        /// On any bytes: no panic; whatever it accepts, serde_json reads the same way.
        #[test]
        fn never_accepts_what_serde_json_reads_differently(b in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Ok(v) = from_slice_strict(&b) {
                proptest::prop_assert_eq!(serde_json::from_slice::<Value>(&b).ok(), Some(v));
            }
        }

        /// On JSON-ish text (objects with repeated keys likely): agreement, or a refusal.
        #[test]
        fn agrees_or_refuses_on_json_like_text(t in r#"\{("[ab]":(1|"x"|\[\]|\{"a":2\}),?){0,6}\}"#) {
            match (from_slice_strict(t.as_bytes()), serde_json::from_str::<Value>(&t)) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                (Ok(_), Err(_)) => proptest::prop_assert!(false, "accepted what serde_json refuses: {}", t),
                (Err(_), _) => {}
            }
        }
    }
}
