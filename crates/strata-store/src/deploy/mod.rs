//! Blue/green deployment state, shared by every instance through the control plane.
//!
//! One row says which stack is active and, during a switch, which stack has been announced as
//! the next one. Changes are compare-and-set on that row, so two operators switching at once
//! cannot both win. Instances report themselves (stack, addresses, queries in flight) with a
//! heartbeat, which is how a switch finds the stack to validate and knows when a drain is over.

use std::fmt;
use std::str::FromStr;

use crate::db::{Tx, P};
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    Blue,
    Green,
}

impl Stack {
    pub fn as_str(self) -> &'static str {
        match self {
            Stack::Blue => "blue",
            Stack::Green => "green",
        }
    }
    pub fn other(self) -> Stack {
        match self {
            Stack::Blue => Stack::Green,
            Stack::Green => Stack::Blue,
        }
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stack {
    type Err = String;
    /// Case-insensitive, as clients send the strategy header in any case.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "blue" => Ok(Stack::Blue),
            "green" => Ok(Stack::Green),
            other => Err(format!("unknown stack `{other}`: use blue or green")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployState {
    pub active: Stack,
    /// The stack announced as next during a switch; `None` when no switch is under way.
    pub target: Option<Stack>,
    pub switch_id: Option<String>,
    pub changed_at_ms: i64,
}

impl DeployState {
    /// Whether a stack takes new work (sessions and queries): the active one, and during a
    /// switch also the announced one, so clients that follow the announcement early succeed.
    pub fn accepts(&self, s: Stack) -> bool {
        self.active == s || self.target == Some(s)
    }

    /// The strategy to announce to a client that sent `header`: the switch target while one
    /// is announced, else the active stack when the client is behind.
    pub fn announce_for(&self, header: Option<Stack>) -> Option<Stack> {
        let next = self.target.unwrap_or(self.active);
        (header != Some(next)).then_some(next)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    pub id: String,
    pub stack: Stack,
    pub http_addr: String,
    pub grpc_addr: String,
    pub inflight: i64,
    pub heartbeat_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SwitchRecord {
    pub id: String,
    pub actor: String,
    pub from: Stack,
    pub to: Stack,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub outcome: String,
    pub detail: String,
}

impl SwitchRecord {
    pub fn duration_ms(&self) -> i64 {
        self.finished_at_ms - self.started_at_ms
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn parse_stack(s: String) -> Result<Stack> {
    s.parse().map_err(|e: String| StoreError::Database(anyhow::anyhow!("deploy state is corrupt: {e}")))
}

const HISTORY_COLUMNS: &str = "id, actor, from_stack, to_stack, started_at_ms, finished_at_ms, outcome, detail";
const INSTANCE_COLUMNS: &str = "id, stack, http_addr, grpc_addr, inflight, heartbeat_at_ms";

async fn read_state(c: &mut Tx<'_>) -> Result<Option<DeployState>> {
    let sql = format!("SELECT active, target, switch_id, changed_at_ms FROM {} WHERE id = 1", c.t("deploy_state"));
    let Some(r) = c.query_opt(&sql, &[]).await? else { return Ok(None) };
    Ok(Some(DeployState {
        active: parse_stack(r.text(0)?)?,
        target: r.opt_text(1)?.map(parse_stack).transpose()?,
        switch_id: r.opt_text(2)?,
        changed_at_ms: r.int(3)?,
    }))
}

impl Store {
    /// The deployment state; the first reader creates it with blue active. Every instance
    /// polls this several times a second, so the common path is one read, never a write.
    pub async fn deploy_state(&self) -> Result<DeployState> {
        if let Some(s) = self.control_read(async |c| read_state(c).await).await? {
            return Ok(s);
        }
        self.control_write(async |c| {
            let sql = format!(
                "INSERT INTO {} (id, active, changed_at_ms) VALUES (1, 'blue', $1) ON CONFLICT (id) DO NOTHING",
                c.t("deploy_state")
            );
            c.execute(&sql, &[P::Int(now_ms())]).await?;
            read_state(c).await?.ok_or_else(|| StoreError::Database(anyhow::anyhow!("the deploy state row is missing")))
        })
        .await
    }

    /// Announces `to` as the next stack, if `from` is active and no switch is under way.
    pub async fn deploy_announce(&self, from: Stack, to: Stack, switch_id: &str) -> Result<bool> {
        self.deploy_cas(
            "SET target = $1, switch_id = $2, changed_at_ms = $4 WHERE id = 1 AND active = $3 AND target IS NULL",
            vec![to.as_str().into(), switch_id.into(), from.as_str().into()],
        )
        .await
    }

    /// Makes the announced stack active, in one atomic step.
    pub async fn deploy_flip(&self, switch_id: &str) -> Result<bool> {
        self.deploy_cas(
            "SET active = target, target = NULL, switch_id = NULL, changed_at_ms = $2 WHERE id = 1 AND switch_id = $1 AND target IS NOT NULL",
            vec![switch_id.into()],
        )
        .await
    }

    /// Withdraws an announcement that did not complete.
    pub async fn deploy_abort(&self, switch_id: &str) -> Result<bool> {
        self.deploy_cas(
            "SET target = NULL, switch_id = NULL, changed_at_ms = $2 WHERE id = 1 AND switch_id = $1",
            vec![switch_id.into()],
        )
        .await
    }

    /// One compare-and-set on the state row: `UPDATE deploy_state <set_where>`, with `params`
    /// bound to `$1..$n` and the current time to `$n+1`.
    async fn deploy_cas(&self, set_where: &'static str, mut params: Vec<P>) -> Result<bool> {
        self.deploy_state().await?;
        params.push(P::Int(now_ms()));
        let n = self
            .control_write(async move |c| {
                let sql = format!("UPDATE {} {set_where}", c.t("deploy_state"));
                c.execute(&sql, &params).await
            })
            .await?;
        Ok(n == 1)
    }

    pub async fn record_switch(&self, r: &SwitchRecord) -> Result<()> {
        let r = r.clone();
        self.control_write(async move |c| {
            let sql = format!(
                "INSERT INTO {} ({HISTORY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                c.t("deploy_history")
            );
            let params = [
                r.id.into(),
                r.actor.into(),
                r.from.as_str().into(),
                r.to.as_str().into(),
                P::Int(r.started_at_ms),
                P::Int(r.finished_at_ms),
                r.outcome.into(),
                r.detail.into(),
            ];
            c.execute(&sql, &params).await?;
            Ok(())
        })
        .await
    }

    /// The most recent switches, newest first.
    pub async fn deploy_history(&self, limit: i64) -> Result<Vec<SwitchRecord>> {
        self.control_read(async move |c| {
            let sql = format!(
                "SELECT {HISTORY_COLUMNS} FROM {} ORDER BY started_at_ms DESC, id DESC LIMIT $1",
                c.t("deploy_history")
            );
            let rows = c.query(&sql, &[P::Int(limit)]).await?;
            rows.iter()
                .map(|r| {
                    Ok(SwitchRecord {
                        id: r.text(0)?,
                        actor: r.text(1)?,
                        from: parse_stack(r.text(2)?)?,
                        to: parse_stack(r.text(3)?)?,
                        started_at_ms: r.int(4)?,
                        finished_at_ms: r.int(5)?,
                        outcome: r.text(6)?,
                        detail: r.text(7)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Reports this instance alive (and how many queries it still owns).
    pub async fn heartbeat(&self, i: &Instance) -> Result<()> {
        let i = i.clone();
        self.control_write(async move |c| {
            let sql = format!(
                "INSERT INTO {} ({INSTANCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET stack = excluded.stack, http_addr = excluded.http_addr,
                   grpc_addr = excluded.grpc_addr, inflight = excluded.inflight, heartbeat_at_ms = excluded.heartbeat_at_ms",
                c.t("deploy_instances")
            );
            let params = [
                i.id.into(),
                i.stack.as_str().into(),
                i.http_addr.into(),
                i.grpc_addr.into(),
                P::Int(i.inflight),
                P::Int(i.heartbeat_at_ms),
            ];
            c.execute(&sql, &params).await?;
            Ok(())
        })
        .await
    }

    /// Removes an instance that is shutting down.
    pub async fn forget_instance(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.control_write(async move |c| {
            c.execute(&format!("DELETE FROM {} WHERE id = $1", c.t("deploy_instances")), &[id.into()]).await?;
            Ok(())
        })
        .await
    }

    /// Instances whose heartbeat is at most `fresh_ms` old.
    pub async fn instances(&self, fresh_ms: i64) -> Result<Vec<Instance>> {
        let since = now_ms() - fresh_ms;
        self.control_read(async move |c| {
            let sql = format!(
                "SELECT {INSTANCE_COLUMNS} FROM {} WHERE heartbeat_at_ms >= $1 ORDER BY stack, id",
                c.t("deploy_instances")
            );
            let rows = c.query(&sql, &[P::Int(since)]).await?;
            rows.iter()
                .map(|r| {
                    Ok(Instance {
                        id: r.text(0)?,
                        stack: parse_stack(r.text(1)?)?,
                        http_addr: r.text(2)?,
                        grpc_addr: r.text(3)?,
                        inflight: r.int(4)?,
                        heartbeat_at_ms: r.int(5)?,
                    })
                })
                .collect()
        })
        .await
    }
}
