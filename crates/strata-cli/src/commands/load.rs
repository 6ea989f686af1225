//! `strata load`: a header-less CSV file into a table, every row validated, with a progress bar.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_store::{LoadReport, Store};

use crate::parse_tenant;

#[derive(Args)]
pub(crate) struct LoadArgs {
    #[arg(long, env = "STRATA_TENANT")]
    pub(crate) tenant: String,
    #[arg(long)]
    pub(crate) table: String,
    /// The CSV file (`-` reads standard input).
    pub(crate) file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn load(store: Store, a: LoadArgs) -> anyhow::Result<()> {
    let tid = parse_tenant(&a.tenant)?;
    let table = store.table(&tid, &a.table).await?;
    let bytes = Arc::new(AtomicU64::new(0));
    let (reader, size): (Box<dyn std::io::Read + Send>, Option<u64>) = if a.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("cannot open {}", a.file.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };

    // A progress bar on a terminal; nothing when output is piped.
    let bar = if std::io::stderr().is_terminal() {
        let bar = match size {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} loading {msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        bar.set_message(table.name.clone());
        Some(bar)
    } else {
        None
    };
    let ticker = bar.clone().map(|bar| {
        let bytes = bytes.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(bytes.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let result = store.load(&tid, &table, reader, bytes.clone()).await;
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

/// A progress bar on a terminal, fed from a counter; nothing when output is piped.
pub(crate) fn progress(
    counter: Arc<AtomicU64>,
    total: Option<u64>,
    template: &str,
    msg: String,
) -> Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(indicatif::ProgressStyle::with_template(template).unwrap().progress_chars("=> "));
    bar.set_message(msg);
    let b = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            b.set_position(counter.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Some((bar, ticker))
}

pub(crate) fn finish_progress(p: Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)>) {
    if let Some((bar, ticker)) = p {
        ticker.abort();
        bar.finish_and_clear();
    }
}

pub(crate) fn print_summary(r: &LoadReport) {
    println!(
        "{}: {} rows read, {} inserted, {} unchanged, {} rejected in {:.2}s (load {})",
        r.table,
        r.rows_read,
        r.inserted,
        r.unchanged,
        r.rejected,
        r.duration_ms as f64 / 1000.0,
        r.load_id
    );
    for e in r.errors.iter().take(10) {
        let reasons: Vec<String> = e
            .errors
            .iter()
            .map(|f| match &f.column {
                Some(c) => format!("{c}: {}", f.reason),
                None => f.reason.clone(),
            })
            .collect();
        println!("  line {}: {}", e.line.unwrap_or(0), reasons.join("; "));
    }
    if r.rejected > 10 {
        println!(
            "  ... {} more; every rejected row is in the rejection log (GET /v1/tables/{}/rejections)",
            r.rejected - 10,
            r.table
        );
    }
}
