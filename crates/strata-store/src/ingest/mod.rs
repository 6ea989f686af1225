//! The ingest pipeline shared by the CSV load and the batch API.
//!
//! Stage 1 (pure, on a reader thread for loads): split records, check types and limits, giving
//! [`Candidate`]s. Stage 2 (a backend, inside a transaction): check foreign keys against the
//! data, insert, and sort out rows whose key already exists: identical rows are `unchanged`
//! (so loading a file twice changes nothing), different ones are rejected as duplicates.
//! Rejected rows go to the rejection log in the same transaction as the accepted ones.

pub(crate) mod postgres;
pub(crate) mod sqlite;
pub(crate) mod write;

use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use strata_domain::csv::{split_fields, RecordReader};
use strata_domain::dataset::Table;
use strata_domain::validate::{Invalid, RowResult};
use strata_domain::value::{FieldError, Reason, Value};
use tokio::sync::mpsc;

/// Rows per chunk handed from the reader thread to the writer: large enough to amortise a
/// round trip, small enough to keep memory flat.
pub const CHUNK_ROWS: usize = 4096;
/// A chunk is also cut at this many bytes of input, so rows of long values (up to a megabyte
/// each) cannot make a chunk of gigabytes. A load holds at most six chunks at once (one being
/// read, four queued, one being written).
pub const CHUNK_BYTES: usize = 8 << 20;
/// How many rejected rows a load report quotes (all of them are in the rejection log).
pub const REPORT_SAMPLE: usize = 100;

/// A row on its way in, already type-checked.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// 1-based line in a CSV input.
    pub line: Option<u64>,
    /// 0-based position in the request or file.
    pub index: usize,
    /// What was sent, as sent, for the rejection log: every row keeps it, since a row that
    /// parses can still be refused later for its foreign or primary key.
    pub raw: Vec<u8>,
    pub result: RowResult,
}

impl Candidate {
    /// The value of column `col` whose foreign key is to be checked: any value of a valid row,
    /// and the fields that parsed of a refused one (so that its rejection lists every reason).
    pub(crate) fn fk_value(&self, col: usize) -> Option<&Value> {
        match &self.result {
            Ok(values) => values.get(col),
            Err(invalid) => invalid.parsed.get(col).and_then(Option::as_ref),
        }
    }

    /// The outcome of a row refused before it reached the database, with `fk` (its unknown
    /// foreign keys) added to the reasons; `None` for a valid row.
    pub(crate) fn refused(&self, table: &Table, fk: Vec<FieldError>) -> Option<RowOutcome> {
        let invalid = self.result.as_ref().err()?;
        Some(RowOutcome::Rejected(merge_errors(table, invalid.errors.clone(), fk)))
    }
}

/// Field errors and foreign-key errors of one row in column order (row-level errors first),
/// so a rejection reads left to right like the row.
pub(crate) fn merge_errors(table: &Table, mut errors: Vec<FieldError>, fk: Vec<FieldError>) -> Vec<FieldError> {
    if fk.is_empty() {
        return errors;
    }
    errors.extend(fk);
    // Row-level errors first, then columns in table order, then columns the table lacks.
    let pos = |e: &FieldError| match e.column.as_deref() {
        None => 0,
        Some(c) => table.column_index(c).map_or(usize::MAX, |i| i + 1),
    };
    errors.sort_by_key(pos);
    errors
}

/// Why an input stream broke off before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// The input itself is broken (unreadable, truncated, corrupt).
    Broken(String),
    /// The client sent too slowly and the server stopped waiting.
    TooSlow(String),
}

impl InputError {
    /// Classifies an I/O error of the input: `TimedOut` is the HTTP layer giving up on a
    /// client that sends too slowly.
    pub fn from_io(e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::TimedOut {
            InputError::TooSlow(e.to_string())
        } else {
            InputError::Broken(e.to_string())
        }
    }

    /// As a store error, `broken` saying what a broken input means here.
    pub(crate) fn into_store(self, broken: fn(String) -> crate::StoreError) -> crate::StoreError {
        match self {
            InputError::Broken(m) => broken(m),
            InputError::TooSlow(m) => crate::StoreError::InputTooSlow(m),
        }
    }
}

/// A chunk of candidates, or the reason the input broke off.
pub type Chunk = std::result::Result<Vec<Candidate>, InputError>;

/// The chunks of one input, with the first one already received: a backend is only called
/// (and a connection only taken) once there is data to write, so a client that sends its
/// headers and then nothing holds no database resource.
pub struct Chunks {
    first: Option<Option<Chunk>>,
    rx: mpsc::Receiver<Chunk>,
}

impl Chunks {
    /// Waits for the first chunk (or the end of an empty input).
    pub async fn start(mut rx: mpsc::Receiver<Chunk>) -> Self {
        let first = rx.recv().await;
        Self { first: Some(first), rx }
    }

    pub async fn recv(&mut self) -> Option<Chunk> {
        match self.first.take() {
            Some(first) => first,
            None => self.rx.recv().await,
        }
    }

    pub fn blocking_recv(&mut self) -> Option<Chunk> {
        match self.first.take() {
            Some(first) => first,
            None => self.rx.blocking_recv(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    Inserted,
    Unchanged,
    Rejected(Vec<FieldError>),
}

#[derive(Debug, Clone, Serialize)]
pub struct RowErrors {
    /// 0-based index of the row in the request or file.
    pub row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub load_id: String,
    pub table: String,
    pub rows_read: u64,
    pub inserted: u64,
    /// Rows whose key already held exactly these values.
    pub unchanged: u64,
    pub rejected: u64,
    pub duration_ms: u64,
    /// The first rejected rows; the rejection log has all of them.
    pub errors: Vec<RowErrors>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub batch_id: String,
    /// Rows now present as sent: inserted, or already there with identical values.
    pub accepted: u64,
    pub rejected: u64,
    /// How many of the accepted rows were already present, identical.
    pub unchanged: u64,
    pub errors: Vec<RowErrors>,
}

/// One entry of the rejection log.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub id: i64,
    pub table: String,
    /// `load` or `batch`.
    pub source: String,
    /// The load or batch id.
    pub source_id: String,
    pub line: Option<u64>,
    pub row: Option<u64>,
    pub raw: String,
    pub errors: serde_json::Value,
    pub created_at: String,
}

/// A rejected row ready to be written to the log.
pub(crate) struct RejectionRow {
    pub line: Option<i64>,
    pub row: i64,
    pub raw: String,
    pub errors: String,
}

/// Counts outcomes and keeps what the report and the log need.
#[derive(Default)]
pub(crate) struct Tally {
    pub rows: u64,
    pub inserted: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub sample: Vec<RowErrors>,
    pub sample_limit: usize,
}

impl Tally {
    pub fn new(sample_limit: usize) -> Self {
        Self { sample_limit, ..Default::default() }
    }

    /// Records an outcome; returns the log entry for a rejection.
    pub fn record(&mut self, c: &Candidate, outcome: RowOutcome) -> Option<RejectionRow> {
        self.rows += 1;
        match outcome {
            RowOutcome::Inserted => {
                self.inserted += 1;
                None
            }
            RowOutcome::Unchanged => {
                self.unchanged += 1;
                None
            }
            RowOutcome::Rejected(errors) => {
                self.rejected += 1;
                let json = serde_json::to_string(&errors).unwrap_or_else(|_| "[]".into());
                if self.sample.len() < self.sample_limit {
                    self.sample.push(RowErrors { row: c.index, line: c.line, errors });
                }
                Some(RejectionRow {
                    line: c.line.map(|l| l as i64),
                    row: c.index as i64,
                    raw: printable_raw(&c.raw),
                    errors: json,
                })
            }
        }
    }

    pub fn into_load_report(self, load_id: String, table: &str) -> LoadReport {
        LoadReport {
            load_id,
            table: table.to_string(),
            rows_read: self.rows,
            inserted: self.inserted,
            unchanged: self.unchanged,
            rejected: self.rejected,
            duration_ms: 0,
            errors: self.sample,
        }
    }

    pub fn into_batch_report(self, batch_id: String) -> BatchReport {
        BatchReport {
            batch_id,
            accepted: self.inserted + self.unchanged,
            rejected: self.rejected,
            unchanged: self.unchanged,
            errors: self.sample,
        }
    }
}

/// The raw text as the rejection log keeps it. PostgreSQL text cannot hold a NUL character,
/// so NULs show as U+FFFD there and, for the same log on both databases, on SQLite too (as
/// bytes that are not UTF-8 already do).
pub(crate) fn printable_raw(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.into_owned()
    }
}

pub(crate) fn unknown_fk(table: &Table, col: usize, value: &Value) -> FieldError {
    let c = &table.columns[col];
    let parent = c.references.as_ref().map(|r| r.table.as_str()).unwrap_or("?");
    FieldError {
        column: Some(c.name.clone()),
        code: Reason::UnknownForeignKey,
        reason: format!("{} {} does not exist in table {parent}", c.name, value.to_text()),
    }
}

pub(crate) fn duplicate_key(table: &Table, key: &Value) -> FieldError {
    let c = table.pk_column();
    FieldError {
        column: Some(c.name.clone()),
        code: Reason::DuplicateKey,
        reason: format!("{} {} already exists with different values", c.name, key.to_text()),
    }
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn record_metrics(table: &str, accepted: u64, rejected: u64) {
    metrics::counter!("strata_rows_accepted_total", "table" => table.to_string()).increment(accepted);
    metrics::counter!("strata_rows_rejected_total", "table" => table.to_string()).increment(rejected);
}

/// Turns one raw CSV record into a candidate.
pub fn candidate_from_record(table: &Table, index: usize, rec: strata_domain::csv::RawRecord) -> Candidate {
    let result = if rec.oversized {
        Err(Invalid::whole(FieldError {
            column: None,
            code: Reason::MalformedRecord,
            reason: format!(
                "record is longer than {} bytes (an unclosed quote?)",
                strata_domain::csv::MAX_RECORD_BYTES
            ),
        }))
    } else {
        match split_fields(&rec.raw) {
            Ok(fields) => strata_domain::validate::validate_owned(table, fields),
            Err(msg) => Err(Invalid::whole(FieldError {
                column: None,
                code: if msg.contains("UTF-8") { Reason::InvalidEncoding } else { Reason::MalformedRecord },
                reason: msg,
            })),
        }
    };
    // The record's bytes move into the candidate: keeping them for every row costs no copy.
    Candidate { line: Some(rec.line), index, raw: rec.raw, result }
}

/// Reads CSV on a thread of its own and hands type-checked chunks to the writer, so parsing
/// and writing overlap. `bytes` counts input consumed, for progress bars.
pub fn spawn_csv_reader<R: Read + Send + 'static>(
    input: R,
    table: Arc<Table>,
    bytes: Arc<AtomicU64>,
) -> mpsc::Receiver<Chunk> {
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    std::thread::Builder::new()
        .name("strata-csv-reader".into())
        .spawn(move || {
            let mut reader = RecordReader::new(BufReader::with_capacity(256 * 1024, input));
            let mut chunk = Vec::with_capacity(CHUNK_ROWS);
            let mut chunk_bytes = 0usize;
            let mut index = 0usize;
            loop {
                match reader.next_record() {
                    Ok(Some(rec)) => {
                        chunk_bytes += rec.raw.len() + 64;
                        chunk.push(candidate_from_record(&table, index, rec));
                        index += 1;
                        if chunk.len() == CHUNK_ROWS || chunk_bytes >= CHUNK_BYTES {
                            chunk_bytes = 0;
                            bytes.store(reader.bytes_read(), Ordering::Relaxed);
                            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
                            if tx.blocking_send(Ok(full)).is_err() {
                                return; // the writer gave up
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(InputError::from_io(&e)));
                        return;
                    }
                }
            }
            bytes.store(reader.bytes_read(), Ordering::Relaxed);
            if !chunk.is_empty() {
                let _ = tx.blocking_send(Ok(chunk));
            }
        })
        .expect("spawn the CSV reader thread");
    rx
}

/// Parses an in-memory CSV body (a batch) into candidates.
pub fn candidates_from_csv(table: &Table, body: &[u8]) -> std::io::Result<Vec<Candidate>> {
    let mut reader = RecordReader::new(body);
    let mut out = Vec::new();
    while let Some(rec) = reader.next_record()? {
        out.push(candidate_from_record(table, out.len(), rec));
    }
    Ok(out)
}

/// Two rows hold the same data.
pub(crate) fn same_values(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// A primary or foreign key in hashable form (keys are integers or strings).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    I(i64),
    S(String),
}

pub(crate) fn key_of(v: &Value) -> Option<Key> {
    match v {
        Value::Int(i) => Some(Key::I(*i)),
        Value::Text(s) => Some(Key::S(s.clone())),
        _ => None,
    }
}

/// A restore accepts a row only if it goes in as is: a rejected row or a repeated key refuses
/// the whole restore, since a backup must come back exactly.
pub(crate) fn restore_outcome(t: &Table, c: &Candidate, outcome: RowOutcome) -> crate::Result<()> {
    match outcome {
        RowOutcome::Inserted => Ok(()),
        RowOutcome::Unchanged => Err(crate::StoreError::RestoreRefused(format!(
            "row {} of the {} backup repeats a primary key; nothing was restored",
            c.index + 1,
            t.name
        ))),
        RowOutcome::Rejected(errors) => {
            let reasons: Vec<String> = errors
                .iter()
                .map(|e| match &e.column {
                    Some(col) => format!("{col}: {}", e.reason),
                    None => e.reason.clone(),
                })
                .collect();
            Err(crate::StoreError::RestoreRefused(format!(
                "row {} of the {} backup breaks the data dictionary ({}); nothing was restored",
                c.index + 1,
                t.name,
                reasons.join("; ")
            )))
        }
    }
}

/// Every (child table, column, parent table, parent key) foreign key among `tables`.
pub(crate) fn dependents(tables: &[Table]) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for t in tables {
        for c in &t.columns {
            if let Some(fk) = &c.references {
                out.push((t.name.clone(), c.name.clone(), fk.table.clone(), fk.column.clone()));
            }
        }
    }
    out
}

pub(crate) fn orphan_error(child: &str, col: &str, parent: &str, n: i64) -> crate::StoreError {
    crate::StoreError::RestoreWouldOrphan(format!(
        "restoring would leave {n} {child} rows whose {col} points at a missing {parent} row; restore {child} first, or restore the tables together with `strata restore --all`"
    ))
}
