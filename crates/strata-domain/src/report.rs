//! The hiring KPI reports: what they mean, independent of where the data lives.
//!
//! * **Hires per quarter**: for one year, the employees hired per department and job, split
//!   into Q1..Q4 by `hiring_date` in UTC (Q1 = January to March, boundaries at midnight UTC:
//!   `2021-04-01T00:00:00Z` is Q2). Only department/job pairs with at least one hire appear,
//!   ordered by department name, then job name, in byte order.
//! * **Departments above the mean**: the mean is the year's hires divided by the number of
//!   departments in the `departments` table, *including departments that hired nobody* (a
//!   department that hired no one hired zero people; leaving it out would inflate the mean).
//!   A department is listed when it hired strictly more than that mean, most hires first,
//!   ties by department name. The comparison is exact: `hired * departments > total`.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

/// A report year: 1 to 9999, the years every backend can store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Year(i32);

impl Year {
    pub const DEFAULT: Year = Year(2021);

    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().parse::<i32>() {
            Ok(y) if (1..=9999).contains(&y) && !s.trim().starts_with('+') => Ok(Year(y)),
            _ => Err(format!(
                "year must be a whole number from 1 to 9999, like 2021 (got {:?})",
                s.chars().take(20).collect::<String>()
            )),
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }

    /// The five instants bounding the year's quarters: start, Q2, Q3, Q4, end (exclusive).
    pub fn quarter_bounds(self) -> [DateTime<Utc>; 5] {
        let at = |y: i32, m: u32| NaiveDate::from_ymd_opt(y, m, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
        let end = if self.0 == 9999 {
            // One microsecond past the last representable instant we accept.
            at(9999, 12) + chrono::Duration::days(31)
        } else {
            at(self.0 + 1, 1)
        };
        [at(self.0, 1), at(self.0, 4), at(self.0, 7), at(self.0, 10), end]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarterRow {
    /// Ids as well as names: two departments (or jobs) may share a name, and the dashboard
    /// must not merge them. The CSV keeps the deliverables' columns (names only).
    pub department_id: i64,
    pub department_name: String,
    pub job_id: i64,
    pub job_name: String,
    #[serde(rename = "Q1")]
    pub q1: i64,
    #[serde(rename = "Q2")]
    pub q2: i64,
    #[serde(rename = "Q3")]
    pub q3: i64,
    #[serde(rename = "Q4")]
    pub q4: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DepartmentHires {
    pub department_id: i64,
    pub department_name: String,
    pub hired: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AboveMean {
    pub year: Year,
    pub total_hires: i64,
    pub departments_counted: i64,
    /// total_hires / departments_counted, to 2 decimals, as a string (exact inputs, no float).
    /// Rounded half away from zero, as people round by hand.
    pub mean: String,
    pub rows: Vec<DepartmentHires>,
}

impl AboveMean {
    /// Applies the report's rule to every department's hires (`all` sorted as the report is).
    pub fn from_counts(year: Year, all: Vec<DepartmentHires>, departments: i64) -> Self {
        let total: i64 = all.iter().map(|d| d.hired).sum();
        let rows = all
            .into_iter()
            .filter(|d| departments > 0 && (d.hired as i128) * (departments as i128) > total as i128)
            .collect();
        let mean = if departments == 0 {
            "0.00".to_string()
        } else {
            (Decimal::from(total) / Decimal::from(departments))
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
                .to_string()
        };
        let mean = if mean.contains('.') { mean } else { format!("{mean}.00") };
        let mean = match mean.split_once('.') {
            Some((i, f)) if f.len() == 1 => format!("{i}.{f}0"),
            _ => mean,
        };
        Self { year, total_hires: total, departments_counted: departments, mean, rows }
    }
}

/// One text field of a report CSV: RFC 4180 quoting where needed (what spreadsheet tools and
/// Python's csv do), and, as OWASP recommends against CSV injection, a text value that a
/// spreadsheet would run as a formula (one starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return) gets a leading `'` and is quoted, so it shows as text. Only names pass
/// through here; the numbers of a report are written as they are.
pub fn csv_field(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("\"'{}\"", s.replace('"', "\"\""))
    } else if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn hires_csv(rows: &[QuarterRow]) -> String {
    let mut out = String::from("department_name,job_name,Q1,Q2,Q3,Q4\n");
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            csv_field(&r.department_name),
            csv_field(&r.job_name),
            r.q1,
            r.q2,
            r.q3,
            r.q4
        ));
    }
    out
}

pub fn above_mean_csv(rows: &[DepartmentHires]) -> String {
    let mut out = String::from("department_id,department_name,hired\n");
    for r in rows {
        out.push_str(&format!("{},{},{}\n", r.department_id, csv_field(&r.department_name), r.hired));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_are_whole_numbers_in_range() {
        assert_eq!(Year::parse("2021").unwrap().get(), 2021);
        for bad in ["", "20x1", "0", "10000", "-5", "2021.0", "+2021", "1e3"] {
            assert!(Year::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quarter_bounds_are_midnight_utc() {
        let b = Year(2021).quarter_bounds();
        assert_eq!(b[1].to_rfc3339(), "2021-04-01T00:00:00+00:00");
        assert_eq!(b[4].to_rfc3339(), "2022-01-01T00:00:00+00:00");
    }

    #[test]
    fn the_mean_counts_departments_without_hires_and_compares_exactly() {
        let d = |id, h| DepartmentHires { department_id: id, department_name: format!("d{id}"), hired: h };
        // 3 departments, 10 hires: mean 3.33; 4 is above, 3 is not.
        let r = AboveMean::from_counts(Year(2021), vec![d(1, 4), d(2, 3), d(3, 3)], 3);
        assert_eq!(r.rows.iter().map(|x| x.department_id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(r.mean, "3.33");
        // With a 4th department that hired nobody the mean drops to 2.50.
        let r = AboveMean::from_counts(Year(2021), vec![d(1, 4), d(2, 3), d(3, 3)], 4);
        assert_eq!(r.rows.len(), 3);
        assert_eq!(r.mean, "2.50");
        // Exactly at the mean is not above it.
        let r = AboveMean::from_counts(Year(2021), vec![d(1, 2), d(2, 2)], 2);
        assert!(r.rows.is_empty());
        assert_eq!(r.mean, "2.00");
    }

    #[test]
    fn csv_text_a_spreadsheet_would_run_as_a_formula_is_defused() {
        assert_eq!(csv_field("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        for lead in ["+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            let out = csv_field(lead);
            assert!(out.starts_with("\"'"), "{lead:?} -> {out:?}");
        }
        assert_eq!(csv_field("R&D = fun"), "R&D = fun");
        let row = QuarterRow {
            department_id: 1,
            department_name: "=1+1".into(),
            job_id: 2,
            job_name: "Ops".into(),
            q1: 1,
            q2: 0,
            q3: 0,
            q4: 0,
        };
        assert_eq!(hires_csv(&[row]), "department_name,job_name,Q1,Q2,Q3,Q4\n\"'=1+1\",Ops,1,0,0,0\n");
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("Sales"), "Sales");
        assert_eq!(csv_field("R&D, \"new\""), "\"R&D, \"\"new\"\"\"");
    }
}
