//! The two binary payloads inside e6data messages (wire doc §6 and §7), shared by Strata's
//! server (encoding) and this connector (decoding):
//!
//! * result metadata: a Java `DataOutputStream` layout, big-endian, strings as a u16 length
//!   plus standard UTF-8;
//! * result batches: one Thrift-binary `Chunk` struct per message, no framing.
//!
//! Size: about 600 lines of codec plus tests: both payloads, encode and decode side by side, so
//! the server's encoder and the client's decoder cannot drift.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;

/// e6data `VectorType` values (an i32 on the wire).
pub mod vector_type {
    pub const BINARY: i32 = 0;
    pub const BOOLEAN: i32 = 1;
    pub const DOUBLE: i32 = 2;
    pub const FLOAT: i32 = 3;
    pub const INTEGER: i32 = 5;
    pub const LONG: i32 = 6;
    pub const STRING: i32 = 7;
    pub const DATE: i32 = 8;
    pub const DATETIME: i32 = 9;
    pub const STRUCT: i32 = 11;
    pub const MAP: i32 = 12;
    pub const ARRAY: i32 = 13;
    pub const NULL: i32 = 14;
    pub const TIMESTAMP_TZ: i32 = 15;
    pub const DECIMAL128: i32 = 16;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated payload")]
    Truncated,
    #[error("malformed payload: {0}")]
    Malformed(String),
}

// ---------------------------------------------------------------------------------------------
// Result metadata (§6)

/// One result column as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    pub name: String,
    pub type_name: String,
}

fn put_utf(out: &mut Vec<u8>, s: &str) {
    // Standard UTF-8 (not Java's modified form, which the Python client rejects), cut at a
    // character boundary if it would overflow the u16 length.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Encodes the metadata blob: row count (-1 = not known yet), then name, type, zone, format
/// for each field.
pub fn encode_metadata(row_count: i64, fields: &[FieldInfo]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + fields.len() * 24);
    out.extend_from_slice(&row_count.to_be_bytes());
    out.extend_from_slice(&(fields.len() as i32).to_be_bytes());
    for f in fields {
        put_utf(&mut out, &f.name);
        put_utf(&mut out, &f.type_name);
        put_utf(&mut out, "");
        put_utf(&mut out, "");
    }
    out
}

struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.b.get(self.at..end).ok_or(WireError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn f64(&mut self) -> Result<f64, WireError> {
        Ok(f64::from_bits(self.i64()? as u64))
    }
    fn len(&mut self) -> Result<usize, WireError> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| WireError::Malformed(format!("negative length {n}")))
    }
    fn bin(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.len()?;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, WireError> {
        let b = self.bin()?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::Malformed("string is not UTF-8".into()))
    }
}

/// Decodes the metadata blob into (row count, fields).
pub fn decode_metadata(b: &[u8]) -> Result<(i64, Vec<FieldInfo>), WireError> {
    let mut c = Cur { b, at: 0 };
    let rows = c.i64()?;
    let n = c.i32()?;
    let n = usize::try_from(n).map_err(|_| WireError::Malformed("negative field count".into()))?;
    let utf = |c: &mut Cur<'_>| -> Result<String, WireError> {
        let len = u16::from_be_bytes(c.take(2)?.try_into().expect("2 bytes")) as usize;
        String::from_utf8(c.take(len)?.to_vec()).map_err(|_| WireError::Malformed("field name is not UTF-8".into()))
    };
    let mut fields = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let name = utf(&mut c)?;
        let type_name = utf(&mut c)?;
        utf(&mut c)?;
        utf(&mut c)?;
        fields.push(FieldInfo { name, type_name });
    }
    Ok((rows, fields))
}

// ---------------------------------------------------------------------------------------------
// Thrift binary encoding of a Chunk (§7)

const T_BOOL: u8 = 2;
const T_BYTE: u8 = 3;
const T_DOUBLE: u8 = 4;
const T_I16: u8 = 6;
const T_I32: u8 = 8;
const T_I64: u8 = 10;
const T_STRING: u8 = 11;
const T_STRUCT: u8 = 12;
const T_MAP: u8 = 13;
const T_SET: u8 = 14;
const T_LIST: u8 = 15;

/// The values of one column in a chunk, borrowed from whoever produced them. Lists are dense:
/// NULL rows hold a placeholder.
#[derive(Debug, Clone, Copy)]
pub enum VectorData<'a> {
    Long(&'a [i64]),
    Double(&'a [f64]),
    Boolean(&'a [bool]),
    String(&'a [String]),
    /// Microseconds since the epoch, rendered as a UTC calendar day.
    Date(&'a [i64]),
    /// Microseconds since the epoch, rendered as a UTC instant.
    DateTime(&'a [i64]),
    /// Unscaled values; each becomes 16 big-endian two's-complement bytes.
    Decimal {
        unscaled: &'a [i128],
        scale: u32,
    },
}

impl VectorData<'_> {
    pub fn vector_type(&self) -> i32 {
        match self {
            VectorData::Long(_) => vector_type::LONG,
            VectorData::Double(_) => vector_type::DOUBLE,
            VectorData::Boolean(_) => vector_type::BOOLEAN,
            VectorData::String(_) => vector_type::STRING,
            VectorData::Date(_) => vector_type::DATE,
            VectorData::DateTime(_) => vector_type::DATETIME,
            VectorData::Decimal { .. } => vector_type::DECIMAL128,
        }
    }
}

/// One column of a chunk to encode.
#[derive(Debug, Clone, Copy)]
pub struct VectorOut<'a> {
    pub nulls: &'a [bool],
    pub data: VectorData<'a>,
}

struct W {
    out: Vec<u8>,
}

impl W {
    fn field(&mut self, ty: u8, id: i16) {
        self.out.push(ty);
        self.out.extend_from_slice(&id.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn list(&mut self, elem: u8, n: usize) {
        self.out.push(elem);
        self.i32(n as i32);
    }
    fn stop(&mut self) {
        self.out.push(0);
    }
}

/// Encodes one non-empty chunk: `rows` rows and one vector per column. Every vector has the
/// chunk's size, a null set and dense data, so strict decoders accept it.
pub fn encode_chunk(rows: usize, vectors: &[VectorOut<'_>]) -> Vec<u8> {
    let mut w = W { out: Vec::with_capacity(64 + rows * vectors.len() * 10) };
    w.field(T_I32, 1);
    w.i32(rows as i32);
    w.field(T_LIST, 2);
    w.list(T_STRUCT, vectors.len());
    for v in vectors {
        w.field(T_I32, 1);
        w.i32(rows as i32);
        w.field(T_I32, 2);
        w.i32(v.data.vector_type());
        w.field(T_LIST, 3);
        w.list(T_BOOL, v.nulls.len());
        w.out.extend(v.nulls.iter().map(|&n| n as u8));
        w.field(T_STRUCT, 4); // Data union
        match v.data {
            VectorData::Long(d) => {
                w.field(T_STRUCT, 3);
                w.field(T_LIST, 1);
                w.list(T_I64, d.len());
                for x in d {
                    w.out.extend_from_slice(&x.to_be_bytes());
                }
            }
            VectorData::Double(d) => {
                w.field(T_STRUCT, 6);
                w.field(T_LIST, 1);
                w.list(T_DOUBLE, d.len());
                for x in d {
                    w.out.extend_from_slice(&x.to_bits().to_be_bytes());
                }
            }
            VectorData::Boolean(d) => {
                w.field(T_STRUCT, 1);
                w.field(T_LIST, 1);
                w.list(T_BOOL, d.len());
                w.out.extend(d.iter().map(|&b| b as u8));
            }
            VectorData::String(d) => {
                w.field(T_STRUCT, 7);
                w.field(T_LIST, 1);
                w.list(T_STRING, d.len());
                for s in d {
                    w.i32(s.len() as i32);
                    w.out.extend_from_slice(s.as_bytes());
                }
            }
            VectorData::Date(d) | VectorData::DateTime(d) => {
                let member = if matches!(v.data, VectorData::Date(_)) { 4 } else { 16 };
                w.field(T_STRUCT, member);
                w.field(T_LIST, 1);
                w.list(T_I64, d.len());
                for x in d {
                    w.out.extend_from_slice(&x.to_be_bytes());
                }
            }
            VectorData::Decimal { unscaled, scale } => {
                w.field(T_STRUCT, 17);
                w.field(T_LIST, 1);
                w.list(T_STRING, unscaled.len());
                for x in unscaled {
                    w.i32(16);
                    w.out.extend_from_slice(&x.to_be_bytes());
                }
                w.field(T_I32, 2);
                w.i32(scale as i32);
            }
        }
        w.stop(); // payload struct
        w.stop(); // Data union
        w.field(T_BOOL, 5);
        w.out.push(0);
        w.stop(); // Vector
    }
    w.stop(); // Chunk
    w.out
}

// ---------------------------------------------------------------------------------------------
// Decoding a Chunk into typed values

/// A value as this connector returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Double(f64),
    Bool(bool),
    String(String),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    /// TIMESTAMP_TZ: the instant in the row's own zone.
    DateTimeTz(DateTime<FixedOffset>),
    Decimal(Decimal),
}

#[derive(Debug, Default)]
struct RawData {
    bools: Vec<bool>,
    ints: Vec<i64>,
    doubles: Vec<f64>,
    strings: Vec<Vec<u8>>,
    zones: Vec<String>,
    scale: Option<i32>,
    const_int: Option<i64>,
    const_double: Option<f64>,
    const_bool: Option<bool>,
    const_bin: Option<Vec<u8>>,
    const_zone: Option<String>,
}

#[derive(Debug, Default)]
struct RawVector {
    size: i32,
    vtype: i32,
    nulls: Vec<bool>,
    data: Option<RawData>,
    constant: bool,
}

fn skip(c: &mut Cur<'_>, ty: u8, depth: u32) -> Result<(), WireError> {
    if depth > 32 {
        return Err(WireError::Malformed("nesting too deep".into()));
    }
    match ty {
        T_BOOL | T_BYTE => {
            c.take(1)?;
        }
        T_I16 => {
            c.take(2)?;
        }
        T_I32 => {
            c.take(4)?;
        }
        T_I64 | T_DOUBLE => {
            c.take(8)?;
        }
        T_STRING => {
            c.bin()?;
        }
        T_STRUCT => loop {
            let t = c.u8()?;
            if t == 0 {
                break;
            }
            c.i16()?;
            skip(c, t, depth + 1)?;
        },
        T_LIST | T_SET => {
            let et = c.u8()?;
            let n = c.len()?;
            for _ in 0..n {
                skip(c, et, depth + 1)?;
            }
        }
        T_MAP => {
            let kt = c.u8()?;
            let vt = c.u8()?;
            let n = c.len()?;
            for _ in 0..n {
                skip(c, kt, depth + 1)?;
                skip(c, vt, depth + 1)?;
            }
        }
        t => return Err(WireError::Malformed(format!("unknown thrift type {t}"))),
    }
    Ok(())
}

/// Reads `list<elem>` if the element type matches, else skips it (as Thrift does).
fn list_of<T>(
    c: &mut Cur<'_>,
    want: u8,
    mut read: impl FnMut(&mut Cur<'_>) -> Result<T, WireError>,
) -> Result<Vec<T>, WireError> {
    let et = c.u8()?;
    let n = c.len()?;
    if et != want {
        for _ in 0..n {
            skip(c, et, 1)?;
        }
        return Ok(Vec::new());
    }
    // Every element takes at least one byte: a count beyond the payload is malformed.
    if n > c.b.len() - c.at.min(c.b.len()) {
        return Err(WireError::Truncated);
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(read(c)?);
    }
    Ok(v)
}

fn read_payload(c: &mut Cur<'_>, member: i16) -> Result<RawData, WireError> {
    let mut d = RawData::default();
    loop {
        let t = c.u8()?;
        if t == 0 {
            return Ok(d);
        }
        let id = c.i16()?;
        match (member, id, t) {
            (1, 1, T_LIST) => d.bools = list_of(c, T_BOOL, |c| Ok(c.u8()? == 1))?,
            (2, 1, T_LIST) => d.ints = list_of(c, T_I32, |c| Ok(c.i32()? as i64))?,
            (3 | 4, 1, T_LIST) => d.ints = list_of(c, T_I64, |c| c.i64())?,
            (5 | 6, 1, T_LIST) => d.doubles = list_of(c, T_DOUBLE, |c| c.f64())?,
            (7, 1, T_LIST) => d.strings = list_of(c, T_STRING, |c| Ok(c.bin()?.to_vec()))?,
            (8, 1, T_BOOL) => d.const_bool = Some(c.u8()? == 1),
            (9 | 11 | 14, 1, T_I64) => d.const_int = Some(c.i64()?),
            (12, 1, T_DOUBLE) => d.const_double = Some(c.f64()?),
            (15 | 18, 1, T_STRING) => d.const_bin = Some(c.bin()?.to_vec()),
            (14, 2, T_STRING) => d.const_zone = Some(c.string()?),
            (16, 1, T_LIST) => d.ints = list_of(c, T_I64, |c| c.i64())?,
            (16, 2, T_LIST) => d.zones = list_of(c, T_STRING, |c| c.string())?,
            (17, 1, T_LIST) => d.strings = list_of(c, T_STRING, |c| Ok(c.bin()?.to_vec()))?,
            (17 | 18, 2, T_I32) => d.scale = Some(c.i32()?),
            _ => skip(c, t, 1)?,
        }
    }
}

fn read_data(c: &mut Cur<'_>) -> Result<Option<RawData>, WireError> {
    let mut out = None;
    loop {
        let t = c.u8()?;
        if t == 0 {
            return Ok(out);
        }
        let id = c.i16()?;
        if t == T_STRUCT {
            out = Some(read_payload(c, id)?);
        } else {
            skip(c, t, 1)?;
        }
    }
}

fn read_vector(c: &mut Cur<'_>) -> Result<RawVector, WireError> {
    let mut v = RawVector::default();
    loop {
        let t = c.u8()?;
        if t == 0 {
            return Ok(v);
        }
        let id = c.i16()?;
        match (id, t) {
            (1, T_I32) => v.size = c.i32()?,
            (2, T_I32) => v.vtype = c.i32()?,
            (3, T_LIST) => v.nulls = list_of(c, T_BOOL, |c| Ok(c.u8()? == 1))?,
            (4, T_STRUCT) => v.data = read_data(c)?,
            (5, T_BOOL) => v.constant = c.u8()? == 1,
            _ => skip(c, t, 1)?,
        }
    }
}

fn micros_to_utc(us: i64) -> Result<DateTime<Utc>, WireError> {
    DateTime::<Utc>::from_timestamp_micros(us).ok_or_else(|| WireError::Malformed(format!("instant {us} out of range")))
}

fn decimal_from(bytes: &[u8], scale: i32) -> Result<Decimal, WireError> {
    if bytes.len() != 16 {
        // The engine may also send a decimal literal as text.
        let s = std::str::from_utf8(bytes)
            .map_err(|_| WireError::Malformed("decimal is neither 16 bytes nor text".into()))?;
        return s.parse().map_err(|_| WireError::Malformed(format!("bad decimal {s:?}")));
    }
    let unscaled = i128::from_be_bytes(bytes.try_into().expect("16 bytes"));
    Decimal::try_from_i128_with_scale(unscaled, scale.max(0) as u32)
        .map_err(|_| WireError::Malformed(format!("decimal {unscaled}e-{scale} does not fit 96 bits")))
}

fn zone_offset(z: &str) -> Option<FixedOffset> {
    if z == "Z" || z.eq_ignore_ascii_case("UTC") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * secs)
}

fn value_at(v: &RawVector, row: usize) -> Result<Value, WireError> {
    let null =
        if v.constant { v.nulls.first().copied().unwrap_or(false) } else { v.nulls.get(row).copied().unwrap_or(false) };
    if null || v.vtype == vector_type::NULL {
        return Ok(Value::Null);
    }
    let d = v.data.as_ref().ok_or_else(|| WireError::Malformed("vector without data".into()))?;
    let missing = || WireError::Malformed(format!("vector of type {} lacks row {row}", v.vtype));
    use vector_type as vt;
    Ok(match v.vtype {
        vt::LONG | vt::INTEGER => {
            Value::Int(if v.constant { d.const_int } else { d.ints.get(row).copied() }.ok_or_else(missing)?)
        }
        vt::DOUBLE | vt::FLOAT => {
            Value::Double(if v.constant { d.const_double } else { d.doubles.get(row).copied() }.ok_or_else(missing)?)
        }
        vt::BOOLEAN => {
            Value::Bool(if v.constant { d.const_bool } else { d.bools.get(row).copied() }.ok_or_else(missing)?)
        }
        vt::STRING | vt::BINARY | vt::ARRAY | vt::MAP | vt::STRUCT => {
            let b = if v.constant { d.const_bin.as_deref() } else { d.strings.get(row).map(Vec::as_slice) }
                .ok_or_else(missing)?;
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        vt::DATE => {
            let us = if v.constant { d.const_int } else { d.ints.get(row).copied() }.ok_or_else(missing)?;
            Value::Date(micros_to_utc(us)?.date_naive())
        }
        vt::DATETIME => {
            let us = if v.constant { d.const_int } else { d.ints.get(row).copied() }.ok_or_else(missing)?;
            Value::DateTime(micros_to_utc(us)?)
        }
        vt::TIMESTAMP_TZ => {
            let us = if v.constant { d.const_int } else { d.ints.get(row).copied() }.ok_or_else(missing)?;
            let t = micros_to_utc(us)?;
            let zone = if v.constant { d.const_zone.clone() } else { d.zones.get(row).cloned() };
            match zone {
                Some(z) => Value::DateTimeTz(t.with_timezone(
                    &zone_offset(&z).ok_or_else(|| WireError::Malformed(format!("zone {z:?} is not an offset")))?,
                )),
                None => Value::DateTime(t),
            }
        }
        vt::DECIMAL128 => {
            let b = if v.constant { d.const_bin.as_deref() } else { d.strings.get(row).map(Vec::as_slice) }
                .ok_or_else(missing)?;
            Value::Decimal(decimal_from(b, d.scale.unwrap_or(0))?)
        }
        t => return Err(WireError::Malformed(format!("unsupported vector type {t}"))),
    })
}

/// Decodes one chunk into rows. Strict: the vector count must match `columns`, and every
/// vector's size the chunk's. An empty payload or a size ≤ 0 is the end of the result (`None`).
pub fn decode_chunk(b: &[u8], columns: usize) -> Result<Option<Vec<Vec<Value>>>, WireError> {
    if b.is_empty() {
        return Ok(None);
    }
    let mut c = Cur { b, at: 0 };
    let mut size = 0i32;
    let mut vectors = Vec::new();
    loop {
        let t = c.u8()?;
        if t == 0 {
            break;
        }
        let id = c.i16()?;
        match (id, t) {
            (1, T_I32) => size = c.i32()?,
            (2, T_LIST) => {
                let et = c.u8()?;
                let n = c.len()?;
                if et != T_STRUCT {
                    return Err(WireError::Malformed("Chunk.vectors is not a list of structs".into()));
                }
                for _ in 0..n {
                    vectors.push(read_vector(&mut c)?);
                }
            }
            _ => skip(&mut c, t, 1)?,
        }
    }
    if size <= 0 {
        return Ok(None);
    }
    if vectors.len() != columns {
        return Err(WireError::Malformed(format!("{} vectors for {columns} columns", vectors.len())));
    }
    if let Some(v) = vectors.iter().find(|v| v.size != size) {
        return Err(WireError::Malformed(format!("vector size {} in a chunk of {size}", v.size)));
    }
    let rows = size as usize;
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        let mut row = Vec::with_capacity(columns);
        for v in &vectors {
            row.push(value_at(v, r)?);
        }
        out.push(row);
    }
    Ok(Some(out))
}

/// Zone-aware construction for tests and callers building TIMESTAMP_TZ values.
pub fn at_offset(us: i64, offset_secs: i32) -> Option<DateTime<FixedOffset>> {
    FixedOffset::east_opt(offset_secs)?.timestamp_micros(us).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_matches_the_documented_bytes() {
        let b = encode_metadata(2, &[FieldInfo { name: "id".into(), type_name: "LONG".into() }]);
        assert_eq!(b, [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2, b'i', b'd', 0, 4, b'L', b'O', b'N', b'G', 0, 0, 0, 0]);
        assert_eq!(decode_metadata(&b).unwrap(), (2, vec![FieldInfo { name: "id".into(), type_name: "LONG".into() }]));
        assert_eq!(decode_metadata(&b[..10]), Err(WireError::Truncated));
    }

    #[test]
    fn a_long_chunk_matches_the_documented_77_bytes() {
        let b = encode_chunk(2, &[VectorOut { nulls: &[false, true], data: VectorData::Long(&[1, 0]) }]);
        let expected: Vec<u8> = vec![
            0x08, 0, 1, 0, 0, 0, 2, 0x0f, 0, 2, 0x0c, 0, 0, 0, 1, 0x08, 0, 1, 0, 0, 0, 2, 0x08, 0, 2, 0, 0, 0, 6, 0x0f,
            0, 3, 0x02, 0, 0, 0, 2, 0, 1, 0x0c, 0, 4, 0x0c, 0, 3, 0x0f, 0, 1, 0x0a, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 5, 0, 0, 0,
        ];
        assert_eq!(b.len(), 77);
        assert_eq!(b, expected);
        assert_eq!(decode_chunk(&b, 1).unwrap().unwrap(), vec![vec![Value::Int(1)], vec![Value::Null]]);
    }

    #[test]
    fn every_kind_round_trips() {
        let texts = vec!["a".to_string(), "bé".to_string(), String::new()];
        let b = encode_chunk(
            3,
            &[
                VectorOut { nulls: &[false, false, true], data: VectorData::String(&texts) },
                VectorOut { nulls: &[false, true, false], data: VectorData::Double(&[1.5, 0.0, 2.25]) },
                VectorOut { nulls: &[false, false, true], data: VectorData::Boolean(&[true, false, false]) },
                VectorOut {
                    nulls: &[false, true, false],
                    data: VectorData::Date(&[1_709_164_800_000_000, 0, -14_256_000_000_000]),
                },
                VectorOut {
                    nulls: &[false, false, false],
                    data: VectorData::DateTime(&[1_709_210_096_789_123, 0, -1]),
                },
                VectorOut {
                    nulls: &[false, true, false],
                    data: VectorData::Decimal { unscaled: &[12345, 0, -5], scale: 2 },
                },
            ],
        );
        let rows = decode_chunk(&b, 6).unwrap().unwrap();
        assert_eq!(rows[0][0], Value::String("a".into()));
        assert_eq!(rows[1][0], Value::String("bé".into()));
        assert_eq!(rows[2][0], Value::Null);
        assert_eq!(rows[2][1], Value::Double(2.25));
        assert_eq!(rows[1][2], Value::Bool(false));
        assert_eq!(rows[0][3], Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()));
        assert_eq!(rows[2][3], Value::Date(NaiveDate::from_ymd_opt(1969, 7, 20).unwrap()));
        assert_eq!(rows[0][4], Value::DateTime(DateTime::from_timestamp_micros(1_709_210_096_789_123).unwrap()));
        assert_eq!(rows[0][5], Value::Decimal("123.45".parse().unwrap()));
        assert_eq!(rows[2][5], Value::Decimal("-0.05".parse().unwrap()));
        assert_eq!(rows[1][5], Value::Null);
    }

    #[test]
    fn end_of_results_and_bad_chunks_are_told_apart() {
        assert_eq!(decode_chunk(&[], 1).unwrap(), None);
        let b = encode_chunk(2, &[VectorOut { nulls: &[false, false], data: VectorData::Long(&[1, 2]) }]);
        assert!(decode_chunk(&b, 2).is_err(), "vector count must match the columns");
        assert!(decode_chunk(&b[..b.len() - 3], 1).is_err());
        // a list count far beyond the payload must not allocate or panic
        let mut evil = b.clone();
        evil[11..15].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_chunk(&evil, 1).is_err());
    }
}
