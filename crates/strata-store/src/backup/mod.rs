//! Table backups as Avro files, and atomic restore.
//!
//! Layout: `<backup dir>/<tenant>/<table>/<id>.avro` with `<id>.json`, its manifest, beside it.
//! Ids are UUIDv7 (they sort by time) and are parsed as UUIDs before they touch a path, and
//! tenant and table names are validated identifiers, so no request can steer a path.
//!
//! A backup is written to `<id>.avro.tmp`, synced, renamed, and only then registered by
//! writing its manifest the same way. A crash or a full disk therefore leaves at most an
//! unregistered temporary file, never a listed backup that is incomplete. All tables of one
//! `backup --all` are read in one snapshot and share a `set_id`, so a set restores consistently.
//!
//! Restore streams the file through [`strata_domain::avro::Reader`] on a thread of its own,
//! checking the SHA-256 recorded in the manifest as it reads, and the backend replaces the
//! table's rows in one transaction: concurrent readers see the old rows or the new, and any
//! failure (checksum, schema, a row the dictionary refuses, a foreign key, a dangling child row,
//! the process being killed) leaves the table exactly as it was.

mod postgres;
mod sqlite;

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_domain::avro::{self, Codec, Reader, Resolver};
use strata_domain::dataset::Table;
use strata_domain::tenant::TenantId;
use strata_domain::value::Value;
use tokio::sync::mpsc;

/// The backup file being written: (table index, writer, temporary path, when it started).
type OpenFile = (usize, avro::Writer<HashingWriter<BufWriter<File>>>, PathBuf, std::time::Instant);

use crate::ingest::{Candidate, Chunk, InputError, CHUNK_BYTES, CHUNK_ROWS};
use crate::{Result, StoreError};

/// Recorded beside every backup file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub id: String,
    /// Shared by the tables of one `backup --all`, which were read in one snapshot.
    pub set_id: String,
    pub tenant: String,
    pub table: String,
    pub dataset: String,
    pub dataset_version: i64,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub schema_fingerprint: String,
    pub codec: String,
    pub created_at: String,
    pub duration_ms: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub tables: Vec<RestoredTable>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoredTable {
    pub table: String,
    pub rows: u64,
    /// The backup id, or `upload` / the file name for a file given directly.
    pub source: String,
}

/// Rows flowing from a snapshot to the file writer.
pub(crate) enum ExportMsg {
    Begin(usize),
    Rows(Vec<Vec<Value>>),
    End,
}

/// The backup directory of one Strata deployment (share it between replicas).
#[derive(Debug, Clone)]
pub struct BackupDir {
    root: PathBuf,
}

fn parse_id(id: &str) -> Result<String> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| StoreError::BackupNotFound(id.chars().take(64).collect()))
}

fn sync_dir(dir: &Path) {
    // Persist the rename itself; best effort where directories cannot be opened.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Counts and hashes what passes through.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes what is read, for checking a file against its manifest while restoring it.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    progress: Arc<AtomicU64>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn io_err(e: io::Error) -> StoreError {
    StoreError::Backup(e.to_string())
}

impl BackupDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn table_dir(&self, tenant: &TenantId, table: &str) -> PathBuf {
        self.root.join(tenant.as_str()).join(table)
    }

    /// Manifests of a table, newest first.
    pub fn list(&self, tenant: &TenantId, table: &str) -> Result<Vec<Manifest>> {
        let dir = self.table_dir(tenant, table);
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(e)),
        };
        for entry in entries {
            let path = entry.map_err(io_err)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = fs::read_to_string(&path).map_err(io_err)?;
            match serde_json::from_str::<Manifest>(&text) {
                Ok(m) => out.push(m),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "unreadable backup manifest skipped"),
            }
        }
        out.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(out)
    }

    pub fn manifest(&self, tenant: &TenantId, table: &str, id: &str) -> Result<Manifest> {
        let id = parse_id(id)?;
        let path = self.table_dir(tenant, table).join(format!("{id}.json"));
        let text = fs::read_to_string(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::BackupNotFound(id.clone())
            } else {
                io_err(e)
            }
        })?;
        serde_json::from_str(&text).map_err(|e| StoreError::Backup(format!("manifest {id} is unreadable: {e}")))
    }

    /// The path of a registered backup's file.
    pub fn file_path(&self, tenant: &TenantId, table: &str, id: &str) -> Result<PathBuf> {
        let m = self.manifest(tenant, table, id)?;
        Ok(self.table_dir(tenant, table).join(format!("{}.avro", m.id)))
    }

    /// Writes the tables arriving on `rx` (in `tables` order) as one backup set.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_set(
        &self,
        tenant: &TenantId,
        tables: &[(Table, i64)],
        codec: Codec,
        mut rx: mpsc::Receiver<ExportMsg>,
        progress: Arc<AtomicU64>,
    ) -> Result<Vec<Manifest>> {
        let set_id = uuid::Uuid::now_v7().to_string();
        let started = std::time::Instant::now();
        let mut written: Vec<(PathBuf, Manifest)> = Vec::new();
        let mut tmp_files: Vec<PathBuf> = Vec::new();
        let result = (|| -> Result<()> {
            let mut current: Option<OpenFile> = None;
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    ExportMsg::Begin(i) => {
                        let (table, _) = &tables[i];
                        let dir = self.table_dir(tenant, &table.name);
                        fs::create_dir_all(&dir).map_err(io_err)?;
                        let id = uuid::Uuid::now_v7().to_string();
                        let tmp = dir.join(format!("{id}.avro.tmp"));
                        tmp_files.push(tmp.clone());
                        let file = File::create(&tmp).map_err(io_err)?;
                        let hw = HashingWriter {
                            inner: BufWriter::with_capacity(1 << 20, file),
                            hash: Sha256::new(),
                            bytes: 0,
                        };
                        let w = avro::Writer::new(hw, table, codec).map_err(io_err)?;
                        current = Some((i, w, tmp, std::time::Instant::now()));
                    }
                    ExportMsg::Rows(rows) => {
                        let (_, w, _, _) =
                            current.as_mut().ok_or_else(|| StoreError::Backup("rows before a table".into()))?;
                        for r in &rows {
                            w.write_row(r).map_err(io_err)?;
                        }
                        progress.fetch_add(rows.len() as u64, Ordering::Relaxed);
                    }
                    ExportMsg::End => {
                        let (i, w, tmp, t0) =
                            current.take().ok_or_else(|| StoreError::Backup("end before a table".into()))?;
                        let rows = w.rows();
                        let hw = w.finish().map_err(io_err)?;
                        let HashingWriter { inner, hash, bytes } = hw;
                        let file = inner.into_inner().map_err(|e| io_err(e.into_error()))?;
                        file.sync_all().map_err(io_err)?;
                        let (table, dataset_version) = &tables[i];
                        let id = tmp.file_name().unwrap().to_string_lossy().trim_end_matches(".avro.tmp").to_string();
                        let manifest = Manifest {
                            id: id.clone(),
                            set_id: set_id.clone(),
                            tenant: tenant.to_string(),
                            table: table.name.clone(),
                            dataset: table.dataset.clone(),
                            dataset_version: *dataset_version,
                            rows,
                            bytes,
                            sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
                            schema_fingerprint: avro::fingerprint(&avro::schema_for(table)),
                            codec: codec.avro_name().to_string(),
                            created_at: crate::now_rfc3339(),
                            duration_ms: t0.elapsed().as_millis() as u64,
                        };
                        written.push((tmp, manifest));
                    }
                }
            }
            if written.len() != tables.len() {
                return Err(StoreError::Backup("the snapshot ended early".into()));
            }
            // Every file is complete and synced: move them into place, then register each by
            // writing its manifest (write, sync, rename). Only manifests make a backup visible.
            for (tmp, m) in &written {
                let dir = tmp.parent().unwrap().to_path_buf();
                let avro_path = dir.join(format!("{}.avro", m.id));
                fs::rename(tmp, &avro_path).map_err(io_err)?;
                let mtmp = dir.join(format!("{}.json.tmp", m.id));
                tmp_files.push(mtmp.clone());
                let mut f = File::create(&mtmp).map_err(io_err)?;
                f.write_all(serde_json::to_string_pretty(m).unwrap().as_bytes()).map_err(io_err)?;
                f.sync_all().map_err(io_err)?;
                fs::rename(&mtmp, dir.join(format!("{}.json", m.id))).map_err(io_err)?;
                sync_dir(&dir);
            }
            Ok(())
        })();
        if let Err(e) = result {
            for t in &tmp_files {
                let _ = fs::remove_file(t);
            }
            // Files renamed but not registered are useless: remove them too.
            for (_, m) in &written {
                let dir = self.table_dir(tenant, &m.table);
                if !dir.join(format!("{}.json", m.id)).exists() {
                    let _ = fs::remove_file(dir.join(format!("{}.avro", m.id)));
                }
            }
            return Err(e);
        }
        let _ = started;
        Ok(written.into_iter().map(|(_, m)| m).collect())
    }

    /// Deletes all but the newest `keep` backups of a table (manifest first, so a backup is
    /// never listed without its file). Returns the ids removed.
    pub fn prune(&self, tenant: &TenantId, table: &str, keep: usize) -> Result<Vec<String>> {
        let dir = self.table_dir(tenant, table);
        let mut removed = Vec::new();
        for m in self.list(tenant, table)?.into_iter().skip(keep) {
            fs::remove_file(dir.join(format!("{}.json", m.id))).map_err(io_err)?;
            let _ = fs::remove_file(dir.join(format!("{}.avro", m.id)));
            removed.push(m.id);
        }
        Ok(removed)
    }
}

/// Where the rows of a restore come from.
pub enum RestoreSource {
    /// A registered backup, checked against its manifest's SHA-256.
    Backup(String),
    /// Any Avro container file (an upload, or a file written by another tool).
    File { reader: Box<dyn Read + Send>, name: String },
}

/// What a decoded value costs in a chunk.
fn value_bytes(v: &strata_domain::value::Value) -> usize {
    match v {
        strata_domain::value::Value::Text(s) => s.len() + 24,
        _ => 24,
    }
}

/// Decodes an Avro file on a thread of its own into chunks of candidates for `table`.
/// Corruption, a schema that does not resolve, or a checksum mismatch arrive as an error chunk,
/// which makes the backend roll back.
pub(crate) fn spawn_avro_reader(
    input: Box<dyn Read + Send>,
    table: Table,
    expected_sha256: Option<String>,
    progress: Arc<AtomicU64>,
) -> mpsc::Receiver<Chunk> {
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    std::thread::Builder::new()
        .name("strata-avro-reader".into())
        .spawn(move || {
            let send_err = |tx: &mpsc::Sender<Chunk>, e: String| {
                let _ = tx.blocking_send(Err(InputError::Broken(e)));
            };
            let send_avro_err = |tx: &mpsc::Sender<Chunk>, e: avro::AvroError| {
                let e = match e {
                    avro::AvroError::Io(io) => InputError::from_io(&io),
                    other => InputError::Broken(other.to_string()),
                };
                let _ = tx.blocking_send(Err(e));
            };
            let hashing =
                HashingReader { inner: BufReader::with_capacity(1 << 20, input), hash: Sha256::new(), progress };
            let mut reader = match Reader::open(hashing) {
                Ok(r) => r,
                Err(e) => return send_avro_err(&tx, e),
            };
            let resolver = match avro::parse_schema(reader.schema_json()).and_then(|s| Resolver::new(&s, &table)) {
                Ok(r) => r,
                Err(e) => return send_err(&tx, e.to_string()),
            };
            let mut chunk = Vec::with_capacity(CHUNK_ROWS);
            let mut chunk_bytes = 0usize;
            let mut index = 0usize;
            loop {
                match reader.next_row(&resolver) {
                    Ok(Some(result)) => {
                        chunk_bytes += result.as_ref().map_or(64, |values| values.iter().map(value_bytes).sum());
                        chunk.push(Candidate { line: None, index, raw: Vec::new(), result });
                        index += 1;
                        if chunk.len() == CHUNK_ROWS || chunk_bytes >= CHUNK_BYTES {
                            chunk_bytes = 0;
                            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
                            if tx.blocking_send(Ok(full)).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return send_avro_err(&tx, e),
                }
            }
            if let Some(expected) = expected_sha256 {
                // Read anything after the last block too, so the hash covers the whole file.
                let mut rest = Vec::new();
                let inner = reader.into_inner();
                let mut inner = inner;
                let _ = inner.read_to_end(&mut rest);
                let got: String = inner.hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
                if got != expected {
                    return send_err(
                        &tx,
                        format!("checksum mismatch: the file's SHA-256 is {got}, the manifest says {expected}"),
                    );
                }
            }
            if !chunk.is_empty() {
                let _ = tx.blocking_send(Ok(chunk));
            }
        })
        .expect("spawn the Avro reader thread");
    rx
}

/// Orders tables so that referenced (parent) tables come before the tables referencing them.
pub fn parents_first(tables: &[Table]) -> Vec<Table> {
    let mut out: Vec<Table> = Vec::new();
    let mut pending: Vec<Table> = tables.to_vec();
    while !pending.is_empty() {
        let before = pending.len();
        let mut i = 0;
        while i < pending.len() {
            let ready = pending[i].columns.iter().all(|c| match &c.references {
                Some(fk) => fk.table == pending[i].name || !pending.iter().any(|p| p.name == fk.table),
                None => true,
            });
            if ready {
                out.push(pending.remove(i));
            } else {
                i += 1;
            }
        }
        if pending.len() == before {
            // A reference cycle: keep the remaining order; the final foreign-key check decides.
            out.append(&mut pending);
        }
    }
    out
}

pub(crate) fn record_backup_metrics(m: &Manifest) {
    metrics::counter!("strata_backup_rows_total", "table" => m.table.clone()).increment(m.rows);
    metrics::counter!("strata_backup_bytes_total", "table" => m.table.clone()).increment(m.bytes);
    metrics::histogram!("strata_backup_duration_seconds", "table" => m.table.clone())
        .record(m.duration_ms as f64 / 1000.0);
}

pub(crate) fn record_restore_metrics(r: &RestoreReport) {
    for t in &r.tables {
        metrics::counter!("strata_restore_rows_total", "table" => t.table.clone()).increment(t.rows);
    }
    metrics::histogram!("strata_restore_duration_seconds").record(r.duration_ms as f64 / 1000.0);
}

/// Backups and restores through the store: the slot, the snapshot, the writers.
impl crate::Store {
    pub fn backups(&self) -> &crate::backup::BackupDir {
        &self.backups
    }

    /// Backs up `tables` (one snapshot, one set), then prunes each table to `retain` backups.
    pub async fn backup(
        &self,
        tenant: &TenantId,
        tables: Vec<Table>,
        codec: strata_domain::avro::Codec,
        retain: usize,
        progress: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Vec<crate::backup::Manifest>> {
        let versions = self.datasets(tenant).await?;
        let with_versions: Vec<(Table, i64)> = tables
            .iter()
            .map(|t| {
                let v = versions.iter().find(|d| d.name == t.dataset).map_or(0, |d| d.version);
                (t.clone(), v)
            })
            .collect();
        let (tx, rx) = mpsc::channel(4);
        let dir = self.backups.clone();
        let tid = tenant.clone();
        let writer = tokio::task::spawn_blocking(move || dir.write_set(&tid, &with_versions, codec, rx, progress));
        let exported = {
            let _slot = self.tenant_slot(tenant).await?;
            match &self.backend {
                crate::Backend::Sqlite(b) => b.export(tenant, tables.clone(), tx).await,
                crate::Backend::Postgres(b) => b.export(tenant, tables.clone(), tx).await,
            }
        };
        let written = writer.await.map_err(|e| StoreError::Backup(e.to_string()))?;
        // The writer's error explains an export that stopped because the writer did.
        let manifests = match (exported, written) {
            (_, Err(e)) => return Err(e),
            (Err(e), _) => return Err(e),
            (Ok(()), Ok(m)) => m,
        };
        for m in &manifests {
            crate::backup::record_backup_metrics(m);
            tracing::info!(tenant = %tenant, table = %m.table, backup_id = %m.id, set_id = %m.set_id,
                rows = m.rows, bytes = m.bytes, codec = %m.codec, duration_ms = m.duration_ms, "backup written");
            // The new backup is registered either way; a failed prune is retried next time.
            match self.backups.prune(tenant, &m.table, retain.max(1)) {
                Ok(pruned) if !pruned.is_empty() => {
                    tracing::info!(tenant = %tenant, table = %m.table, pruned = ?pruned, "old backups pruned")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(tenant = %tenant, table = %m.table, error = %e, "pruning old backups failed"),
            }
        }
        Ok(manifests)
    }

    /// Replaces the rows of each table with its source's, all in one transaction.
    pub async fn restore(
        &self,
        tenant: &TenantId,
        sources: Vec<(Table, crate::backup::RestoreSource)>,
        progress: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<crate::backup::RestoreReport> {
        let started = std::time::Instant::now();
        let bytes_before = progress.load(std::sync::atomic::Ordering::Relaxed);
        let all = self.tables(tenant).await?;
        // The slot comes before the readers start: decoding an upload costs memory and CPU
        // even before a row is written, and a tenant gets only its share of that too.
        let _slot = self.tenant_slot(tenant).await?;
        let order = crate::backup::parents_first(&sources.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>());
        let mut sources = sources;
        let mut sets = Vec::new();
        let mut names = Vec::new();
        for t in order {
            let pos = sources.iter().position(|(s, _)| s.name == t.name).unwrap();
            let (table, source) = sources.remove(pos);
            let (reader, sha, label): (Box<dyn std::io::Read + Send>, Option<String>, String) = match source {
                crate::backup::RestoreSource::Backup(id) => {
                    let m = self.backups.manifest(tenant, &table.name, &id)?;
                    let path = self.backups.file_path(tenant, &table.name, &m.id)?;
                    let f = std::fs::File::open(&path).map_err(|e| {
                        StoreError::InvalidBackup(format!("backup file {} cannot be opened: {e}", m.id))
                    })?;
                    (Box::new(f), Some(m.sha256.clone()), m.id)
                }
                crate::backup::RestoreSource::File { reader, name } => (reader, None, name),
            };
            let rx = crate::backup::spawn_avro_reader(reader, table.clone(), sha, progress.clone());
            names.push((table.name.clone(), label));
            sets.push((table, rx));
        }
        // No connection until every input has sent its first rows (or ended).
        let mut ready = Vec::with_capacity(sets.len());
        for (table, rx) in sets {
            ready.push((table, crate::ingest::Chunks::start(rx).await));
        }
        let counts = match &self.backend {
            crate::Backend::Sqlite(b) => {
                b.tenant_db(tenant)?
                    .run_write(async move |c| {
                        crate::ingest::write::restore::<crate::ingest::sqlite::SqliteWriters>(c, &mut ready, &all).await
                    })
                    .await?
            }
            crate::Backend::Postgres(b) => {
                let schema = crate::postgres::schema_of(tenant);
                let f = async move |c: &mut crate::db::Tx<'_>| {
                    crate::ingest::write::restore::<crate::ingest::postgres::PgWriters>(c, &mut ready, &all).await
                };
                crate::db::postgres::run_write(b.data_pool(), &schema, Some(tenant.as_str()), f).await?
            }
        };
        let report = crate::backup::RestoreReport {
            tables: names
                .into_iter()
                .zip(counts)
                .map(|((table, source), rows)| crate::backup::RestoredTable { table, rows, source })
                .collect(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        crate::backup::record_restore_metrics(&report);
        metrics::counter!("strata_restore_bytes_total")
            .increment(progress.load(std::sync::atomic::Ordering::Relaxed) - bytes_before);
        for t in &report.tables {
            tracing::info!(tenant = %tenant, table = %t.table, source = %t.source, rows = t.rows,
                duration_ms = report.duration_ms, "table restored");
        }
        Ok(report)
    }
}
