//! `strata orders`: the BTC order book: its cap, its total, and rebuilding the read model.

use clap::Subcommand;
use strata_store::Store;

use crate::parse_tenant;

#[derive(Subcommand)]
pub(crate) enum OrdersCmd {
    /// Rebuild the listing read model from the write model.
    RebuildReadModel {
        #[arg(long, env = "STRATA_TENANT")]
        tenant: String,
    },
    /// Set the tenant's cap on the BTC in its book (default 100).
    SetCap {
        #[arg(long, env = "STRATA_TENANT")]
        tenant: String,
        /// In BTC, up to 8 decimals.
        #[arg(long)]
        btc: String,
    },
    /// Show the BTC in the book and the cap.
    Book {
        #[arg(long, env = "STRATA_TENANT")]
        tenant: String,
    },
}

pub(crate) async fn orders(store: Store, cmd: OrdersCmd) -> anyhow::Result<()> {
    use strata_domain::order::format_btc;
    match cmd {
        OrdersCmd::RebuildReadModel { tenant } => {
            let tid = parse_tenant(&tenant)?;
            let n = store.orders().rebuild_read_model(&tid).await?;
            println!("read model rebuilt: {n} orders");
        }
        OrdersCmd::SetCap { tenant, btc } => {
            let tid = parse_tenant(&tenant)?;
            let sats = parse_btc(&btc)
                .ok_or_else(|| anyhow::anyhow!("--btc must be a positive amount with at most 8 decimals"))?;
            store.orders().set_cap(&tid, sats).await?;
            println!("cap set to {} BTC", format_btc(sats));
        }
        OrdersCmd::Book { tenant } => {
            let tid = parse_tenant(&tenant)?;
            let book = store.orders().book(&tid).await?;
            println!("{} BTC of {} BTC", format_btc(book.total_sats), format_btc(book.cap_sats));
        }
    }
    Ok(())
}

pub(crate) fn parse_btc(s: &str) -> Option<i64> {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    if i.is_empty() || f.len() > 8 || !i.bytes().all(|b| b.is_ascii_digit()) || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = i.parse().ok()?;
    let frac: i64 = format!("{f:0<8}").parse().ok()?;
    whole.checked_mul(100_000_000)?.checked_add(frac).filter(|v| *v > 0)
}
