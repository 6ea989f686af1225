//! `strata deploy`: blue/green status, switch, rollback and abort of the query service.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use strata_store::Store;

#[derive(Args, Clone)]
pub(crate) struct SwitchArgs {
    /// Who is switching, for the deployment history (default: $USER).
    #[arg(long, env = "STRATA_ACTOR")]
    pub(crate) actor: Option<String>,
    /// How long the coming stack is announced before the flip, in milliseconds.
    #[arg(long, env = "STRATA_ANNOUNCE_MS", default_value_t = 2000)]
    pub(crate) announce_ms: u64,
    /// How long to wait for the old stack to drain, in seconds.
    #[arg(long, env = "STRATA_DRAIN_TIMEOUT_SECS", default_value_t = 300)]
    pub(crate) drain_timeout_secs: u64,
    /// nginx's active-stack.conf to rewrite at the flip (see deploy/nginx/strata-grpc.conf).
    #[arg(long, env = "STRATA_NGINX_ACTIVE_FILE")]
    pub(crate) nginx_active_file: Option<PathBuf>,
    /// Command that reloads nginx afterwards, e.g. "nginx -p DIR -c DIR/nginx.conf -s reload".
    #[arg(long, env = "STRATA_NGINX_RELOAD", requires = "nginx_active_file")]
    pub(crate) nginx_reload: Option<String>,
}

impl SwitchArgs {
    pub(crate) fn options(&self) -> strata_app::deploy::SwitchOptions {
        let actor = self.actor.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
        strata_app::deploy::SwitchOptions {
            actor: format!("cli:{actor}"),
            announce: Duration::from_millis(self.announce_ms),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            nginx_active_file: self.nginx_active_file.clone(),
            nginx_reload: self.nginx_reload.clone(),
            ..Default::default()
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum DeployCmd {
    /// Show the active stack, live instances and recent switches.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Validate the target stack, announce it, flip, drain the old stack, record the switch.
    Switch {
        /// The stack to make active: blue or green.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        args: SwitchArgs,
    },
    /// Switch back to the stack that is not active.
    Rollback {
        #[command(flatten)]
        args: SwitchArgs,
    },
    /// Withdraw the announcement of a switch whose process died before the flip.
    Abort {
        #[arg(long, env = "STRATA_ACTOR")]
        actor: Option<String>,
    },
}

pub(crate) async fn deploy(store: Store, cmd: DeployCmd) -> anyhow::Result<()> {
    use strata_app::deploy;
    let fresh = Duration::from_secs(3);
    let show = |r: &strata_store::deploy::SwitchRecord| {
        println!("{} -> {}: {} in {} ms by {} ({})", r.from, r.to, r.outcome, r.duration_ms(), r.actor, r.detail)
    };
    match cmd {
        DeployCmd::Status { json } => {
            let s = deploy::status(&store, fresh, 20).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            println!("active:    {}", s.active);
            println!("announced: {}", s.announced.map_or("-", |t| t.as_str()));
            println!("instances:");
            for i in &s.instances {
                println!(
                    "  {:<6} {}  http {}  grpc {}  in flight {}",
                    i.stack, i.id, i.http_addr, i.grpc_addr, i.inflight
                );
            }
            println!("history (newest first):");
            for r in &s.history {
                print!("  {}  ", r.id);
                show(r);
            }
        }
        DeployCmd::Switch { to, args } => {
            let to = to.parse().map_err(|e: String| anyhow::anyhow!("--to: {e}"))?;
            let r = deploy::switch(&store, to, &args.options()).await?;
            show(&r);
        }
        DeployCmd::Rollback { args } => {
            let r = deploy::rollback(&store, &args.options()).await?;
            show(&r);
        }
        DeployCmd::Abort { actor } => {
            let actor = format!("cli:{}", actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into()));
            match deploy::abort(&store, &actor).await? {
                Some(r) => show(&r),
                None => println!("no switch is under way"),
            }
        }
    }
    Ok(())
}
