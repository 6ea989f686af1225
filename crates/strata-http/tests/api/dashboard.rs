//! The dashboard in a real browser: headless Chromium driven by Playwright
//! (tests/browser/dashboard.mjs), against the real server with the canonical data.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_both_reports_correctly_in_headless_chromium() {
    let app = spawn_app(Backend::Sqlite).await;
    let key = app.tenant_with_canonical_data("demo").await;
    let dir = std::env::var("STRATA_TEST_BROWSER_DIR")
        .unwrap_or_else(|_| format!("{}/tests/browser", env!("CARGO_MANIFEST_DIR")));
    assert!(
        std::path::Path::new(&dir).join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run scripts/test.sh, which installs it and Chromium"
    );
    let artifacts = format!("{}/../../tests-artifacts/browser", env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(&artifacts).unwrap();
    let base = app.url("");
    let script = format!("{dir}/dashboard.mjs");
    let args = [base.clone(), key.clone(), artifacts.clone()];
    let out = tokio::task::spawn_blocking(move || std::process::Command::new("node").arg(script).args(args).output())
        .await
        .unwrap()
        .expect("node must be installed");
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for shot in ["dashboard-2021.png", "drilldown.png", "empty-2019.png"] {
        assert!(std::path::Path::new(&artifacts).join(shot).exists(), "{shot}");
    }
}
