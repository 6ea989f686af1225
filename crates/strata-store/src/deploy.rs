//! Blue/green deployment state, shared by every instance through the control plane.
//!
//! One row says which stack is active and, during a switch, which stack has been announced as
//! the next one. Changes are compare-and-set on that row, so two operators switching at once
//! cannot both win. Instances report themselves (stack, addresses, queries in flight) with a
//! heartbeat, which is how a switch finds the stack to validate and knows when a drain is over.

use std::fmt;
use std::str::FromStr;

use rusqlite::{params, OptionalExtension};

use crate::{Backend, Result, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    pub stack: String,
    pub http_addr: String,
    pub grpc_addr: String,
    pub inflight: i64,
    pub heartbeat_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SwitchRecord {
    pub id: String,
    pub actor: String,
    pub from: String,
    pub to: String,
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

impl Store {
    /// The deployment state; the first reader creates it with blue active. Every instance
    /// polls this several times a second, so the common path is one read, never a write.
    pub async fn deploy_state(&self) -> Result<DeployState> {
        type Raw = (String, Option<String>, Option<String>, i64);
        const READ: &str = "SELECT active, target, switch_id, changed_at_ms FROM deploy_state WHERE id = 1";
        let raw: Raw = match &self.backend {
            Backend::Sqlite(s) => {
                let read = |c: &rusqlite::Connection| -> rusqlite::Result<Option<Raw>> {
                    c.query_row(READ, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).optional()
                };
                match s.control_read(move |c| Ok(read(c)?)).await? {
                    Some(raw) => raw,
                    None => {
                        s.control_write(move |c| {
                            c.execute(
                                "INSERT INTO deploy_state (id, active, changed_at_ms) VALUES (1, 'blue', ?1) ON CONFLICT (id) DO NOTHING",
                                [now_ms()],
                            )?;
                            Ok(read(c)?.expect("the row was just written"))
                        })
                        .await?
                    }
                }
            }
            Backend::Postgres(p) => {
                let c = p.control_pool().get().await?;
                let read = READ.replace("FROM deploy_state", "FROM strata_control.deploy_state");
                let row = match c.query_opt(&read, &[]).await? {
                    Some(r) => r,
                    None => {
                        c.execute(
                            "INSERT INTO strata_control.deploy_state (id, active, changed_at_ms) VALUES (1, 'blue', $1) ON CONFLICT (id) DO NOTHING",
                            &[&now_ms()],
                        )
                        .await?;
                        c.query_one(&read, &[]).await?
                    }
                };
                (row.get(0), row.get(1), row.get(2), row.get(3))
            }
        };
        Ok(DeployState {
            active: parse_stack(raw.0)?,
            target: raw.1.map(parse_stack).transpose()?,
            switch_id: raw.2,
            changed_at_ms: raw.3,
        })
    }

    /// Announces `to` as the next stack, if `from` is active and no switch is under way.
    pub async fn deploy_announce(&self, from: Stack, to: Stack, switch_id: &str) -> Result<bool> {
        self.deploy_cas(
            "SET target = ?1, switch_id = ?2, changed_at_ms = ?4 WHERE id = 1 AND active = ?3 AND target IS NULL",
            &[to.as_str(), switch_id, from.as_str()],
        )
        .await
    }

    /// Makes the announced stack active, in one atomic step.
    pub async fn deploy_flip(&self, switch_id: &str) -> Result<bool> {
        self.deploy_cas(
            "SET active = target, target = NULL, switch_id = NULL, changed_at_ms = ?2 WHERE id = 1 AND switch_id = ?1 AND target IS NOT NULL",
            &[switch_id],
        )
        .await
    }

    /// Withdraws an announcement that did not complete.
    pub async fn deploy_abort(&self, switch_id: &str) -> Result<bool> {
        self.deploy_cas(
            "SET target = NULL, switch_id = NULL, changed_at_ms = ?2 WHERE id = 1 AND switch_id = ?1",
            &[switch_id],
        )
        .await
    }

    /// One compare-and-set on the state row: `UPDATE deploy_state <set_where>`, with `texts`
    /// bound to `?1..?n` and the current time to `?n+1` (rewritten to `$k` for PostgreSQL).
    async fn deploy_cas(&self, set_where: &'static str, texts: &[&str]) -> Result<bool> {
        self.deploy_state().await?;
        let now = now_ms();
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        let n = match &self.backend {
            Backend::Sqlite(s) => {
                let sql = format!("UPDATE deploy_state {set_where}");
                s.control_write(move |c| {
                    let mut p: Vec<rusqlite::types::Value> = texts.into_iter().map(Into::into).collect();
                    p.push(now.into());
                    Ok(c.execute(&sql, rusqlite::params_from_iter(p))?)
                })
                .await?
            }
            Backend::Postgres(p) => {
                let sql = format!("UPDATE strata_control.deploy_state {}", set_where.replace('?', "$"));
                let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    texts.iter().map(|t| t as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                params.push(&now);
                let c = p.control_pool().get().await?;
                c.execute(&sql, &params).await? as usize
            }
        };
        Ok(n == 1)
    }

    pub async fn record_switch(&self, r: &SwitchRecord) -> Result<()> {
        let r = r.clone();
        match &self.backend {
            Backend::Sqlite(s) => {
                s.control_write(move |c| {
                    c.execute(
                        "INSERT INTO deploy_history (id, actor, from_stack, to_stack, started_at_ms, finished_at_ms, outcome, detail)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![r.id, r.actor, r.from, r.to, r.started_at_ms, r.finished_at_ms, r.outcome, r.detail],
                    )?;
                    Ok(())
                })
                .await
            }
            Backend::Postgres(p) => {
                let c = p.control_pool().get().await?;
                c.execute(
                    "INSERT INTO strata_control.deploy_history (id, actor, from_stack, to_stack, started_at_ms, finished_at_ms, outcome, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[&r.id, &r.actor, &r.from, &r.to, &r.started_at_ms, &r.finished_at_ms, &r.outcome, &r.detail],
                )
                .await?;
                Ok(())
            }
        }
    }

    /// The most recent switches, newest first.
    pub async fn deploy_history(&self, limit: i64) -> Result<Vec<SwitchRecord>> {
        const COLS: &str = "id, actor, from_stack, to_stack, started_at_ms, finished_at_ms, outcome, detail";
        match &self.backend {
            Backend::Sqlite(s) => {
                s.control_read(move |c| {
                    let mut st = c.prepare(&format!(
                        "SELECT {COLS} FROM deploy_history ORDER BY started_at_ms DESC, id DESC LIMIT ?1"
                    ))?;
                    let rows = st.query_map([limit], |r| {
                        Ok(SwitchRecord {
                            id: r.get(0)?,
                            actor: r.get(1)?,
                            from: r.get(2)?,
                            to: r.get(3)?,
                            started_at_ms: r.get(4)?,
                            finished_at_ms: r.get(5)?,
                            outcome: r.get(6)?,
                            detail: r.get(7)?,
                        })
                    })?;
                    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
                })
                .await
            }
            Backend::Postgres(p) => {
                let c = p.control_pool().get().await?;
                let rows = c
                    .query(
                        &format!("SELECT {COLS} FROM strata_control.deploy_history ORDER BY started_at_ms DESC, id DESC LIMIT $1"),
                        &[&limit],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| SwitchRecord {
                        id: r.get(0),
                        actor: r.get(1),
                        from: r.get(2),
                        to: r.get(3),
                        started_at_ms: r.get(4),
                        finished_at_ms: r.get(5),
                        outcome: r.get(6),
                        detail: r.get(7),
                    })
                    .collect())
            }
        }
    }

    /// Reports this instance alive (and how many queries it still owns).
    pub async fn heartbeat(&self, i: &Instance) -> Result<()> {
        let i = i.clone();
        match &self.backend {
            Backend::Sqlite(s) => {
                s.control_write(move |c| {
                    c.execute(
                        "INSERT INTO deploy_instances (id, stack, http_addr, grpc_addr, inflight, heartbeat_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (id) DO UPDATE SET stack = excluded.stack, http_addr = excluded.http_addr,
                           grpc_addr = excluded.grpc_addr, inflight = excluded.inflight, heartbeat_at_ms = excluded.heartbeat_at_ms",
                        params![i.id, i.stack, i.http_addr, i.grpc_addr, i.inflight, i.heartbeat_at_ms],
                    )?;
                    Ok(())
                })
                .await
            }
            Backend::Postgres(p) => {
                let c = p.control_pool().get().await?;
                c.execute(
                    "INSERT INTO strata_control.deploy_instances (id, stack, http_addr, grpc_addr, inflight, heartbeat_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (id) DO UPDATE SET stack = excluded.stack, http_addr = excluded.http_addr,
                       grpc_addr = excluded.grpc_addr, inflight = excluded.inflight, heartbeat_at_ms = excluded.heartbeat_at_ms",
                    &[&i.id, &i.stack, &i.http_addr, &i.grpc_addr, &i.inflight, &i.heartbeat_at_ms],
                )
                .await?;
                Ok(())
            }
        }
    }

    /// Removes an instance that is shutting down.
    pub async fn forget_instance(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        match &self.backend {
            Backend::Sqlite(s) => {
                s.control_write(move |c| {
                    c.execute("DELETE FROM deploy_instances WHERE id = ?1", [id])?;
                    Ok(())
                })
                .await
            }
            Backend::Postgres(p) => {
                let c = p.control_pool().get().await?;
                c.execute("DELETE FROM strata_control.deploy_instances WHERE id = $1", &[&id]).await?;
                Ok(())
            }
        }
    }

    /// Instances whose heartbeat is at most `fresh_ms` old.
    pub async fn instances(&self, fresh_ms: i64) -> Result<Vec<Instance>> {
        let since = now_ms() - fresh_ms;
        const COLS: &str = "id, stack, http_addr, grpc_addr, inflight, heartbeat_at_ms";
        match &self.backend {
            Backend::Sqlite(s) => {
                s.control_read(move |c| {
                    let mut st = c.prepare(&format!(
                        "SELECT {COLS} FROM deploy_instances WHERE heartbeat_at_ms >= ?1 ORDER BY stack, id"
                    ))?;
                    let rows = st.query_map([since], |r| {
                        Ok(Instance {
                            id: r.get(0)?,
                            stack: r.get(1)?,
                            http_addr: r.get(2)?,
                            grpc_addr: r.get(3)?,
                            inflight: r.get(4)?,
                            heartbeat_at_ms: r.get(5)?,
                        })
                    })?;
                    let out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                    Ok(out)
                })
                .await
            }
            Backend::Postgres(p) => {
                let c = p.control_pool().get().await?;
                let rows = c
                    .query(
                        &format!("SELECT {COLS} FROM strata_control.deploy_instances WHERE heartbeat_at_ms >= $1 ORDER BY stack, id"),
                        &[&since],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| Instance {
                        id: r.get(0),
                        stack: r.get(1),
                        http_addr: r.get(2),
                        grpc_addr: r.get(3),
                        inflight: r.get(4),
                        heartbeat_at_ms: r.get(5),
                    })
                    .collect())
            }
        }
    }
}
