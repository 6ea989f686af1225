//! Benchmark client: query latency in steady state vs during blue/green switches.
//!
//!     latency ENDPOINT TENANT KEY SWITCHES 'strata ... deploy switch --to {to}'
//!
//! Eight tasks share one connection and run a small query in a loop. After a steady phase,
//! the program runs the switch command SWITCHES times (green, blue, green, ...), with steady
//! pauses in between. Latencies of queries that *started* while a switch command was running
//! count as "during a switch"; the rest as "steady". Prints one JSON line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SQL: &str = "SELECT department_id, count(*) FROM employees WHERE employee_id < 2000 GROUP BY department_id";

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, tenant, key, switches, cmd] =
        <[String; 5]>::try_from(a).map_err(|_| "usage: latency ENDPOINT TENANT KEY SWITCHES CMD")?;
    let switches: usize = switches.parse()?;
    let conn = strata_client::Connection::connect(strata_client::Config::new(endpoint, tenant, key)).await?;
    let t0 = Instant::now();
    let samples: Arc<Mutex<Vec<(f64, f64)>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    // LATENCY_TASKS (default 8) separates a fixed per-query cost (1 task) from contention.
    let tasks_n: usize = std::env::var("LATENCY_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    for _ in 0..tasks_n {
        let (conn, samples, failures, stop) = (conn.clone(), samples.clone(), failures.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let start = t0.elapsed().as_secs_f64();
                let mut cur = conn.cursor();
                let r = async {
                    cur.execute(SQL).await?;
                    cur.fetch_all().await
                }
                .await;
                match r {
                    Ok(_) => samples.lock().unwrap().push((start, t0.elapsed().as_secs_f64() - start)),
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    let mut windows = Vec::new();
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..switches {
        let to = if i % 2 == 0 { "green" } else { "blue" };
        let begin = t0.elapsed().as_secs_f64();
        let status = tokio::process::Command::new("sh").arg("-c").arg(cmd.replace("{to}", to)).status().await?;
        if !status.success() {
            return Err(format!("switch to {to} failed").into());
        }
        windows.push((begin, t0.elapsed().as_secs_f64()));
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let all = samples.lock().unwrap().clone();
    let (mut during, mut steady): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for (start, lat) in all {
        let ms = lat * 1000.0;
        if windows.iter().any(|(b, e)| start >= *b && start <= *e) {
            during.push(ms);
        } else {
            steady.push(ms);
        }
    }
    let f = failures.lock().unwrap();
    println!(
        "{{\"steady_n\":{},\"steady_p50\":{:.2},\"steady_p99\":{:.2},\"switch_n\":{},\"switch_p50\":{:.2},\"switch_p99\":{:.2},\"switches\":{},\"failures\":{}}}",
        steady.len(),
        pct(&mut steady, 0.5),
        pct(&mut steady, 0.99),
        during.len(),
        pct(&mut during, 0.5),
        pct(&mut during, 0.99),
        switches,
        f.len()
    );
    Ok(())
}
