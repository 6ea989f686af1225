//! Everything a hostile tenant with a valid key once used to crash, freeze or bloat Strata,
//! thrown at one real `strata serve` at the same time, while another tenant goes about its
//! work. The process must stay alive, the other tenant must be served throughout, and the
//! server's memory must stay under the bound the README states (1 GiB with default limits).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The README's bound for the server under this attack, with default limits.
const MEMORY_BOUND_BYTES: u64 = 1 << 30;
/// What the server may still hold once the attacks are over: memory goes back to the system.
/// Measured 190-350 MiB a few seconds after peaks of 400-600 MiB (how much the allocator
/// still caches varies from run to run); the issue saw 1.1 GB kept after one query.
const AFTER_BOUND_BYTES: u64 = 512 << 20;

fn rss(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn zigzag(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn avro_bytes(out: &mut Vec<u8>, b: &[u8]) {
    zigzag(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// An Avro file for `employees` whose one deflate block inflates to 1 GiB of zeros.
fn deflate_bomb() -> Vec<u8> {
    let schema = r#"{"type":"record","name":"employees","fields":[{"name":"employee_id","type":"long"},{"name":"employee_name","type":"string"},{"name":"hiring_date","type":"string"},{"name":"department_id","type":"long"},{"name":"job_id","type":"long"}]}"#;
    let sync = [7u8; 16];
    let mut f = b"Obj\x01".to_vec();
    zigzag(&mut f, 2);
    avro_bytes(&mut f, b"avro.schema");
    avro_bytes(&mut f, schema.as_bytes());
    avro_bytes(&mut f, b"avro.codec");
    avro_bytes(&mut f, b"deflate");
    zigzag(&mut f, 0);
    f.extend_from_slice(&sync);
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        z.write_all(&zeros).unwrap();
    }
    let data = z.finish().unwrap();
    zigzag(&mut f, 1000);
    zigzag(&mut f, data.len() as i64);
    f.extend_from_slice(&data);
    f.extend_from_slice(&sync);
    f
}

fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

async fn attack_and_measure(storage: Vec<String>) {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .env_remove("STRATA_DATABASE_URL")
            .args(&storage)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let data = |t: &str| format!("{}/../../data/hr/{t}.csv", env!("CARGO_MANIFEST_DIR"));
    let mut keys = Vec::new();
    for tenant in ["hostile", "victim"] {
        keys.push(run(&["tenant", "create", tenant, "--dataset", "hr"]));
        for t in ["departments", "jobs", "employees"] {
            run(&["load", "--tenant", tenant, "--table", t, &data(t)]);
        }
    }
    let (hostile, victim) = (keys[0].clone(), keys[1].clone());
    let mut args: Vec<&str> = storage.iter().map(String::as_str).collect();
    args.extend(["serve", "--http-addr", "127.0.0.1:0", "--rate-provider", "fixed", "--query-timeout-secs", "10"]);
    let server = common::serve_with(&args);
    let pid = server.child.id();
    let base = server.base.clone();
    let grpc = format!("http://{}", server.grpc);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));

    // The memory sampler.
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut attacks = tokio::task::JoinSet::new();
    // 1. Queries that once overflowed the stack, bloated memory or outran the time limit.
    let queries: Vec<String> = vec![
        format!("SELECT {}", chain("1", "+", 5_500)),
        format!("SELECT employee_name FROM employees WHERE {}", chain("employee_id = 1", " OR ", 6_000)),
        format!("SELECT {}", chain("employee_name", "||", 6_000)),
        "SELECT 'tenant_victim.departments'::regclass::text".into(),
        "SELECT rpad(department_name, 100000000, 'y') FROM departments LIMIT 5".into(),
        "SELECT printf('%.*c', 200000000, 'x')".into(),
        "WITH RECURSIVE t(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM t WHERE length(s) < 1000000000) SELECT length(s) FROM t".into(),
        "SELECT a.employee_name, b.employee_name FROM employees a, employees b, employees c LIMIT 100000000".into(),
    ];
    for round in 0..3 {
        for sql in queries.clone() {
            let (grpc, hostile) = (grpc.clone(), hostile.clone());
            attacks.spawn(async move {
                let conn =
                    strata_client::Connection::connect(strata_client::Config::new(&grpc, "hostile", &hostile)).await;
                if let Ok(conn) = conn {
                    let mut cur = conn.cursor();
                    if cur.execute(&sql).await.is_ok() {
                        // Read slowly, holding the result open.
                        while let Ok(Some(_)) = cur.fetch_batch().await {
                            tokio::time::sleep(Duration::from_millis(200 * round)).await;
                        }
                    }
                }
            });
        }
    }
    // 2. Definitions nested far beyond any real one.
    for ct in ["application/yaml", "application/json", "application/toml"] {
        for _ in 0..3 {
            let body = if ct == "application/toml" {
                format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000))
            } else {
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))
            };
            let (client, base, hostile) = (client.clone(), base.clone(), hostile.clone());
            attacks.spawn(async move {
                let _ = client
                    .put(format!("{base}/v1/datasets/x"))
                    .bearer_auth(&hostile)
                    .header("content-type", ct)
                    .body(body)
                    .send()
                    .await;
            });
        }
    }
    // 3. Avro bombs, several at once.
    let bomb = deflate_bomb();
    for _ in 0..6 {
        let (client, base, hostile, bomb) = (client.clone(), base.clone(), hostile.clone(), bomb.clone());
        attacks.spawn(async move {
            let r = client
                .post(format!("{base}/v1/tables/employees/restore"))
                .bearer_auth(&hostile)
                .header("content-type", "application/vnd.apache.avro.file")
                .body(bomb)
                .send()
                .await;
            if let Ok(r) = r {
                assert!(matches!(r.status().as_u16(), 422 | 429), "{}", r.status());
            }
        });
    }
    // 4. Full-size batches, far more than the tenant's body budget at once.
    let batch: String = (0..1000).map(|i| format!("{},{}\n", 500_000 + i, "n".repeat(16_000))).collect();
    for _ in 0..12 {
        let (client, base, hostile, batch) = (client.clone(), base.clone(), hostile.clone(), batch.clone());
        attacks.spawn(async move {
            let _ = client
                .post(format!("{base}/v1/tables/departments/rows"))
                .bearer_auth(&hostile)
                .header("content-type", "text/csv")
                .body(batch)
                .send()
                .await;
        });
    }
    // 5. Uploads that stall after their headers, and half-sent headers.
    let addr = base.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    for i in 0..40 {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            let head = if i % 2 == 0 {
                format!("POST /v1/tables/employees/load HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {hostile}\r\nContent-Type: text/csv\r\nContent-Length: 10000000\r\n\r\n1,")
            } else {
                "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_string()
            };
            let _ = s.write_all(head.as_bytes());
            stalled.push(s);
        }
    }

    // Meanwhile the victim works, and must always be served.
    let t0 = Instant::now();
    let mut served = 0;
    while t0.elapsed() < Duration::from_secs(12) {
        let r =
            client.get(format!("{base}/v1/tables/employees/rows?limit=50")).bearer_auth(&victim).send().await.unwrap();
        assert_eq!(r.status(), 200, "the victim's read");
        let r = client
            .post(format!("{base}/v1/tables/jobs/rows"))
            .bearer_auth(&victim)
            .json(&serde_json::json!({"rows": [{"job_id": 10_000 + served, "job_name": "Victim"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the victim's write");
        assert_eq!(client.get(format!("{base}/ready")).send().await.unwrap().status(), 200);
        let conn =
            strata_client::Connection::connect(strata_client::Config::new(&grpc, "victim", &victim)).await.unwrap();
        let mut cur = conn.cursor();
        cur.execute("SELECT count(*) FROM employees").await.unwrap();
        assert!(cur.fetch_one().await.unwrap().is_some());
        served += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(served >= 5, "the victim got through only {served} rounds");
    // Let the attacks end (each is bounded by a limit), then look at the process.
    let _ = tokio::time::timeout(Duration::from_secs(60), async { while attacks.join_next().await.is_some() {} }).await;
    attacks.abort_all();
    drop(stalled);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed).max(rss(pid, "VmHWM:"));
    // Give the allocator a bounded while to hand freed memory back.
    let mut after = rss(pid, "VmRSS:");
    for _ in 0..20 {
        if after < AFTER_BOUND_BYTES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = rss(pid, "VmRSS:");
    }
    eprintln!("server memory: peak {} MiB, after the attack {} MiB", peak >> 20, after >> 20);
    assert!(std::fs::metadata(format!("/proc/{pid}")).is_ok(), "the server died");
    assert!(
        peak < MEMORY_BOUND_BYTES,
        "peak RSS {} MiB is over the {} MiB bound",
        peak >> 20,
        MEMORY_BOUND_BYTES >> 20
    );
    assert!(
        after < AFTER_BOUND_BYTES,
        "the server kept {} MiB after the attack (bound {} MiB): memory is not given back",
        after >> 20,
        AFTER_BOUND_BYTES >> 20
    );
    assert_eq!(client.get(format!("{base}/health")).send().await.unwrap().status(), 200);
    // Nothing the attacks sent was stored.
    let r =
        client.get(format!("{base}/v1/tables/departments/rows?limit=1000")).bearer_auth(&hostile).send().await.unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["rows"].as_array().unwrap().len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_cannot_crash_freeze_or_bloat_the_server_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    attack_and_measure(vec!["--data-dir".into(), dir.path().display().to_string()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_cannot_crash_freeze_or_bloat_the_server_on_postgres() {
    let db = common::Db::create().await;
    attack_and_measure(vec!["--database-url".into(), db.url()]).await;
}
