//! The dashboard at `/` (docs/reliability.md H10): every page renders with real data in
//! headless Chromium without a request leaving 127.0.0.1, and each page leaves a screenshot
//! under `target/dashboard-screenshots` (kept by CI as an artifact).

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tests::api::ApiServer;

use crate::api::{BROWSER_SERVICES, chromium, recording_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_page_renders_with_data_in_chromium_without_leaving_localhost() {
    let scratch = tempfile::tempdir().unwrap();
    let server =
        ApiServer::start(&[&tests::example_task("addition")], "server:\n  rate_limit_per_second: 0\n");
    // Data for every page: a run that succeeded, one that failed its schema, a job, a schedule.
    let ok = server.post("/api/v1/tasks/addition/run", &json!({"input": {"num1": 20, "num2": 22}})).await;
    assert_eq!(ok.json["status"], "success", "{ok:?}");
    let execution = ok.json["id"].as_str().unwrap().to_owned();
    let bad = server.post("/api/v1/tasks/addition/run", &json!({"input": {"num1": "x"}})).await;
    assert_eq!(bad.status, 422, "{bad:?}");
    let job =
        server.post("/api/v1/jobs", &json!({"task": "addition", "input": {"num1": 1, "num2": 2}})).await;
    let job = job.json["id"].as_str().unwrap().to_owned();
    let schedule = json!({"name": "nightly-sum", "task": "addition", "cron": "0 3 * * *", "input": {"num1": 1, "num2": 1}});
    assert_eq!(server.post("/api/v1/schedules", &schedule).await.status, 201);
    for _ in 0..400 {
        if server.get(&format!("/api/v1/jobs/{job}")).await.json["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (proxy, asked) = recording_proxy();
    let shots = tests::workspace_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, page, expected) in [
        ("overview", "/#/", vec!["Queue", "Recent failures", "runs,"]),
        ("jobs", "/#/jobs", vec![&job[..8], "completed"]),
        ("job", &format!("/#/jobs/{job}")[..], vec!["Attempts", "completed"]),
        ("executions", "/#/executions", vec![&execution[..8], "success"]),
        ("execution", &format!("/#/executions/{execution}")[..], vec!["\"sum\": 42", "HTTP calls"]),
        ("tasks", "/#/tasks", vec!["addition"]),
        ("task", "/#/tasks/addition", vec!["Input schema", "num1"]),
        ("schedules", "/#/schedules", vec!["nightly-sum", "0 3 * * *"]),
        ("plugins", "/#/plugins", vec!["builtin:rest", "builtin:dashboard"]),
    ] {
        let profile = scratch.path().join(format!("profile-{name}"));
        let output = chromium(&server.url(page), &profile, proxy, &["--dump-dom"]);
        let dom = String::from_utf8_lossy(&output.stdout);
        for text in &expected {
            assert!(dom.contains(text), "{page} does not show `{text}`:\n{dom}");
        }
        let shot = shots.join(format!("{name}.png"));
        let taken = chromium(
            &server.url(page),
            &profile,
            proxy,
            &["--window-size=1280,900", &format!("--screenshot={}", shot.display())],
        );
        assert!(shot.is_file(), "no screenshot of {page}: {}", String::from_utf8_lossy(&taken.stderr));
    }
    let asked = asked.lock().unwrap().clone();
    let outside: Vec<&String> =
        asked.iter().filter(|host| !BROWSER_SERVICES.contains(&host.as_str())).collect();
    assert!(outside.is_empty(), "the dashboard reached outside 127.0.0.1: {outside:?}");
    assert!(Path::new(&shots).join("overview.png").is_file());
}
