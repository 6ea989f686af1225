//! `strata migrate`: the schema versions of the control plane and of every tenant, and
//! applying pending migrations explicitly (every strata process also applies them at start).

use clap::Subcommand;
use strata_store::Store;

#[derive(Subcommand)]
pub(crate) enum MigrateCmd {
    /// Show each schema's version and the version this strata knows; changes nothing.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Apply pending migrations now, and say what was applied.
    Run {
        #[arg(long)]
        json: bool,
    },
}

/// `store` was opened without migrating, so `status` sees the schema as it is.
pub(crate) async fn migrate(store: Store, cmd: MigrateCmd) -> anyhow::Result<()> {
    match cmd {
        MigrateCmd::Status { json } => {
            let status = store.schema_status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(());
            }
            for s in status {
                let state = match s.version.cmp(&s.latest) {
                    std::cmp::Ordering::Equal => "up to date".to_string(),
                    std::cmp::Ordering::Less => format!("{} pending", s.latest - s.version),
                    std::cmp::Ordering::Greater => "newer than this strata".to_string(),
                };
                println!("{:<24} version {} of {}  ({state})", s.scope, s.version, s.latest);
            }
        }
        MigrateCmd::Run { json } => {
            let applied = store.migrate().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&applied)?);
                return Ok(());
            }
            for strata_store::migrate::MigrationRun { scope, applied: versions } in applied {
                if versions.is_empty() {
                    println!("{scope:<24} up to date");
                } else {
                    let list: Vec<String> = versions.iter().map(i64::to_string).collect();
                    println!("{scope:<24} applied {}", list.join(", "));
                }
            }
        }
    }
    Ok(())
}
