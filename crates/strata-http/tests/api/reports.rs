use serde_json::{json, Value as Json};

use crate::helpers::*;

fn expected(name: &str) -> String {
    // The seed's expected outputs, shipped with the tests (see data/hr/SOURCE.md).
    std::fs::read_to_string(format!("{}/tests/api/deliverables/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

async fn csv(app: &TestApp, key: &str, path: &str) -> (u16, String, String) {
    let r = app.get(key, path).await;
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

async fn both_reports_match_the_expected_csv_files_byte_for_byte(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let (s, ct, body) = csv(&app, &key, "/v1/reports/hires-by-quarter?year=2021&format=csv").await;
    assert_eq!((s, ct.as_str()), (200, "text/csv; charset=utf-8"));
    assert_eq!(body, expected("req1.csv"));
    let (_, _, body) = csv(&app, &key, "/v1/reports/departments-above-mean?year=2021&format=csv").await;
    assert_eq!(body, expected("req2.csv"));
    // The Accept header works too, and 2021 is the default year.
    let r = app
        .client
        .get(app.url("/v1/reports/departments-above-mean"))
        .bearer_auth(&key)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), expected("req2.csv"));
}

async fn json_reports_have_their_documented_shape(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let r: Json = app.get(&key, "/v1/reports/hires-by-quarter?year=2021").await.json().await.unwrap();
    assert_eq!(r["year"], 2021);
    assert_eq!(
        r["rows"][0],
        json!({"department_id": 12, "department_name": "Accounting", "job_id": 89,
               "job_name": "Account Representative IV", "Q1": 1, "Q2": 0, "Q3": 0, "Q4": 0})
    );
    assert_eq!(r["rows"].as_array().unwrap().len(), 933);
    let r: Json = app.get(&key, "/v1/reports/departments-above-mean?year=2021").await.json().await.unwrap();
    assert_eq!(r["mean"], "136.92");
    assert_eq!(r["total_hires"], 1643);
    assert_eq!(r["departments_counted"], 12);
    assert_eq!(r["rows"][0], json!({"department_id": 8, "department_name": "Support", "hired": 216}));
}

async fn quarters_split_at_midnight_utc_and_edge_cases_hold(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    app.load(&key, "departments", b"1,sales\n2,Sales\n3,Quiet".to_vec()).await;
    app.load(&key, "jobs", b"1,Rep\n2,rep".to_vec()).await;
    let rows = [
        "1,a,2020-12-31T23:59:59.999999Z,1,1", // previous year
        "2,b,2021-01-01T00:00:00Z,1,1",        // Q1 first instant
        "3,c,2021-03-31T23:59:59Z,1,1",        // Q1 last second
        "4,d,2021-04-01T00:00:00Z,1,1",        // Q2
        "5,e,2021-07-01T01:00:00+02:00,2,2",   // 2021-06-30T23:00Z: Q2
        "6,f,2021-10-01T00:00:00Z,2,1",        // Q4
        "7,g,2021-12-31T23:59:59.999999Z,2,1", // Q4 last instant
        "8,h,2022-01-01T00:00:00Z,2,1",        // next year
    ]
    .join("\n");
    app.load(&key, "employees", rows.into_bytes()).await;
    let (_, _, body) = csv(&app, &key, "/v1/reports/hires-by-quarter?year=2021&format=csv").await;
    // Byte order: "Sales" < "sales" and "Rep" < "rep", whatever the database collation.
    assert_eq!(body, "department_name,job_name,Q1,Q2,Q3,Q4\nSales,Rep,0,0,0,2\nSales,rep,0,1,0,0\nsales,Rep,2,1,0,0\n");
    let r: Json = app.get(&key, "/v1/reports/departments-above-mean?year=2021").await.json().await.unwrap();
    // 6 hires over 3 departments (Quiet hired nobody and still counts): mean 2.
    assert_eq!(r["mean"], "2.00");
    assert_eq!(
        r["rows"],
        json!([
        {"department_id": 2, "department_name": "Sales", "hired": 3},
        {"department_id": 1, "department_name": "sales", "hired": 3}])
    );
    // A year without hires is empty, not an error.
    let r: Json = app.get(&key, "/v1/reports/hires-by-quarter?year=1999").await.json().await.unwrap();
    assert_eq!(r["rows"], json!([]));
    let (s, _, body) = csv(&app, &key, "/v1/reports/departments-above-mean?year=1999&format=csv").await;
    assert_eq!((s, body.as_str()), (200, "department_id,department_name,hired\n"));
}

async fn bad_years_and_formats_get_a_clear_400(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    for path in ["hires-by-quarter", "departments-above-mean"] {
        for q in ["year=abc", "year=0", "year=10000", "year=", "year=2021.5", "year=%27%20OR%201=1"] {
            let r = app.get(&key, &format!("/v1/reports/{path}?{q}")).await;
            let (s, body) = (r.status().as_u16(), r.json::<Json>().await.unwrap());
            assert_eq!((s, body["error"]["code"].as_str().unwrap()), (400, "invalid_year"), "{path}?{q}");
            assert!(body["error"]["message"].as_str().unwrap().contains("year"));
        }
        let r = app.get(&key, &format!("/v1/reports/{path}?format=xml")).await;
        assert_eq!(error_code(r).await, (400, "invalid_format".into()));
        let r = app.get(&key, &format!("/v1/reports/{path}?yaer=2021")).await;
        assert_eq!(error_code(r).await, (400, "invalid_query".into()));
    }
    // A tenant without the HR dataset, and no key at all.
    let other = app.tenant("empty", false).await;
    let r = app.get(&other, "/v1/reports/hires-by-quarter").await;
    assert_eq!(error_code(r).await, (404, "report_unavailable".into()));
    let r = app.client.get(app.url("/v1/reports/hires-by-quarter")).send().await.unwrap();
    assert_eq!(error_code(r).await, (401, "missing_authorization".into()));
}

async fn the_dashboard_session_shows_only_the_signed_in_tenants_data(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.tenant_with_canonical_data("tenant-a").await;
    let other = app.tenant("tenant-b", true).await;
    let html = app.client.get(app.url("/reports")).send().await.unwrap();
    assert!(html.headers().get("content-security-policy").unwrap().to_str().unwrap().contains("default-src 'self'"));
    let html = html.text().await.unwrap();
    for external in ["src=\"http", "href=\"http", "src=\"//", "@import"] {
        assert!(!html.contains(external), "the dashboard must work offline: {external}");
    }
    let r = app.client.post(app.url("/reports/session")).json(&json!({"api_key": "strata_nope"})).send().await.unwrap();
    assert_eq!(error_code(r).await, (401, "invalid_api_key".into()));
    let r = app.client.post(app.url("/reports/session")).json(&json!({"api_key": other})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains(&other), "the cookie is a session token, not the key");
    let token = cookie.split(';').next().unwrap().to_string();
    let get = |path: &str, cookie: &str| app.client.get(app.url(path)).header("cookie", cookie.to_string()).send();
    let who: Json = get("/reports/session", &token).await.unwrap().json().await.unwrap();
    assert_eq!(who["tenant"], "tenant-b");
    // Tenant B's session sees B's (empty) data, never A's.
    let r: Json = get("/v1/reports/departments-above-mean", &token).await.unwrap().json().await.unwrap();
    assert_eq!(r["total_hires"], 0);
    // The cookie opens the report endpoints only, not the data API.
    let r = get("/v1/tables/employees/rows", &token).await.unwrap();
    assert_eq!(error_code(r).await.0, 401);
    let r = get("/v1/reports/hires-by-quarter", "strata_session=forged").await.unwrap();
    assert_eq!(error_code(r).await.0, 401);
    let r = app.client.delete(app.url("/reports/session")).header("cookie", token.clone()).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = get("/v1/reports/hires-by-quarter", &token).await.unwrap();
    assert_eq!(error_code(r).await.0, 401, "signed out");
    let _ = a;
}

async fn namesakes_stay_apart_and_csv_text_cannot_run_as_a_formula(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    // Two departments and two jobs share a name; names a spreadsheet would run as formulas.
    app.load(&key, "departments", b"1,Sales\n2,Sales\n3,\"=HYPERLINK(\"\"http://evil\"\")\"\n4,@SUM(A1)".to_vec())
        .await;
    app.load(&key, "jobs", b"1,Rep\n2,Rep\n3,+1+1\n4,-2".to_vec()).await;
    let rows = [
        "1,a,2021-01-02T00:00:00Z,1,1",
        "2,b,2021-01-02T00:00:00Z,2,2",
        "3,c,2021-05-02T00:00:00Z,2,1",
        "4,d,2021-05-02T00:00:00Z,3,3",
        "5,e,2021-05-02T00:00:00Z,4,4",
        "6,f,2021-05-02T00:00:00Z,4,4",
    ]
    .join("\n");
    app.load(&key, "employees", rows.into_bytes()).await;
    let r: Json = app.get(&key, "/v1/reports/hires-by-quarter?year=2021").await.json().await.unwrap();
    let pairs: Vec<(i64, i64, i64, i64)> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["department_name"] == "Sales")
        .map(|r| {
            (
                r["department_id"].as_i64().unwrap(),
                r["job_id"].as_i64().unwrap(),
                r["Q1"].as_i64().unwrap(),
                r["Q2"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs, [(1, 1, 1, 0), (2, 1, 0, 1), (2, 2, 1, 0)], "namesakes are separate rows, told apart by id");
    let (_, _, body) = csv(&app, &key, "/v1/reports/hires-by-quarter?year=2021&format=csv").await;
    assert_eq!(
        body,
        "department_name,job_name,Q1,Q2,Q3,Q4\n\"'=HYPERLINK(\"\"http://evil\"\")\",\"'+1+1\",0,1,0,0\n\
         \"'@SUM(A1)\",\"'-2\",0,2,0,0\nSales,Rep,1,0,0,0\nSales,Rep,0,1,0,0\nSales,Rep,1,0,0,0\n"
    );
    let (_, _, body) = csv(&app, &key, "/v1/reports/departments-above-mean?year=2021&format=csv").await;
    assert!(body.contains("4,\"'@SUM(A1)\",2\n"), "{body}");
}

async fn the_dashboard_cookie_is_secure_behind_a_trusted_https_proxy(b: Backend) {
    let sign_in = |app: &TestApp, key: String, proto: Option<&'static str>| {
        let mut req = app.client.post(app.url("/reports/session")).json(&json!({ "api_key": key }));
        if let Some(p) = proto {
            req = req.header("x-forwarded-proto", p);
        }
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.headers().get("set-cookie").unwrap().to_str().unwrap().to_string()
        }
    };
    // Not trusted (the default): a client could claim https itself.
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    assert!(!sign_in(&app, key.clone(), Some("https")).await.contains("Secure"));
    let app =
        spawn_app_with(b, strata_http::startup::Options { trust_forwarded_proto: true, ..Default::default() }).await;
    let key = app.tenant("acme", true).await;
    assert!(sign_in(&app, key.clone(), Some("https")).await.ends_with("; Secure"));
    assert!(sign_in(&app, key.clone(), Some("HTTPS, http")).await.ends_with("; Secure"));
    assert!(!sign_in(&app, key.clone(), Some("http")).await.contains("Secure"));
    assert!(!sign_in(&app, key.clone(), None).await.contains("Secure"), "plain HTTP must still get a usable cookie");
    let r = app.client.delete(app.url("/reports/session")).header("x-forwarded-proto", "https").send().await.unwrap();
    assert!(r.headers().get("set-cookie").unwrap().to_str().unwrap().contains("Max-Age=0; Secure"));
}

crate::on_both_backends!(
    namesakes_stay_apart_and_csv_text_cannot_run_as_a_formula,
    the_dashboard_cookie_is_secure_behind_a_trusted_https_proxy,
    both_reports_match_the_expected_csv_files_byte_for_byte,
    json_reports_have_their_documented_shape,
    quarters_split_at_midnight_utc_and_edge_cases_hold,
    bad_years_and_formats_get_a_clear_400,
    the_dashboard_session_shows_only_the_signed_in_tenants_data,
);
