//! The config hash (sandbox.md §4): sha256 of canonical JSON — object keys sorted at every level,
//! array order significant — of every input that affects the container, plus a format epoch.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Bump when the meaning of the hashed document changes, so old containers are recreated.
pub const HASH_EPOCH: u32 = 2;

/// Canonical JSON text: sorted keys, no insignificant whitespace. Independent of serde_json's
/// map ordering features.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// sha256 hex of the canonical JSON of `{"epoch": HASH_EPOCH, "input": input}`.
pub fn config_hash<T: Serialize>(input: &T) -> String {
    let value = serde_json::json!({ "epoch": HASH_EPOCH, "input": input });
    hex::encode(Sha256::digest(canonical_json(&value).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_array_order_does() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":null}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,2]},"b":1}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[2,1]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":null,"y":[1,2]},"b":1}"#);
        assert_eq!(config_hash(&a), config_hash(&b));
        assert_ne!(config_hash(&a), config_hash(&c));
    }

    #[test]
    fn hash_is_sha256_of_canonical_document() {
        let input = json!({"k": "v"});
        let doc = format!(r#"{{"epoch":{HASH_EPOCH},"input":{{"k":"v"}}}}"#);
        assert_eq!(
            config_hash(&input),
            hex::encode(Sha256::digest(doc.as_bytes()))
        );
    }

    #[test]
    fn strings_are_escaped() {
        let v = json!({"a\"b": "x\ny"});
        assert_eq!(canonical_json(&v), r#"{"a\"b":"x\ny"}"#);
    }
}
