//! `strata backup` and `strata restore`: table backups to Avro files, and atomic restores from them.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use strata_store::Store;

use super::load::{finish_progress, progress};
use crate::parse_tenant;

#[derive(Args)]
pub(crate) struct BackupArgs {
    #[arg(long, env = "STRATA_TENANT")]
    pub(crate) tenant: String,
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub(crate) table: Option<String>,
    /// Every table of the tenant, from one snapshot.
    #[arg(long)]
    pub(crate) all: bool,
    /// null, deflate, snappy or zstd.
    #[arg(long, default_value = "zstd")]
    pub(crate) codec: String,
    /// Backups to keep per table; older ones are deleted.
    #[arg(long, env = "STRATA_BACKUP_RETAIN", default_value_t = 10)]
    pub(crate) retain: usize,
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct RestoreArgs {
    #[arg(long, env = "STRATA_TENANT")]
    pub(crate) tenant: String,
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub(crate) table: Option<String>,
    /// Restore every table from the newest backup set that covers them all, in one transaction.
    #[arg(long)]
    pub(crate) all: bool,
    /// A backup id (default: the table's newest backup).
    #[arg(long, conflicts_with_all = ["file", "all"])]
    pub(crate) backup: Option<String>,
    /// An Avro file written by Strata or any other Avro writer.
    #[arg(long, conflicts_with = "all")]
    pub(crate) file: Option<PathBuf>,
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn backup(store: Store, a: BackupArgs) -> anyhow::Result<()> {
    let tid = parse_tenant(&a.tenant)?;
    let codec = strata_domain::avro::Codec::parse(&a.codec)
        .ok_or_else(|| anyhow::anyhow!("--codec must be one of null, deflate, snappy, zstd"))?;
    let tables = match &a.table {
        Some(name) => vec![store.table(&tid, name).await?],
        None => store.tables(&tid).await?,
    };
    if tables.is_empty() {
        bail!("tenant {tid} has no tables to back up");
    }
    let counter = Arc::new(AtomicU64::new(0));
    let bar = progress(
        counter.clone(),
        None,
        "{spinner} backing up {msg}: {pos} rows ({per_sec})",
        tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>().join(", "),
    );
    let result = store.backup(&tid, tables, codec, a.retain, counter).await;
    finish_progress(bar);
    let manifests = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&manifests)?);
    } else {
        for m in &manifests {
            println!(
                "{}: backup {} ({} rows, {} bytes, {}, sha256 {})",
                m.table, m.id, m.rows, m.bytes, m.codec, m.sha256
            );
        }
    }
    Ok(())
}

pub(crate) async fn restore(store: Store, a: RestoreArgs) -> anyhow::Result<()> {
    use strata_store::backup::RestoreSource;
    let tid = parse_tenant(&a.tenant)?;
    let total;
    let sources = if a.all {
        let tables = store.tables(&tid).await?;
        // The newest set that has a backup of every table: restoring tables from different
        // moments could break their foreign keys.
        let mut sets: Vec<(String, Vec<strata_store::backup::Manifest>)> = Vec::new();
        for t in &tables {
            for m in store.backups().list(&tid, &t.name)? {
                match sets.iter_mut().find(|(id, _)| *id == m.set_id) {
                    Some((_, ms)) => ms.push(m),
                    None => sets.push((m.set_id.clone(), vec![m])),
                }
            }
        }
        sets.sort_by(|x, y| y.0.cmp(&x.0));
        let (_, set) =
            sets.into_iter().find(|(_, ms)| tables.iter().all(|t| ms.iter().any(|m| m.table == t.name))).ok_or_else(
                || anyhow::anyhow!("no backup set covers every table of {tid}; run `strata backup --all` first"),
            )?;
        total = Some(set.iter().map(|m| m.bytes).sum());
        tables
            .into_iter()
            .map(|t| {
                let m = set.iter().find(|m| m.table == t.name).unwrap();
                (t, RestoreSource::Backup(m.id.clone()))
            })
            .collect()
    } else {
        let t = store.table(&tid, a.table.as_deref().unwrap()).await?;
        let source =
            match (&a.backup, &a.file) {
                (_, Some(path)) => {
                    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                    total = f.metadata().ok().map(|m| m.len());
                    RestoreSource::File { reader: Box::new(f), name: path.display().to_string() }
                }
                (Some(id), None) => {
                    total = Some(store.backups().manifest(&tid, &t.name, id)?.bytes);
                    RestoreSource::Backup(id.clone())
                }
                (None, None) => {
                    let newest =
                        store.backups().list(&tid, &t.name)?.into_iter().next().ok_or_else(|| {
                            anyhow::anyhow!("table {} has no backups; name a file with --file", t.name)
                        })?;
                    total = Some(newest.bytes);
                    RestoreSource::Backup(newest.id)
                }
            };
        vec![(t, source)]
    };
    let counter = Arc::new(AtomicU64::new(0));
    let bar = progress(
        counter.clone(),
        total,
        "{spinner} restoring {msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})",
        sources.iter().map(|(t, _)| t.name.clone()).collect::<Vec<_>>().join(", "),
    );
    let result = store.restore(&tid, sources, counter).await;
    finish_progress(bar);
    let report = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for t in &report.tables {
            println!("{}: restored {} rows from {}", t.table, t.rows, t.source);
        }
        println!("done in {:.2}s", report.duration_ms as f64 / 1000.0);
    }
    Ok(())
}
