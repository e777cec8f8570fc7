//! Content hashing of JSON values, independent of key order. Used for journal dedupe, hash-based
//! skip and echo suppression. Must stay stable across releases: hashes are stored.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// SHA-256 (hex, first 32 chars) of the value's canonical form (object keys sorted, no
/// whitespace). Two values that are equal as JSON always hash the same.
pub fn content_hash(value: &Value) -> String {
    let mut hasher = Sha256::new();
    feed(&mut hasher, value);
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

fn feed(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            h.update(n.to_string().as_bytes());
            h.update(b";");
        }
        Value::String(s) => {
            h.update(b"s");
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(items) => {
            h.update(b"[");
            h.update((items.len() as u64).to_le_bytes());
            for i in items {
                feed(h, i);
            }
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            h.update(b"{");
            h.update((keys.len() as u64).to_le_bytes());
            for k in keys {
                h.update((k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                feed(h, &map[k]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_but_values_do() {
        let a = json!({"a": 1, "b": [1, 2, {"x": "y"}]});
        let b: Value = serde_json::from_str(r#"{"b":[1,2,{"x":"y"}],"a":1}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(
            content_hash(&a),
            content_hash(&json!({"a": 2, "b": [1, 2, {"x": "y"}]}))
        );
        // "ab"+"c" must not collide with "a"+"bc"
        assert_ne!(
            content_hash(&json!(["ab", "c"])),
            content_hash(&json!(["a", "bc"]))
        );
        assert_eq!(content_hash(&a).len(), 32);
    }
}
