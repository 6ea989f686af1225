//! `strata dataset`: apply and show a tenant's data dictionary.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use strata_domain::dataset::{DatasetDef, Format};
use strata_store::Store;

use crate::parse_tenant;

#[derive(Subcommand)]
pub(crate) enum DatasetCmd {
    /// Add or confirm a dataset from a TOML, YAML or JSON definition file.
    Apply {
        #[arg(long, env = "STRATA_TENANT")]
        tenant: String,
        file: PathBuf,
    },
    /// List the tenant's tables and columns.
    Tables {
        #[arg(long, env = "STRATA_TENANT")]
        tenant: String,
    },
}

pub(crate) async fn dataset(store: Store, cmd: DatasetCmd) -> anyhow::Result<()> {
    match cmd {
        DatasetCmd::Apply { tenant, file } => {
            let tid = parse_tenant(&tenant)?;
            let name = file.to_string_lossy().to_string();
            let format = Format::from_path(&name)
                .ok_or_else(|| anyhow::anyhow!("{name}: use a .toml, .yaml, .yml or .json file"))?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {name}"))?;
            let def = DatasetDef::parse(&text, format).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            let r = store.apply_dataset(&tid, &def).await?;
            if r.changed {
                println!(
                    "dataset {} is at version {}; created tables: {}",
                    r.dataset,
                    r.version,
                    if r.created_tables.is_empty() { "none".to_string() } else { r.created_tables.join(", ") }
                );
            } else {
                println!(
                    "dataset {} is already at version {} with this definition; nothing changed",
                    r.dataset, r.version
                );
            }
        }
        DatasetCmd::Tables { tenant } => {
            let tid = parse_tenant(&tenant)?;
            for t in store.tables(&tid).await? {
                println!("{} (dataset {}, key {})", t.name, t.dataset, t.pk_column().name);
                for c in &t.columns {
                    let fk = c.references.as_ref().map(|r| format!(" -> {}.{}", r.table, r.column)).unwrap_or_default();
                    println!(
                        "  {:<24} {:<9}{}{}",
                        c.name,
                        c.ty.to_string(),
                        if c.required { " required" } else { "" },
                        fk
                    );
                }
            }
        }
    }
    Ok(())
}
