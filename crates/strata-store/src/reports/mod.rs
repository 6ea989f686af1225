//! The hiring reports: each one SQL statement, written once, so the database does the
//! scanning and grouping. Names sort in byte order on both databases (SQLite's BINARY
//! collation, the "C" collation Strata gives PostgreSQL text columns); hiring dates are bound
//! as instants ([`P::Micros`]), which each database compares in its own storage form.

use strata_domain::report::{AboveMean, DepartmentHires, QuarterRow, Year};
use strata_domain::tenant::TenantId;

use crate::db::{Dialect, Tx, P};
use crate::{Result, Store, StoreError};

/// `count(*)` of the rows where `cond` holds. SQLite sums the condition (0 or 1), which its
/// planner runs measurably faster than a FILTER clause; PostgreSQL cannot sum booleans.
fn count_if(c: &Tx<'_>, cond: &str) -> String {
    match c.dialect() {
        Dialect::Sqlite => format!("sum({cond})"),
        Dialect::Postgres => format!("count(*) FILTER (WHERE {cond})"),
    }
}

/// Parameters: year start, Q2, Q3, Q4 starts, year end. Grouping by the keys alone is enough
/// for both databases (PostgreSQL knows the names depend on them), and lets SQLite group in
/// key order instead of sorting by name first.
fn hires_by_quarter_sql(c: &Tx<'_>) -> String {
    let (e, d, j) = (c.t("\"employees\""), c.t("\"departments\""), c.t("\"jobs\""));
    let q1 = count_if(c, "e.hiring_date < $2");
    let q2 = count_if(c, "e.hiring_date >= $2 AND e.hiring_date < $3");
    let q3 = count_if(c, "e.hiring_date >= $3 AND e.hiring_date < $4");
    let q4 = count_if(c, "e.hiring_date >= $4");
    format!(
        "
SELECT d.department_name, j.job_name, {q1}, {q2}, {q3}, {q4}, d.department_id, j.job_id
FROM {e} e
JOIN {d} d ON d.department_id = e.department_id
JOIN {j} j ON j.job_id = e.job_id
WHERE e.hiring_date >= $1 AND e.hiring_date < $5
GROUP BY d.department_id, j.job_id
ORDER BY d.department_name, j.job_name, d.department_id, j.job_id"
    )
}

/// Parameters: year start, year end.
fn department_hires_sql(c: &Tx<'_>) -> String {
    let (e, d) = (c.t("\"employees\""), c.t("\"departments\""));
    format!(
        "
SELECT d.department_id, d.department_name, count(*) AS hired
FROM {e} e
JOIN {d} d ON d.department_id = e.department_id
WHERE e.hiring_date >= $1 AND e.hiring_date < $2
GROUP BY d.department_id
ORDER BY hired DESC, d.department_name, d.department_id"
    )
}

fn bounds(year: Year) -> Vec<P> {
    year.quarter_bounds().iter().map(|t| P::Micros(t.timestamp_micros())).collect()
}

impl Store {
    /// The reports read the HR dataset's three tables; a tenant without them gets a clear error.
    async fn require_hr(&self, tenant: &TenantId) -> Result<()> {
        let tables = self.tables(tenant).await?;
        for name in ["employees", "departments", "jobs"] {
            if !tables.iter().any(|t| t.name == name && t.dataset == "hr") {
                return Err(StoreError::ReportUnavailable(
                    "reports need the hr dataset (tables departments, jobs, employees); install it with PUT /v1/datasets/hr or strata tenant create --dataset hr".into(),
                ));
            }
        }
        Ok(())
    }

    pub async fn hires_by_quarter(&self, tenant: &TenantId, year: Year) -> Result<Vec<QuarterRow>> {
        self.require_hr(tenant).await?;
        self.tenant_read(tenant, async move |c| {
            let sql = hires_by_quarter_sql(c);
            let rows = c.query(&sql, &bounds(year)).await?;
            rows.iter()
                .map(|r| {
                    Ok(QuarterRow {
                        department_id: r.int(6)?,
                        department_name: r.text(0)?,
                        job_id: r.int(7)?,
                        job_name: r.text(1)?,
                        q1: r.int(2)?,
                        q2: r.int(3)?,
                        q3: r.int(4)?,
                        q4: r.int(5)?,
                    })
                })
                .collect()
        })
        .await
    }

    pub async fn departments_above_mean(&self, tenant: &TenantId, year: Year) -> Result<AboveMean> {
        self.require_hr(tenant).await?;
        // One snapshot for the counts and the number of departments.
        let (all, n) = self
            .tenant_snapshot(tenant, async move |c| {
                let b = bounds(year);
                let sql = department_hires_sql(c);
                let rows = c.query(&sql, &[b[0].clone(), b[4].clone()]).await?;
                let all = rows
                    .iter()
                    .map(|r| {
                        Ok(DepartmentHires { department_id: r.int(0)?, department_name: r.text(1)?, hired: r.int(2)? })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let n = c.query_one(&format!("SELECT count(*) FROM {}", c.t("\"departments\"")), &[]).await?.int(0)?;
                Ok((all, n))
            })
            .await?;
        Ok(AboveMean::from_counts(year, all, n))
    }
}
