//! `strata tenant`: create tenants, issue keys, list them.

use anyhow::bail;
use clap::Subcommand;
use strata_store::Store;

use crate::parse_tenant;

#[derive(Subcommand)]
pub(crate) enum TenantCmd {
    /// Create a tenant and print its API key (only the key, so scripts can capture it).
    Create {
        /// Lowercase DNS label, at most 51 characters.
        id: String,
        /// A built-in dataset to install (available: hr).
        #[arg(long)]
        dataset: Option<String>,
        /// Print a JSON object instead of the bare key.
        #[arg(long)]
        json: bool,
    },
    /// Issue another API key for a tenant (keys are stored only as hashes).
    Key {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn tenant(store: Store, cmd: TenantCmd) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::Create { id, dataset, json } => {
            let tid = parse_tenant(&id)?;
            let def = match dataset.as_deref() {
                None => None,
                Some("hr") => Some(strata_domain::hr::definition()),
                Some(other) => {
                    bail!("unknown built-in dataset {other:?} (available: hr); use `strata dataset apply` for your own")
                }
            };
            let key = store.tenants().create(&tid).await?;
            if let Some(def) = def {
                store.apply_dataset(&tid, &def).await?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant": tid.as_str(), "api_key": key.plaintext.expose(),
                        "key_prefix": key.display_prefix, "dataset": dataset})
                );
            } else {
                println!("{}", key.plaintext.expose());
            }
        }
        TenantCmd::Key { id, json } => {
            let tid = parse_tenant(&id)?;
            let key = store.tenants().create_api_key(&tid).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant": tid.as_str(), "api_key": key.plaintext.expose(), "key_prefix": key.display_prefix})
                );
            } else {
                println!("{}", key.plaintext.expose());
            }
        }
        TenantCmd::List { json } => {
            let tenants = store.tenants().list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else {
                for t in tenants {
                    println!("{}\t{}", t.id, t.created_at);
                }
            }
        }
    }
    Ok(())
}
