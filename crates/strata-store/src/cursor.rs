//! Opaque page cursors. A cursor names the last item of a page; the next page starts after it
//! (keyset pagination), so every page costs one index seek, however deep.
//!
//! Cursors are base64url-encoded JSON so clients treat them as opaque; decoding validates the
//! value against the key column's type, so a forged cursor can only ever be a bad request.

use base64::Engine;
use strata_domain::dataset::{Column, ColumnType};
use strata_domain::value::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn encode_key(v: &Value) -> String {
    let json = serde_json::json!({ "k": v.to_json() });
    B64.encode(json.to_string())
}

pub fn decode_key(cursor: &str, pk: &Column) -> Option<Value> {
    if cursor.len() > 4096 {
        return None;
    }
    let bytes = B64.decode(cursor).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match (pk.ty, json.get("k")?) {
        (ColumnType::Integer, serde_json::Value::Number(n)) => n.as_i64().map(Value::Int),
        (ColumnType::String, serde_json::Value::String(s)) => Some(Value::Text(s.clone())),
        _ => None,
    }
}

pub fn encode_id(id: i64) -> String {
    B64.encode(serde_json::json!({ "id": id }).to_string())
}

pub fn decode_id(cursor: &str) -> Option<i64> {
    if cursor.len() > 256 {
        return None;
    }
    let bytes = B64.decode(cursor).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    json.get("id")?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: ColumnType) -> Column {
        Column {
            name: "id".into(),
            ty,
            required: true,
            min_length: None,
            max_length: None,
            min: None,
            max: None,
            precision: 0,
            scale: 0,
            references: None,
        }
    }

    #[test]
    fn cursors_round_trip_and_forgeries_are_refused() {
        let c = encode_key(&Value::Int(42));
        assert_eq!(decode_key(&c, &col(ColumnType::Integer)), Some(Value::Int(42)));
        assert_eq!(decode_key(&c, &col(ColumnType::String)), None);
        assert_eq!(decode_key("not base64!", &col(ColumnType::Integer)), None);
        assert_eq!(decode_key("' OR 1=1 --", &col(ColumnType::Integer)), None);
        assert_eq!(decode_id(&encode_id(7)), Some(7));
        assert_eq!(decode_id("eyJ9"), None);
    }
}
