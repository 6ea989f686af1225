//! The domain of Strata: everything that can be decided without a database or a network.
//!
//! A guided tour:
//!
//! * [`tenant`]: tenant ids (lowercase DNS labels) and API keys, which are random, shown once and
//!   stored only as hashes.
//! * [`secret`]: a wrapper that keeps secrets out of logs and `Debug` output.
//! * [`dataset`]: the data dictionary. A dataset declares tables, columns, types, keys and limits;
//!   [`dataset::DatasetDef::parse`] turns TOML, YAML or JSON into a checked definition, after
//!   [`nesting`] has bounded the file's shape so no parser can be made to work quadratically.
//! * [`value`]: typed cell values and how they are read from CSV text and JSON, and written back.
//! * [`validate`]: checks a row against a table definition and lists every reason it is wrong.
//! * [`csv`]: a streaming RFC 4180 record reader that keeps each record's raw bytes and line
//!   number, so rejections can quote exactly what was sent.
//! * [`avro`]: Avro object container files (backups): a streaming writer, a reader that
//!   detects truncation and corruption, and by-name resolution of any writer schema onto a table.
//! * [`error`]: the one table of stable error codes shared by every protocol.
//! * [`report`]: the hiring KPI reports' definitions (quarters, the mean) and CSV rendering.
//! * [`order`]: BTC buy orders: currencies, exact amounts and rates, rounding up to satoshis.
//! * [`hr`]: the built-in HR dataset of the seed.
//!
//! Relational checks (foreign keys, duplicate keys) need the data, so they live in `strata-store`.

pub mod avro;
pub mod csv;
pub mod dataset;
pub mod error;
pub mod hr;
pub mod nesting;
pub mod order;
pub mod report;
pub mod secret;
pub mod tenant;
pub mod validate;
pub mod value;

pub use error::ErrorCode;
