//! Avro object container files: Strata's backup format.
//!
//! Size: about 1,000 lines of code in one file on purpose: the writer, the reader and schema
//! resolution share the encoding primitives and the resolution rules, and splitting them would
//! scatter one specification over several files (the tests are the last 200 lines).
//!
//! Why our own codec rather than a general Avro library: backups stream tens of millions of
//! rows, and restore must map any writer's schema onto the data dictionary by field name with
//! exact, float-free conversions (the seed's files carry datetimes as strings, ids as `int`).
//! The container format and binary encoding are small and fully specified (Avro 1.11 spec,
//! "Object Container Files" and "Binary Encoding"); this module implements them directly:
//!
//! * [`schema_for`] builds the writer schema of a table: a record named after the table, one
//!   field per column, logical types `timestamp-micros`, `date` and `decimal`, optional columns
//!   as `["null", T]` unions.
//! * [`Writer`] streams rows into blocks of about 1 MiB, compressed with [`Codec`].
//! * [`Reader`] reads any container file, checks every sync marker (so truncation and
//!   corruption are detected), and [`Resolver`] maps the writer schema onto a table: fields
//!   match by name, unknown writer fields are skipped, missing optional columns become null,
//!   and each value is converted exactly and checked against the column's limits.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use crate::dataset::{Column, ColumnType, Table};
use crate::value::{check_limits, parse_text, FieldError, Reason, Value};

const MAGIC: &[u8; 4] = b"Obj\x01";
/// Uncompressed bytes per block before it is flushed: big enough to compress well, small
/// enough to keep memory flat.
const BLOCK_BYTES: usize = 1 << 20;
/// A block larger than this, compressed or decompressed, is refused: other writers use blocks
/// of 16 KiB (fastavro) to 1 MiB (Strata), so this is generous, and it bounds what one upload
/// can make the server hold. Decompression stops the moment it is passed, so a small
/// compressed block that inflates to gigabytes costs no more than this.
pub const MAX_BLOCK_BYTES: usize = 32 << 20;

/// Reads `r` to its end into a buffer that never grows past `limit` bytes (no doubling
/// overshoot either); `None` as soon as there is more.
fn read_bounded(mut r: impl Read, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(Some(out)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if out.len() + n > limit {
            return Ok(None);
        }
        if out.len() + n > out.capacity() {
            let target = (out.capacity() * 2).max(out.len() + n).max(64 * 1024).min(limit);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Null,
    Deflate,
    Snappy,
    Zstd,
}

impl Codec {
    /// The name the Avro specification uses in `avro.codec`.
    pub fn avro_name(self) -> &'static str {
        match self {
            Codec::Null => "null",
            Codec::Deflate => "deflate",
            Codec::Snappy => "snappy",
            Codec::Zstd => "zstandard",
        }
    }

    /// From a user's choice (`zstd` or `zstandard`) or a file's metadata.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "null" => Some(Codec::Null),
            "deflate" => Some(Codec::Deflate),
            "snappy" => Some(Codec::Snappy),
            "zstd" | "zstandard" => Some(Codec::Zstd),
            _ => None,
        }
    }

    fn compress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Codec::Null => Ok(data.to_vec()),
            Codec::Deflate => {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data)?;
                e.finish()
            }
            Codec::Snappy => {
                let mut out = snap::raw::Encoder::new().compress_vec(data).map_err(io::Error::other)?;
                out.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
                Ok(out)
            }
            Codec::Zstd => zstd::bulk::compress(data, 3),
        }
    }

    fn decompress(self, data: &[u8]) -> Result<Vec<u8>, AvroError> {
        let bad = |e: String| AvroError::Corrupt(format!("a {} block does not decompress: {e}", self.avro_name()));
        let too_big = || {
            AvroError::Corrupt(format!(
                "a {} block decompresses to more than {} MiB, the largest block Strata reads",
                self.avro_name(),
                MAX_BLOCK_BYTES >> 20
            ))
        };
        let inflated = match self {
            Codec::Null => Some(data.to_vec()),
            Codec::Deflate => read_bounded(flate2::read::DeflateDecoder::new(data), MAX_BLOCK_BYTES)
                .map_err(|e| bad(e.to_string()))?,
            Codec::Snappy => {
                if data.len() < 4 {
                    return Err(bad("block too short".into()));
                }
                let (body, crc) = data.split_at(data.len() - 4);
                // Snappy states the decompressed length up front: refuse before allocating.
                let len = snap::raw::decompress_len(body).map_err(|e| bad(e.to_string()))?;
                if len > MAX_BLOCK_BYTES {
                    return Err(too_big());
                }
                let out = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| bad(e.to_string()))?;
                if crc32fast::hash(&out).to_be_bytes() != crc {
                    return Err(bad("checksum mismatch".into()));
                }
                Some(out)
            }
            Codec::Zstd => {
                let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| bad(e.to_string()))?;
                read_bounded(decoder, MAX_BLOCK_BYTES).map_err(|e| bad(e.to_string()))?
            }
        };
        inflated.ok_or_else(too_big)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("not an Avro object container file")]
    NotAvro,
    #[error("the file is truncated: {0}")]
    Truncated(String),
    #[error("the file is corrupt: {0}")]
    Corrupt(String),
    #[error("the file's schema is not supported: {0}")]
    BadSchema(String),
    #[error("the file's schema does not match table {table}: {reason}")]
    Mismatch { table: String, reason: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

// ---------------------------------------------------------------------------------------------
// Schemas

/// The writer schema of a table.
pub fn schema_for(table: &Table) -> Json {
    let fields: Vec<Json> = table
        .columns
        .iter()
        .map(|c| {
            let ty = match c.ty {
                ColumnType::Integer => json!("long"),
                ColumnType::String => json!("string"),
                ColumnType::Boolean => json!("boolean"),
                ColumnType::Datetime => json!({"type": "long", "logicalType": "timestamp-micros"}),
                ColumnType::Date => json!({"type": "int", "logicalType": "date"}),
                ColumnType::Decimal => json!({"type": "bytes", "logicalType": "decimal",
                    "precision": c.precision, "scale": c.scale}),
            };
            if c.required {
                json!({"name": c.name, "type": ty})
            } else {
                json!({"name": c.name, "type": ["null", ty], "default": null})
            }
        })
        .collect();
    json!({"type": "record", "name": table.name, "namespace": format!("strata.{}", table.dataset), "fields": fields})
}

/// SHA-256 of the schema's Parsing Canonical Form (Avro spec), hex: equal for schemas that
/// encode data identically, whatever their formatting or documentation.
pub fn fingerprint(schema: &Json) -> String {
    let pcf = canonical(schema, None);
    let digest = Sha256::digest(pcf.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn canonical(s: &Json, namespace: Option<&str>) -> String {
    match s {
        Json::String(p) => format!("\"{p}\""),
        Json::Array(items) => {
            format!("[{}]", items.iter().map(|i| canonical(i, namespace)).collect::<Vec<_>>().join(","))
        }
        Json::Object(o) => {
            let ty = o.get("type").and_then(Json::as_str).unwrap_or("");
            let ns = o.get("namespace").and_then(Json::as_str).or(namespace);
            let full = |n: &str| match ns {
                Some(ns) if !n.contains('.') && !ns.is_empty() => format!("{ns}.{n}"),
                _ => n.to_string(),
            };
            match ty {
                "record" => {
                    let name = full(o.get("name").and_then(Json::as_str).unwrap_or(""));
                    let fields: Vec<String> = o
                        .get("fields")
                        .and_then(Json::as_array)
                        .map(|fs| {
                            fs.iter()
                                .map(|f| {
                                    format!(
                                        "{{\"name\":\"{}\",\"type\":{}}}",
                                        f.get("name").and_then(Json::as_str).unwrap_or(""),
                                        canonical(f.get("type").unwrap_or(&Json::Null), ns)
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("{{\"name\":\"{name}\",\"type\":\"record\",\"fields\":[{}]}}", fields.join(","))
                }
                "enum" => format!(
                    "{{\"name\":\"{}\",\"type\":\"enum\",\"symbols\":{}}}",
                    full(o.get("name").and_then(Json::as_str).unwrap_or("")),
                    o.get("symbols").cloned().unwrap_or(Json::Null)
                ),
                "fixed" => format!(
                    "{{\"name\":\"{}\",\"type\":\"fixed\",\"size\":{}}}",
                    full(o.get("name").and_then(Json::as_str).unwrap_or("")),
                    o.get("size").cloned().unwrap_or(Json::Null)
                ),
                "array" => {
                    format!("{{\"type\":\"array\",\"items\":{}}}", canonical(o.get("items").unwrap_or(&Json::Null), ns))
                }
                "map" => {
                    format!("{{\"type\":\"map\",\"values\":{}}}", canonical(o.get("values").unwrap_or(&Json::Null), ns))
                }
                prim => format!("\"{prim}\""),
            }
        }
        other => other.to_string(),
    }
}

/// A parsed writer schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    Null,
    Boolean,
    Int {
        date: bool,
    },
    /// `micros_per_unit` is 1000 for timestamp-millis, 1 for timestamp-micros, 0 for a plain long.
    Long {
        micros_per_unit: i64,
    },
    Float,
    Double,
    Bytes {
        decimal: Option<(u32, u32)>,
    },
    String,
    Record {
        name: String,
        fields: Vec<(String, Schema)>,
    },
    Enum {
        symbols: Vec<String>,
    },
    Array(Box<Schema>),
    Map(Box<Schema>),
    Union(Vec<Schema>),
    Fixed {
        size: usize,
        decimal: Option<(u32, u32)>,
    },
}

/// Parses a writer schema, including references to named types defined earlier in it.
pub fn parse_schema(json: &Json) -> Result<Schema, AvroError> {
    let mut named = HashMap::new();
    parse_node(json, &mut named, 0)
}

fn decimal_of(o: &serde_json::Map<String, Json>) -> Option<(u32, u32)> {
    if o.get("logicalType").and_then(Json::as_str) != Some("decimal") {
        return None;
    }
    let p = o.get("precision").and_then(Json::as_u64)? as u32;
    let s = o.get("scale").and_then(Json::as_u64).unwrap_or(0) as u32;
    Some((p, s))
}

fn parse_node(j: &Json, named: &mut HashMap<String, Schema>, depth: usize) -> Result<Schema, AvroError> {
    if depth > 32 {
        return Err(AvroError::BadSchema("nested too deeply".into()));
    }
    let bad = |m: String| AvroError::BadSchema(m);
    match j {
        Json::String(name) => match name.as_str() {
            "null" => Ok(Schema::Null),
            "boolean" => Ok(Schema::Boolean),
            "int" => Ok(Schema::Int { date: false }),
            "long" => Ok(Schema::Long { micros_per_unit: 0 }),
            "float" => Ok(Schema::Float),
            "double" => Ok(Schema::Double),
            "bytes" => Ok(Schema::Bytes { decimal: None }),
            "string" => Ok(Schema::String),
            other => named
                .get(other)
                .or_else(|| named.get(other.rsplit('.').next().unwrap_or(other)))
                .cloned()
                .ok_or_else(|| bad(format!("unknown type {other:?}"))),
        },
        Json::Array(branches) => {
            Ok(Schema::Union(branches.iter().map(|b| parse_node(b, named, depth + 1)).collect::<Result<_, _>>()?))
        }
        Json::Object(o) => {
            let ty = o.get("type").ok_or_else(|| bad("a schema object without \"type\"".into()))?;
            let logical = o.get("logicalType").and_then(Json::as_str);
            let ty_name = match ty {
                Json::String(s) => s.as_str(),
                other => return parse_node(other, named, depth + 1),
            };
            let schema = match ty_name {
                "int" => Schema::Int { date: logical == Some("date") },
                "long" => Schema::Long {
                    micros_per_unit: match logical {
                        Some("timestamp-micros") | Some("local-timestamp-micros") => 1,
                        Some("timestamp-millis") | Some("local-timestamp-millis") => 1000,
                        _ => 0,
                    },
                },
                "bytes" => Schema::Bytes { decimal: decimal_of(o) },
                "fixed" => {
                    let size = o.get("size").and_then(Json::as_u64).ok_or_else(|| bad("fixed without size".into()))?;
                    Schema::Fixed { size: size as usize, decimal: decimal_of(o) }
                }
                "record" | "error" => {
                    let name = o.get("name").and_then(Json::as_str).unwrap_or("").to_string();
                    let mut fields = Vec::new();
                    for f in
                        o.get("fields").and_then(Json::as_array).ok_or_else(|| bad("record without fields".into()))?
                    {
                        let fname =
                            f.get("name").and_then(Json::as_str).ok_or_else(|| bad("field without name".into()))?;
                        let ftype = f.get("type").ok_or_else(|| bad(format!("field {fname} without type")))?;
                        fields.push((fname.to_string(), parse_node(ftype, named, depth + 1)?));
                    }
                    let s = Schema::Record { name: name.clone(), fields };
                    named.insert(name, s.clone());
                    s
                }
                "enum" => {
                    let symbols = o
                        .get("symbols")
                        .and_then(Json::as_array)
                        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                        .unwrap_or_default();
                    let s = Schema::Enum { symbols };
                    if let Some(n) = o.get("name").and_then(Json::as_str) {
                        named.insert(n.to_string(), s.clone());
                    }
                    s
                }
                "array" => {
                    Schema::Array(Box::new(parse_node(o.get("items").unwrap_or(&Json::Null), named, depth + 1)?))
                }
                "map" => Schema::Map(Box::new(parse_node(o.get("values").unwrap_or(&Json::Null), named, depth + 1)?)),
                prim => parse_node(&Json::String(prim.to_string()), named, depth + 1)?,
            };
            if let (Schema::Fixed { .. }, Some(n)) = (&schema, o.get("name").and_then(Json::as_str)) {
                named.insert(n.to_string(), schema.clone());
            }
            Ok(schema)
        }
        _ => Err(bad(format!("unexpected schema {j}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Binary encoding

fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// Two's-complement big-endian bytes of an unscaled decimal, as short as possible.
fn decimal_bytes(d: &Decimal) -> Vec<u8> {
    let v = d.mantissa();
    let all = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (all[start], all[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    all[start..].to_vec()
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
}

/// Streams a table's rows into an Avro container file.
pub struct Writer<W: Write> {
    inner: W,
    codec: Codec,
    sync: [u8; 16],
    columns: Vec<Column>,
    block: Vec<u8>,
    count: i64,
    rows: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(mut inner: W, table: &Table, codec: Codec) -> io::Result<Self> {
        let schema = schema_for(table).to_string();
        let mut header = Vec::new();
        header.extend_from_slice(MAGIC);
        write_long(&mut header, 2);
        write_bytes(&mut header, b"avro.schema");
        write_bytes(&mut header, schema.as_bytes());
        write_bytes(&mut header, b"avro.codec");
        write_bytes(&mut header, codec.avro_name().as_bytes());
        write_long(&mut header, 0);
        let mut sync = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut sync);
        header.extend_from_slice(&sync);
        inner.write_all(&header)?;
        Ok(Self {
            inner,
            codec,
            sync,
            columns: table.columns.clone(),
            block: Vec::with_capacity(BLOCK_BYTES + 4096),
            count: 0,
            rows: 0,
        })
    }

    pub fn write_row(&mut self, row: &[Value]) -> io::Result<()> {
        for (c, v) in self.columns.iter().zip(row) {
            if !c.required {
                match v {
                    Value::Null => {
                        write_long(&mut self.block, 0);
                        continue;
                    }
                    _ => write_long(&mut self.block, 1),
                }
            }
            match v {
                Value::Null => return Err(io::Error::other(format!("column {} is required but null", c.name))),
                Value::Int(i) => write_long(&mut self.block, *i),
                Value::Text(s) => write_bytes(&mut self.block, s.as_bytes()),
                Value::Bool(b) => self.block.push(*b as u8),
                Value::DateTime(us) => write_long(&mut self.block, *us),
                Value::Date(d) => write_long(&mut self.block, (*d - epoch()).num_days()),
                Value::Decimal(d) => write_bytes(&mut self.block, &decimal_bytes(d)),
            }
        }
        self.count += 1;
        self.rows += 1;
        if self.block.len() >= BLOCK_BYTES {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let data = self.codec.compress(&self.block)?;
        let mut head = Vec::with_capacity(20);
        write_long(&mut head, self.count);
        write_long(&mut head, data.len() as i64);
        self.inner.write_all(&head)?;
        self.inner.write_all(&data)?;
        self.inner.write_all(&self.sync)?;
        self.block.clear();
        self.count = 0;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the last block and returns the inner writer (not flushed to disk: that is the
    /// caller's job).
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_block()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A cursor over a decompressed block.
struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn corrupt(what: &str) -> AvroError {
    AvroError::Corrupt(format!("{what} runs past the end of its block"))
}

impl Cur<'_> {
    fn long(&mut self) -> Result<i64, AvroError> {
        let mut z: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *self.buf.get(self.pos).ok_or_else(|| corrupt("a number"))?;
            self.pos += 1;
            if shift >= 64 {
                return Err(AvroError::Corrupt("a number is too long".into()));
            }
            z |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], AvroError> {
        if n > self.buf.len() - self.pos {
            return Err(corrupt("a value"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&[u8], AvroError> {
        let n = self.long()?;
        if n < 0 {
            return Err(AvroError::Corrupt("negative length".into()));
        }
        self.take(n as usize)
    }

    fn skip(&mut self, s: &Schema) -> Result<(), AvroError> {
        match s {
            Schema::Null => {}
            Schema::Boolean => {
                self.take(1)?;
            }
            Schema::Int { .. } | Schema::Long { .. } | Schema::Enum { .. } => {
                self.long()?;
            }
            Schema::Float => {
                self.take(4)?;
            }
            Schema::Double => {
                self.take(8)?;
            }
            Schema::Bytes { .. } | Schema::String => {
                self.bytes()?;
            }
            Schema::Fixed { size, .. } => {
                self.take(*size)?;
            }
            Schema::Record { fields, .. } => {
                for (_, f) in fields {
                    self.skip(f)?;
                }
            }
            Schema::Union(branches) => {
                let i = self.long()?;
                let b =
                    branches.get(i as usize).ok_or_else(|| AvroError::Corrupt("union branch out of range".into()))?;
                self.skip(b)?;
            }
            Schema::Array(item) | Schema::Map(item) => loop {
                let mut n = self.long()?;
                if n == 0 {
                    break;
                }
                if n < 0 {
                    n = -n;
                    self.long()?; // block size in bytes, unused
                }
                for _ in 0..n {
                    if matches!(s, Schema::Map(_)) {
                        self.bytes()?;
                    }
                    self.skip(item)?;
                }
            },
        }
        Ok(())
    }
}

/// Reads an Avro container file block by block.
pub struct Reader<R: Read> {
    inner: R,
    codec: Codec,
    sync: [u8; 16],
    schema_json: Json,
    #[allow(dead_code)]
    schema: Schema,
    block: Vec<u8>,
    pos: usize,
    remaining: i64,
    finished: bool,
}

fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], what: &str) -> Result<(), AvroError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            AvroError::Truncated(format!("it ends inside {what}"))
        } else {
            AvroError::Io(e)
        }
    })
}

fn read_stream_long<R: Read>(r: &mut R, what: &str) -> Result<Option<i64>, AvroError> {
    let mut z: u64 = 0;
    let mut shift = 0;
    let mut first = true;
    loop {
        let mut b = [0u8; 1];
        match r.read(&mut b)? {
            0 if first => return Ok(None),
            0 => return Err(AvroError::Truncated(format!("it ends inside {what}"))),
            _ => {}
        }
        first = false;
        if shift >= 64 {
            return Err(AvroError::Corrupt(format!("{what} is too long")));
        }
        z |= ((b[0] & 0x7f) as u64) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    Ok(Some(((z >> 1) as i64) ^ -((z & 1) as i64)))
}

fn need_long<R: Read>(r: &mut R, what: &str) -> Result<i64, AvroError> {
    read_stream_long(r, what)?.ok_or_else(|| AvroError::Truncated(format!("it ends before {what}")))
}

impl<R: Read> Reader<R> {
    pub fn open(mut inner: R) -> Result<Self, AvroError> {
        let mut magic = [0u8; 4];
        inner.read_exact(&mut magic).map_err(|_| AvroError::NotAvro)?;
        if &magic != MAGIC {
            return Err(AvroError::NotAvro);
        }
        let mut meta: HashMap<String, Vec<u8>> = HashMap::new();
        // The header is metadata (a schema of a few KiB): cap all of it, however it is split.
        let mut header_bytes = 0usize;
        loop {
            let mut n = need_long(&mut inner, "the header")?;
            if n == 0 {
                break;
            }
            if n < 0 {
                n = -n;
                need_long(&mut inner, "the header")?;
            }
            if n > 1024 {
                return Err(AvroError::Corrupt("too many metadata entries".into()));
            }
            for _ in 0..n {
                let k = read_len_bytes(&mut inner, "a metadata key")?;
                let v = read_len_bytes(&mut inner, "a metadata value")?;
                header_bytes += k.len() + v.len();
                if header_bytes > MAX_HEADER_BYTES {
                    return Err(AvroError::Corrupt(format!(
                        "the header's metadata is larger than {} MiB",
                        MAX_HEADER_BYTES >> 20
                    )));
                }
                meta.insert(String::from_utf8_lossy(&k).into_owned(), v);
            }
        }
        let mut sync = [0u8; 16];
        read_exact_or(&mut inner, &mut sync, "the header")?;
        let codec_name =
            meta.get("avro.codec").map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_else(|| "null".into());
        let codec = Codec::parse(&codec_name)
            .ok_or_else(|| AvroError::BadSchema(format!("unsupported codec {codec_name:?}")))?;
        let schema_bytes =
            meta.get("avro.schema").ok_or_else(|| AvroError::BadSchema("no avro.schema in the header".into()))?;
        let schema_json: Json =
            serde_json::from_slice(schema_bytes).map_err(|e| AvroError::BadSchema(e.to_string()))?;
        let schema = parse_schema(&schema_json)?;
        Ok(Self { inner, codec, sync, schema_json, schema, block: Vec::new(), pos: 0, remaining: 0, finished: false })
    }

    pub fn schema_json(&self) -> &Json {
        &self.schema_json
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The underlying reader, positioned after the last block read.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Loads the next block; false at a clean end of file.
    fn next_block(&mut self) -> Result<bool, AvroError> {
        let Some(count) = read_stream_long(&mut self.inner, "a block header")? else {
            return Ok(false);
        };
        let size = need_long(&mut self.inner, "a block header")?;
        if count < 0 || size < 0 || size as usize > MAX_BLOCK_BYTES {
            return Err(AvroError::Corrupt("a block header is invalid".into()));
        }
        // Read as it arrives rather than allocating what the header claims.
        let data = read_bounded((&mut self.inner).take(size as u64), MAX_BLOCK_BYTES)?
            .filter(|d| d.len() == size as usize)
            .ok_or_else(|| AvroError::Truncated("it ends inside a data block".into()))?;
        let mut sync = [0u8; 16];
        read_exact_or(&mut self.inner, &mut sync, "a sync marker")?;
        if sync != self.sync {
            return Err(AvroError::Corrupt("a sync marker does not match the header's".into()));
        }
        self.block = self.codec.decompress(&data)?;
        self.pos = 0;
        self.remaining = count;
        Ok(true)
    }

    /// Decodes the next row with `resolver`: `None` at the end of the file; an inner error when
    /// the row breaks the data dictionary.
    pub fn next_row(&mut self, resolver: &Resolver) -> Result<Option<crate::validate::RowResult>, AvroError> {
        while self.remaining == 0 {
            if self.pos != self.block.len() {
                return Err(AvroError::Corrupt("a block holds more data than its row count".into()));
            }
            if self.finished || !self.next_block()? {
                self.finished = true;
                return Ok(None);
            }
        }
        let mut cur = Cur { buf: &self.block, pos: self.pos };
        let row = resolver.decode(&mut cur)?;
        self.pos = cur.pos;
        self.remaining -= 1;
        Ok(Some(row))
    }
}

/// All metadata of a file header together (the schema, the codec, a writer's extras).
const MAX_HEADER_BYTES: usize = 4 << 20;

fn read_len_bytes<R: Read>(r: &mut R, what: &str) -> Result<Vec<u8>, AvroError> {
    let n = need_long(r, what)?;
    if !(0..=MAX_HEADER_BYTES as i64).contains(&n) {
        return Err(AvroError::Corrupt(format!("{what} has an invalid length")));
    }
    // Read as it arrives rather than allocating what the length claims.
    read_bounded(r.take(n as u64), n as usize)?
        .filter(|v| v.len() == n as usize)
        .ok_or_else(|| AvroError::Truncated(format!("it ends inside {what}")))
}

/// What to do with one writer field.
#[derive(Debug, Clone)]
enum Step {
    Skip(Schema),
    Column(usize, Schema),
}

/// Maps a writer schema onto a table by field name (Avro schema resolution).
#[derive(Debug, Clone)]
pub struct Resolver {
    steps: Vec<Step>,
    /// Columns the writer does not have are all optional and stay null.
    columns: Vec<Column>,
}

fn compatible(s: &Schema, c: &Column) -> bool {
    match s {
        Schema::Union(bs) => bs.iter().any(|b| matches!(b, Schema::Null) || compatible(b, c)),
        Schema::Null => !c.required,
        Schema::String => true,
        other => matches!(
            (other, c.ty),
            (
                Schema::Int { date: false } | Schema::Long { micros_per_unit: 0 },
                ColumnType::Integer | ColumnType::Decimal
            ) | (Schema::Int { date: true }, ColumnType::Date)
                | (Schema::Long { micros_per_unit: 1 | 1000 }, ColumnType::Datetime)
                | (Schema::Bytes { decimal: Some(_) } | Schema::Fixed { decimal: Some(_), .. }, ColumnType::Decimal)
                | (Schema::Bytes { decimal: None }, ColumnType::String)
                | (Schema::Boolean, ColumnType::Boolean)
                | (Schema::Enum { .. }, ColumnType::String)
        ),
    }
}

fn describe(s: &Schema) -> String {
    match s {
        Schema::Union(bs) => format!("[{}]", bs.iter().map(describe).collect::<Vec<_>>().join(", ")),
        Schema::Int { date: true } => "int (date)".into(),
        Schema::Long { micros_per_unit: 1 } => "long (timestamp-micros)".into(),
        Schema::Long { micros_per_unit: 1000 } => "long (timestamp-millis)".into(),
        Schema::Bytes { decimal: Some(_) } => "bytes (decimal)".into(),
        other => format!("{other:?}").split([' ', '{', '(']).next().unwrap_or("").to_lowercase(),
    }
}

impl Resolver {
    pub fn new(writer: &Schema, table: &Table) -> Result<Self, AvroError> {
        let mismatch = |reason: String| AvroError::Mismatch { table: table.name.clone(), reason };
        let Schema::Record { fields, .. } = writer else {
            return Err(mismatch("the file's top-level schema is not a record".into()));
        };
        let mut steps = Vec::new();
        let mut seen = vec![false; table.columns.len()];
        for (name, s) in fields {
            match table.column_index(name) {
                Some(i) => {
                    if !compatible(s, &table.columns[i]) {
                        return Err(mismatch(format!(
                            "field {name} is {} in the file but column {name} is a {}",
                            describe(s),
                            table.columns[i].ty
                        )));
                    }
                    seen[i] = true;
                    steps.push(Step::Column(i, s.clone()));
                }
                None => steps.push(Step::Skip(s.clone())),
            }
        }
        for (i, c) in table.columns.iter().enumerate() {
            if !seen[i] && c.required {
                return Err(mismatch(format!("the file has no field for required column {}", c.name)));
            }
        }
        Ok(Self { steps, columns: table.columns.clone() })
    }

    fn decode(&self, cur: &mut Cur<'_>) -> Result<crate::validate::RowResult, AvroError> {
        // Absent (optional) columns stay null.
        let mut values: Vec<Option<Value>> = vec![Some(Value::Null); self.columns.len()];
        let mut errors = Vec::new();
        for step in &self.steps {
            match step {
                Step::Skip(s) => cur.skip(s)?,
                Step::Column(i, s) => {
                    let col = &self.columns[*i];
                    match decode_value(cur, s, col)? {
                        Ok(v) => values[*i] = Some(v),
                        Err(e) => {
                            values[*i] = None;
                            errors.push(FieldError { column: Some(col.name.clone()), code: e.0, reason: e.1 })
                        }
                    }
                }
            }
        }
        Ok(if errors.is_empty() {
            Ok(values.into_iter().map(|v| v.unwrap_or(Value::Null)).collect())
        } else {
            Err(crate::validate::Invalid { errors, parsed: values })
        })
    }
}

type Conv = Result<Value, (Reason, String)>;

fn decode_value(cur: &mut Cur<'_>, s: &Schema, col: &Column) -> Result<Conv, AvroError> {
    let v = match s {
        Schema::Union(bs) => {
            let i = cur.long()?;
            let b = bs.get(i as usize).ok_or_else(|| AvroError::Corrupt("union branch out of range".into()))?;
            return decode_value(cur, b, col);
        }
        Schema::Null => Value::Null,
        Schema::String | Schema::Bytes { decimal: None } => {
            let b = cur.bytes()?;
            let Ok(text) = std::str::from_utf8(b) else {
                return Ok(Err((Reason::InvalidEncoding, "text is not valid UTF-8".into())));
            };
            return Ok(parse_text(col, text).map_err(|e| (e.code, e.reason)));
        }
        Schema::Enum { symbols } => {
            let i = cur.long()?;
            let sym = symbols.get(i as usize).ok_or_else(|| AvroError::Corrupt("enum index out of range".into()))?;
            return Ok(parse_text(col, sym).map_err(|e| (e.code, e.reason)));
        }
        Schema::Boolean => Value::Bool(cur.take(1)?[0] != 0),
        Schema::Int { date: true } => {
            let days = cur.long()?;
            match epoch().checked_add_signed(chrono::Duration::days(days)) {
                Some(d) => Value::Date(d),
                None => return Ok(Err((Reason::InvalidDate, format!("{days} days is out of range")))),
            }
        }
        Schema::Long { micros_per_unit: m @ (1 | 1000) } => match cur.long()?.checked_mul(*m) {
            Some(us) => Value::DateTime(us),
            None => return Ok(Err((Reason::OutOfRange, "timestamp out of range".into()))),
        },
        Schema::Int { .. } | Schema::Long { .. } => {
            let i = cur.long()?;
            match col.ty {
                ColumnType::Decimal => return Ok(decimal_from(i as i128, 0, col)),
                _ => Value::Int(i),
            }
        }
        Schema::Bytes { decimal: Some((_, scale)) } => {
            let b = cur.bytes()?;
            return Ok(unscaled(b).map_or_else(
                || Err((Reason::OutOfRange, "decimal too large".into())),
                |v| decimal_from(v, *scale, col),
            ));
        }
        Schema::Fixed { size, decimal: Some((_, scale)) } => {
            let b = cur.take(*size)?;
            return Ok(unscaled(b).map_or_else(
                || Err((Reason::OutOfRange, "decimal too large".into())),
                |v| decimal_from(v, *scale, col),
            ));
        }
        other => {
            cur.skip(other)?;
            return Ok(Err((Reason::InvalidString, format!("cannot convert {} to {}", describe(other), col.ty))));
        }
    };
    if v == Value::Null {
        return Ok(if col.required {
            Err((Reason::MissingField, "value is required but null".into()))
        } else {
            Ok(Value::Null)
        });
    }
    Ok(check_limits(col, &v).map(|_| v).map_err(|e| (e.code, e.reason)))
}

fn unscaled(b: &[u8]) -> Option<i128> {
    if b.is_empty() || b.len() > 16 {
        return if b.is_empty() { Some(0) } else { None };
    }
    let mut buf = if b[0] & 0x80 != 0 { [0xffu8; 16] } else { [0u8; 16] };
    buf[16 - b.len()..].copy_from_slice(b);
    Some(i128::from_be_bytes(buf))
}

fn decimal_from(unscaled: i128, scale: u32, col: &Column) -> Conv {
    let out_of_range = || (Reason::OutOfRange, format!("does not fit decimal({}, {})", col.precision, col.scale));
    if scale > 28 {
        return Err(out_of_range());
    }
    let mut d = Decimal::try_from_i128_with_scale(unscaled, scale).map_err(|_| out_of_range())?;
    if scale > col.scale {
        let normalized = d.normalize();
        if normalized.scale() > col.scale {
            return Err((Reason::InvalidDecimal, format!("{d} has more than {} decimal places", col.scale)));
        }
        d = normalized;
    }
    d.rescale(col.scale);
    // Digits before the point must fit precision - scale.
    let int_digits = d.trunc().abs().to_string().trim_start_matches('0').len() as u32;
    if int_digits > col.precision - col.scale {
        return Err(out_of_range());
    }
    let v = Value::Decimal(d);
    check_limits(col, &v).map(|_| v).map_err(|e| (e.code, e.reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{DatasetDef, Format};

    fn table() -> Table {
        let def = DatasetDef::parse(
            r#"{"name":"t","tables":[{"name":"things","primary_key":"id","columns":[
                {"name":"id","type":"integer"},
                {"name":"name","type":"string"},
                {"name":"at","type":"datetime","required":false},
                {"name":"day","type":"date","required":false},
                {"name":"price","type":"decimal","precision":12,"scale":2,"required":false},
                {"name":"ok","type":"boolean","required":false}]}]}"#,
            Format::Json,
        )
        .unwrap();
        def.check(&|_| None).unwrap().remove(0)
    }

    fn rows() -> Vec<Vec<Value>> {
        let t = table();
        let parse = |i: usize, s: &str| crate::value::parse_text(&t.columns[i], s).unwrap();
        vec![
            vec![
                Value::Int(1),
                Value::Text("Zoë, \"q\"".into()),
                parse(2, "2021-07-27T16:02:08.123456Z"),
                parse(3, "1969-12-31"),
                parse(4, "-1234567.89"),
                Value::Bool(true),
            ],
            vec![Value::Int(-2), Value::Text(String::new() + "x"), Value::Null, Value::Null, Value::Null, Value::Null],
            vec![
                Value::Int(i64::MAX),
                Value::Text("y".into()),
                parse(2, "0001-01-01T00:00:00Z"),
                parse(3, "9999-12-31"),
                parse(4, "0.01"),
                Value::Bool(false),
            ],
        ]
    }

    fn round_trip(codec: Codec) {
        let t = table();
        let mut w = Writer::new(Vec::new(), &t, codec).unwrap();
        for r in rows() {
            w.write_row(&r).unwrap();
        }
        let bytes = w.finish().unwrap();
        let mut r = Reader::open(&bytes[..]).unwrap();
        assert_eq!(r.codec(), codec);
        let resolver = Resolver::new(&parse_schema(r.schema_json()).unwrap(), &t).unwrap();
        let mut got = Vec::new();
        while let Some(row) = r.next_row(&resolver).unwrap() {
            got.push(row.unwrap());
        }
        assert_eq!(got, rows());
    }

    #[test]
    fn every_type_round_trips_with_every_codec() {
        for c in [Codec::Null, Codec::Deflate, Codec::Snappy, Codec::Zstd] {
            round_trip(c);
        }
    }

    #[test]
    fn truncated_and_corrupted_files_are_refused() {
        let t = table();
        let mut w = Writer::new(Vec::new(), &t, Codec::Null).unwrap();
        for r in rows() {
            w.write_row(&r).unwrap();
        }
        let bytes = w.finish().unwrap();
        let read_all = |b: &[u8]| -> Result<usize, AvroError> {
            let mut r = Reader::open(b)?;
            let resolver = Resolver::new(&parse_schema(r.schema_json()).unwrap(), &t).unwrap();
            let mut n = 0;
            while r.next_row(&resolver)?.is_some() {
                n += 1;
            }
            Ok(n)
        };
        assert_eq!(read_all(&bytes).unwrap(), 3);
        for cut in [bytes.len() - 1, bytes.len() - 17, bytes.len() - 30] {
            assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let n = flipped.len();
        flipped[n - 3] ^= 0xff; // inside the sync marker
        assert!(matches!(read_all(&flipped), Err(AvroError::Corrupt(_))));
        assert!(matches!(Reader::open(&b"PAR1"[..]), Err(AvroError::NotAvro)));
    }

    /// An otherwise valid file whose one block holds `compressed`, claiming `count` rows.
    fn file_with_block(codec: Codec, compressed: &[u8], count: i64) -> Vec<u8> {
        let header = Writer::new(Vec::new(), &table(), codec).unwrap().finish().unwrap();
        let sync = header[header.len() - 16..].to_vec();
        let mut out = header;
        write_long(&mut out, count);
        write_long(&mut out, compressed.len() as i64);
        out.extend_from_slice(compressed);
        out.extend_from_slice(&sync);
        out
    }

    fn first_row(bytes: &[u8]) -> Result<(), AvroError> {
        let mut r = Reader::open(bytes)?;
        let resolver = Resolver::new(&parse_schema(r.schema_json()).unwrap(), &table()).unwrap();
        r.next_row(&resolver).map(|_| ())
    }

    #[test]
    fn a_block_that_inflates_past_the_limit_is_refused_before_it_is_held() {
        use std::io::Write;
        // 1 GiB of zeros deflates to a few megabytes: the classic bomb.
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            z.write_all(&zeros).unwrap();
        }
        let bomb = z.finish().unwrap();
        assert!(bomb.len() < 8 << 20, "{}", bomb.len());
        let err = first_row(&file_with_block(Codec::Deflate, &bomb, 1)).unwrap_err();
        assert!(err.to_string().contains("more than 32 MiB"), "{err}");
        // The reader's buffer never grows past the limit on the way.
        let got = read_bounded(flate2::read::DeflateDecoder::new(&bomb[..]), MAX_BLOCK_BYTES).unwrap();
        assert!(got.is_none());
        let small = read_bounded(&[7u8; 100_000][..], MAX_BLOCK_BYTES).unwrap().unwrap();
        assert_eq!(small.len(), 100_000);
        assert!(small.capacity() <= MAX_BLOCK_BYTES);
        // Zstd and snappy bombs too.
        let zbomb = zstd::bulk::compress(&vec![0u8; 40 << 20], 1).unwrap();
        let err = first_row(&file_with_block(Codec::Zstd, &zbomb, 1)).unwrap_err();
        assert!(err.to_string().contains("more than 32 MiB"), "{err}");
        let mut sbomb = snap::raw::Encoder::new().compress_vec(&vec![0u8; 40 << 20]).unwrap();
        sbomb.extend_from_slice(&[0, 0, 0, 0]);
        let err = first_row(&file_with_block(Codec::Snappy, &sbomb, 1)).unwrap_err();
        assert!(err.to_string().contains("more than 32 MiB"), "{err}");
        // A header that claims a huge block is refused without allocating it.
        let mut claim = Writer::new(Vec::new(), &table(), Codec::Null).unwrap().finish().unwrap();
        write_long(&mut claim, 1);
        write_long(&mut claim, 1 << 40);
        assert!(first_row(&claim).is_err());
        let mut short = Writer::new(Vec::new(), &table(), Codec::Null).unwrap().finish().unwrap();
        write_long(&mut short, 1);
        write_long(&mut short, 20 << 20);
        short.extend_from_slice(b"only a little");
        assert!(matches!(first_row(&short), Err(AvroError::Truncated(_))));
    }

    #[test]
    fn writer_fields_resolve_by_name_and_mismatches_are_explained() {
        let t = table();
        // Fields in another order, an extra one, strings for times, no optional columns.
        let writer = json!({"type": "record", "name": "x", "fields": [
            {"name": "extra", "type": {"type": "array", "items": "string"}},
            {"name": "name", "type": "string"},
            {"name": "at", "type": ["null", "string"]},
            {"name": "id", "type": "int"}]});
        let r = Resolver::new(&parse_schema(&writer).unwrap(), &t).unwrap();
        let mut buf = Vec::new();
        write_long(&mut buf, 1); // array block of 1
        write_bytes(&mut buf, b"ignored");
        write_long(&mut buf, 0);
        write_bytes(&mut buf, b"Ann");
        write_long(&mut buf, 1);
        write_bytes(&mut buf, b"2021-01-01T00:00:00Z");
        write_long(&mut buf, 7);
        let row = r.decode(&mut Cur { buf: &buf, pos: 0 }).unwrap().unwrap();
        assert_eq!(row[0], Value::Int(7));
        assert_eq!(row[2].to_text(), "2021-01-01T00:00:00Z");
        assert_eq!(row[4], Value::Null);

        let missing = json!({"type": "record", "name": "x", "fields": [{"name": "id", "type": "long"}]});
        let e = Resolver::new(&parse_schema(&missing).unwrap(), &t).unwrap_err().to_string();
        assert!(e.contains("required column name"), "{e}");
        let wrong = json!({"type": "record", "name": "x", "fields": [{"name": "id", "type": "double"}, {"name": "name", "type": "string"}]});
        let e = Resolver::new(&parse_schema(&wrong).unwrap(), &t).unwrap_err().to_string();
        assert!(e.contains("field id is double"), "{e}");
    }

    #[test]
    fn fingerprints_ignore_formatting_but_not_types() {
        let t = table();
        let a = schema_for(&t);
        let b: Json = serde_json::from_str(&serde_json::to_string_pretty(&a).unwrap()).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let mut c = a.clone();
        c["fields"][0]["type"] = json!("int");
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn decimals_encode_as_minimal_twos_complement() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(decimal_bytes(&d("1.27")), vec![0x7f]);
        assert_eq!(decimal_bytes(&d("1.28")), vec![0x00, 0x80]);
        assert_eq!(decimal_bytes(&d("-1.28")), vec![0x80]);
        assert_eq!(decimal_bytes(&d("-1.29")), vec![0xff, 0x7f]);
        assert_eq!(unscaled(&[0xff, 0x7f]), Some(-129));
    }
}
