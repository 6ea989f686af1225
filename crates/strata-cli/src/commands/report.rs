//! `strata report`: the hiring KPI reports as a table, CSV or JSON.

use clap::Args;
use strata_store::Store;

use crate::parse_tenant;

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// hires-by-quarter or departments-above-mean.
    #[arg(value_parser = ["hires-by-quarter", "departments-above-mean"])]
    pub(crate) report: String,
    #[arg(long, env = "STRATA_TENANT")]
    pub(crate) tenant: String,
    #[arg(long, default_value = "2021")]
    pub(crate) year: String,
    /// table, csv or json.
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    pub(crate) format: String,
}

pub(crate) async fn report(store: Store, a: ReportArgs) -> anyhow::Result<()> {
    use strata_domain::report::{above_mean_csv, hires_csv, Year};
    let tid = parse_tenant(&a.tenant)?;
    let year = Year::parse(&a.year).map_err(|e| anyhow::anyhow!(e))?;
    if a.report == "hires-by-quarter" {
        let rows = store.hires_by_quarter(&tid, year).await?;
        match a.format.as_str() {
            "csv" => print!("{}", hires_csv(&rows)),
            "json" => {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"year": year.get(), "rows": rows}))?)
            }
            _ => {
                if rows.is_empty() {
                    println!("No hires in {}.", year.get());
                }
                let w1 = rows.iter().map(|r| r.department_name.chars().count()).max().unwrap_or(0).max(10);
                let w2 = rows.iter().map(|r| r.job_name.chars().count()).max().unwrap_or(0).max(3);
                if !rows.is_empty() {
                    println!("{:<w1$}  {:<w2$}  {:>4} {:>4} {:>4} {:>4}", "department", "job", "Q1", "Q2", "Q3", "Q4");
                }
                for r in &rows {
                    println!(
                        "{:<w1$}  {:<w2$}  {:>4} {:>4} {:>4} {:>4}",
                        r.department_name, r.job_name, r.q1, r.q2, r.q3, r.q4
                    );
                }
            }
        }
    } else {
        let r = store.departments_above_mean(&tid, year).await?;
        match a.format.as_str() {
            "csv" => print!("{}", above_mean_csv(&r.rows)),
            "json" => println!("{}", serde_json::to_string_pretty(&r)?),
            _ => {
                println!(
                    "{} hires in {} across {} departments; mean {}.",
                    r.total_hires,
                    year.get(),
                    r.departments_counted,
                    r.mean
                );
                for d in &r.rows {
                    println!("{:>6}  {:<30} {:>6}", d.department_id, d.department_name, d.hired);
                }
            }
        }
    }
    Ok(())
}
