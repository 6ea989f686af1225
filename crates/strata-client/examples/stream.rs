//! Benchmark client: streams one query's whole result through the connector, decoding every
//! value, and prints `rows seconds` (used by bench/grpc.sh).
//!
//!     cargo run --release -p strata-client --example stream -- ENDPOINT TENANT KEY SQL

use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, tenant, key, sql] =
        <[String; 4]>::try_from(a).map_err(|_| "usage: stream ENDPOINT TENANT KEY SQL")?;
    let conn = strata_client::Connection::connect(strata_client::Config::new(endpoint, tenant, key)).await?;
    let t0 = Instant::now();
    let mut cur = conn.cursor();
    cur.execute(&sql).await?;
    let mut rows = 0u64;
    while let Some(batch) = cur.fetch_batch().await? {
        rows += batch.len() as u64;
    }
    println!("{rows} {:.3}", t0.elapsed().as_secs_f64());
    Ok(())
}
