//! The report queries. Each is one SQL statement per backend, so the database does the
//! scanning and grouping; names sort in byte order on both (SQLite's BINARY collation, the
//! "C" collation Strata gives PostgreSQL text columns).

/// Parameters: year start, Q2, Q3, Q4 starts, year end (microseconds since the epoch).
pub(crate) const HIRES_BY_QUARTER_SQLITE: &str = "
SELECT d.department_name, j.job_name,
       sum(e.hiring_date < ?2),
       sum(e.hiring_date >= ?2 AND e.hiring_date < ?3),
       sum(e.hiring_date >= ?3 AND e.hiring_date < ?4),
       sum(e.hiring_date >= ?4),
       d.department_id, j.job_id
FROM \"employees\" e
JOIN \"departments\" d ON d.department_id = e.department_id
JOIN \"jobs\" j ON j.job_id = e.job_id
WHERE e.hiring_date >= ?1 AND e.hiring_date < ?5
GROUP BY d.department_id, j.job_id
ORDER BY d.department_name, j.job_name, d.department_id, j.job_id";

/// Parameters: year start, year end.
pub(crate) const DEPARTMENT_HIRES_SQLITE: &str = "
SELECT d.department_id, d.department_name, count(*) AS hired
FROM \"employees\" e
JOIN \"departments\" d ON d.department_id = e.department_id
WHERE e.hiring_date >= ?1 AND e.hiring_date < ?2
GROUP BY d.department_id
ORDER BY hired DESC, d.department_name, d.department_id";

pub(crate) fn hires_by_quarter_pg(schema: &str) -> String {
    format!(
        "
SELECT d.department_name, j.job_name,
       count(*) FILTER (WHERE e.hiring_date < $2),
       count(*) FILTER (WHERE e.hiring_date >= $2 AND e.hiring_date < $3),
       count(*) FILTER (WHERE e.hiring_date >= $3 AND e.hiring_date < $4),
       count(*) FILTER (WHERE e.hiring_date >= $4),
       d.department_id, j.job_id
FROM {schema}.\"employees\" e
JOIN {schema}.\"departments\" d ON d.department_id = e.department_id
JOIN {schema}.\"jobs\" j ON j.job_id = e.job_id
WHERE e.hiring_date >= $1 AND e.hiring_date < $5
GROUP BY d.department_id, d.department_name, j.job_id, j.job_name
ORDER BY d.department_name, j.job_name, d.department_id, j.job_id"
    )
}

pub(crate) fn department_hires_pg(schema: &str) -> String {
    format!(
        "
SELECT d.department_id, d.department_name, count(*) AS hired
FROM {schema}.\"employees\" e
JOIN {schema}.\"departments\" d ON d.department_id = e.department_id
WHERE e.hiring_date >= $1 AND e.hiring_date < $2
GROUP BY d.department_id, d.department_name
ORDER BY hired DESC, d.department_name, d.department_id"
    )
}
