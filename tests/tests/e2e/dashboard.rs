//! The dashboard at `/` (docs/reliability.md H10, H11), used in headless Chromium and Firefox
//! as a person would:
//! every page renders with real data without a request leaving 127.0.0.1 (each leaves a
//! screenshot under `target/dashboard-screenshots`, kept by CI), and what the buttons and
//! forms do, key by key.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tests::api::{Answer, ApiServer};

use crate::api::{BROWSER_SERVICES, recording_proxy, sleepy};
use crate::browser::Browser;

/// How the dashboard shows an id in a table: its last 8 characters (the first are its time).
fn tail(id: &str) -> &str {
    &id[id.len() - 8..]
}

fn screenshots() -> std::path::PathBuf {
    let shots = tests::workspace_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    shots
}

/// Every host the browser asked the proxy for is one of its maker's own services (which the
/// page cannot reach: its Content-Security-Policy allows the server only), none the dashboard's.
fn assert_stayed_local(kind: Kind, asked: &std::sync::Mutex<Vec<String>>) {
    let asked = asked.lock().unwrap().clone();
    let browsers_own = |host: &str| match kind {
        Kind::Chromium => BROWSER_SERVICES.contains(&host),
        // Firefox fetches its remote settings whatever the profile says, and its media
        // plugins' updates come from Google's update server.
        Kind::Firefox => {
            host == "update.googleapis.com"
                || [".mozilla.com", ".mozilla.net", ".mozilla.org", ".firefox.com"]
                    .iter()
                    .any(|domain| host.ends_with(domain))
        }
    };
    let outside: Vec<&String> = asked.iter().filter(|host| !browsers_own(host)).collect();
    assert!(outside.is_empty(), "the dashboard reached outside 127.0.0.1: {outside:?}");
}

/// The browsers the dashboard is checked in.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Chromium,
    Firefox,
}

async fn start(kind: Kind, profile: &Path, proxy: std::net::SocketAddr) -> Browser {
    match kind {
        Kind::Chromium => Browser::chromium(profile, proxy).await,
        Kind::Firefox => Browser::firefox(profile, proxy).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_page_renders_with_data_in_chromium_without_leaving_localhost() {
    every_page_renders(Kind::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_page_renders_with_data_in_firefox_without_leaving_localhost() {
    every_page_renders(Kind::Firefox).await;
}

async fn every_page_renders(kind: Kind) {
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
    wait_for_job(&server, None, &job, "completed").await;

    let (proxy, asked) = recording_proxy();
    let shots = screenshots();
    let mut browser = start(kind, &scratch.path().join("profile"), proxy).await;
    let prefix = format!("{kind:?}").to_lowercase();
    for (name, page, expected) in [
        ("overview", "/#/", vec!["Queue", "Recent failures", "runs,"]),
        ("jobs", "/#/jobs", vec![tail(&job), "completed"]),
        ("job", &format!("/#/jobs/{job}")[..], vec!["Attempts", "completed"]),
        ("executions", "/#/executions", vec![tail(&execution), "success"]),
        ("execution", &format!("/#/executions/{execution}")[..], vec!["\"sum\": 42", "HTTP calls"]),
        ("tasks", "/#/tasks", vec!["addition"]),
        ("task", "/#/tasks/addition", vec!["Input schema", "num1", "Versions", "serving"]),
        ("schedules", "/#/schedules", vec!["nightly-sum", "0 3 * * *", "Add a schedule"]),
        ("plugins", "/#/plugins", vec!["builtin:rest", "builtin:dashboard"]),
    ] {
        browser.open("about:blank").await;
        browser.open(&server.url(page)).await;
        for text in &expected {
            browser.wait_for_text(text).await;
        }
        let header = browser.eval("document.querySelector('header').innerText").await;
        assert!(!header.as_str().unwrap().contains("null"), "{page}: {header}");
        browser.screenshot(&shots.join(format!("{prefix}-{name}.png"))).await;
    }

    lists_filter_by_time(&mut browser, &server, &job, &execution).await;
    changes_are_pushed(&mut browser, &server).await;
    keyboard_alone_reaches_and_runs_everything(&mut browser, &server, &job).await;

    // On a phone the page fits the screen's width (wide tables scroll inside their box).
    browser.resize(390, 844).await;
    for (name, page) in [("phone-overview", "/#/"), ("phone-jobs", "/#/jobs")] {
        browser.open("about:blank").await;
        browser.open(&server.url(page)).await;
        browser.wait_for_text("completed").await;
        let fits = browser.eval("document.documentElement.scrollWidth <= window.innerWidth").await;
        let wide = browser
            .eval(
                "[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)\
                 .slice(0, 5).map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}px`)",
            )
            .await;
        assert_eq!(fits, true, "{page} is wider than a phone's screen: {wide}");
        browser.screenshot(&shots.join(format!("{prefix}-{name}.png"))).await;
    }
    assert_stayed_local(kind, &asked);
    assert!(Path::new(&shots).join(format!("{prefix}-overview.png")).is_file());
}

/// The job and execution lists filter by time: a choice of the last 15 minutes to 7 days,
/// and a time before which (a date and time field, kept in the address as RFC 3339).
async fn lists_filter_by_time(browser: &mut Browser, server: &ApiServer, job: &str, execution: &str) {
    browser.open(&server.url("/#/jobs")).await;
    browser.fill("#filter-since", "15m").await;
    browser.wait_for("the since filter in the address", "location.hash.includes('since=15m')").await;
    browser.wait_for_text(tail(job)).await;
    assert_eq!(browser.eval("document.querySelector('#filter-since').value").await, "15m");
    let long_ago = "2000-01-01T00:00:00.000Z";
    for (page, shown, none) in
        [("jobs", job, "No jobs match."), ("executions", execution, "No executions match.")]
    {
        browser.open(&server.url(&format!("/#/{page}?since=1h"))).await;
        browser.wait_for_text(tail(shown)).await;
        browser.open(&server.url(&format!("/#/{page}?until={long_ago}"))).await;
        browser.wait_for_text(none).await;
        // The field shows the bound in local time; submitting keeps the same instant.
        let field = browser.eval("document.querySelector('#filter-until').value").await;
        assert!(
            field.as_str().is_some_and(|v| v.starts_with("1999-12-31T") || v.starts_with("2000-01-01T")),
            "{field}"
        );
        browser.click("Filter").await;
        browser
            .wait_for(
                "the same bound",
                &format!("location.hash.endsWith('until={}')", long_ago.replace(':', "%3A")),
            )
            .await;
    }
}

/// Job changes reach an open page over `/api/v1/events`: a job enqueued by someone else, and
/// its end, show without waiting for the fallback refresh (every 30 s while the feed is up).
async fn changes_are_pushed(browser: &mut Browser, server: &ApiServer) {
    browser.open(&server.url("/#/jobs")).await;
    browser.wait_for("the job feed", "document.getElementById('status').dataset.feed === 'live'").await;
    let added =
        server.post("/api/v1/jobs", &json!({"task": "addition", "input": {"num1": 4, "num2": 4}})).await;
    let added = added.json["id"].as_str().unwrap().to_owned();
    let row = format!(
        "[...document.querySelectorAll('main tr')].find((r) => r.querySelector('a[href=\"#/jobs/{added}\"]') && r.innerText.includes('completed'))"
    );
    browser.wait_for("the new job, completed", &format!("{row} !== undefined")).await;
    assert_eq!(browser.eval("document.getElementById('main').dataset.drawnBy").await, "feed");
}

/// The keyboard alone moves through the dashboard: Tab reaches the sections (with a visible
/// focus ring), Enter follows links, and the run form is filled and sent from the keys.
async fn keyboard_alone_reaches_and_runs_everything(browser: &mut Browser, server: &ApiServer, job: &str) {
    browser.open(&server.url("/#/")).await;
    assert!(
        browser.tab_to("e.getAttribute('href') === '#/jobs'", 20).await,
        "Tab never reached the Jobs link"
    );
    // The focused link's ring; where the browser does not count the headless window as focused
    // (Firefox: `:focus` then matches nothing), the rule that draws it.
    let ring = browser
        .eval(
            "document.hasFocus() ? getComputedStyle(document.activeElement).outlineStyle \
             : [...document.styleSheets].flatMap((s) => [...s.cssRules]).some((r) => (r.selectorText || '').includes('a:focus-visible') \
               && !['', 'none'].includes(r.style.outlineStyle)) ? 'a:focus-visible rule' : 'none'",
        )
        .await;
    assert_ne!(ring, "none", "the focused link shows no focus ring");
    browser.press("Enter").await;
    browser.wait_for("the jobs page", "document.getElementById('main').dataset.shown === '#/jobs'").await;
    browser.wait_for_text(tail(job)).await;
    let to_job = format!("e.getAttribute('href') === '#/jobs/{job}'");
    assert!(browser.tab_to(&to_job, 60).await, "Tab never reached the job's link");
    browser.press("Enter").await;
    browser
        .wait_for(
            "the job's page",
            &format!("document.getElementById('main').dataset.shown === '#/jobs/{job}'"),
        )
        .await;
    browser.wait_for_text("Attempts").await;

    browser.open(&server.url("/#/tasks/addition")).await;
    assert!(browser.tab_to("e.id === 'field-num1'", 40).await, "Tab never reached the form");
    for key in ["2", "0"] {
        browser.press(key).await;
    }
    assert!(browser.tab_to("e.id === 'field-num2'", 3).await, "Tab did not move to the next field");
    for key in ["2", "2", "Enter"] {
        browser.press(key).await;
    }
    browser
        .wait_for(
            "the run's output",
            "document.querySelector('#run-output').innerText.includes('\"sum\": 42')",
        )
        .await;
    assert!(
        browser.tab_to("e.tagName === 'BUTTON' && e.innerText.trim() === 'Run'", 5).await,
        "Tab never reached Run"
    );
}

/// With an auth plugin: the dashboard asks for a key and shows each role only what it may do.
/// A runner runs a task from the form generated from its input schema (output shown, violations
/// at their fields), follows a running job's log lines live, cancels it and retries it; a
/// viewer sees no action and is refused when it calls one anyway; an admin adds a schedule from
/// the form (with the cron expression's next fire times) and pauses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_acts_by_role_runs_tasks_from_their_schema_and_follows_live_logs() {
    acts_by_role(Kind::Chromium).await;
}

/// The same in Firefox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_acts_by_role_in_firefox() {
    acts_by_role(Kind::Firefox).await;
}

async fn acts_by_role(kind: Kind) {
    let scratch = tempfile::tempdir().unwrap();
    let keys: String = ["viewer", "runner", "admin"]
        .iter()
        .map(|role| {
            format!(
                "        - {{id: {role}-user, sha256: {}, role: {role}}}\n",
                tests::sha256(&format!("{role}-key"))
            )
        })
        .collect();
    let config = format!(
        "workers:\n  count: 2\nqueue:\n  lease_secs: 3\nserver:\n  rate_limit_per_second: 0\nplugins:\n  - name: keys\n    kind: auth\n    source: {}\n    config:\n      keys:\n{keys}",
        tests::component("api-key-auth").display()
    );
    let sleepy = sleepy(scratch.path());
    let server = ApiServer::start(&[&tests::example_task("addition"), &sleepy], &config);
    let (proxy, asked) = recording_proxy();
    let shots = screenshots();
    let mut browser = start(kind, &scratch.path().join("profile"), proxy).await;
    let prefix = format!("{kind:?}").to_lowercase();

    // Asked for a key: a wrong one is turned away, saying why; then a runner signs in.
    browser.open(&server.url("/#/")).await;
    browser.fill("#api-key", "wrong-key").await;
    browser.click("Use this key").await;
    let refused = browser.wait_for("the refusal", "document.querySelector('main .error').innerText").await;
    assert!(refused.as_str().unwrap().contains("unauthenticated"), "{refused}");
    sign_in(&mut browser, "runner").await;
    browser.wait_for_text("Queue").await;
    // The job feed's WebSocket carries the key in its first message (a browser cannot give a
    // WebSocket headers), and the server takes it.
    browser.wait_for("the job feed", "document.getElementById('status').dataset.feed === 'live'").await;

    // The run form is generated from the input schema; the output shows, and so do violations.
    browser.open(&server.url("/#/tasks/addition")).await;
    browser.fill("#field-num1", "20").await;
    browser.fill("#field-num2", "22").await;
    browser.click("Run").await;
    browser
        .wait_for(
            "the run's output",
            "document.querySelector('#run-output').innerText.includes('\"sum\": 42')",
        )
        .await;
    browser.screenshot(&shots.join(format!("{prefix}-task-run.png"))).await;
    browser.fill("#field-num1", "").await;
    browser.click("Run").await;
    let violation = browser
        .wait_for("the violation at its field", "document.querySelector('#field-num1-error').innerText")
        .await;
    assert!(violation.as_str().unwrap().contains("num1"), "{violation}");
    assert_eq!(browser.eval("document.querySelector('#field-num2-error').innerText").await, "");

    // The task's test cases are listed; one's input goes into the form, ready to run. A case
    // whose input the fields cannot hold (a string for a number) goes in as JSON, unchanged.
    let use_case = |case: &str| {
        format!(
            "[...document.querySelectorAll('tr')].find((r) => r.innerText.includes('{case}'))\
             .querySelector('button').click(), true"
        )
    };
    browser.wait_for_text("rejects-string-input").await;
    browser.eval(&use_case("positive")).await;
    assert_eq!(browser.eval("document.querySelector('#field-num1').value").await, "5");
    assert_eq!(browser.eval("document.querySelector('#run-as-json').checked").await, false);
    browser.click("Run").await;
    browser
        .wait_for(
            "the case's output",
            "document.querySelector('#run-output').innerText.includes('\"sum\": 15')",
        )
        .await;
    browser.eval(&use_case("rejects-string-input")).await;
    assert_eq!(browser.eval("document.querySelector('#run-as-json').checked").await, true);
    assert_eq!(
        browser.eval("JSON.parse(document.querySelector('#run-input').value)").await,
        json!({"num1": "5", "num2": 10})
    );
    browser.click("Run").await;
    browser
        .wait_for(
            "the case's violation",
            "document.querySelector('#run-result .error').innerText.includes('/num1')",
        )
        .await;

    // A running job's log lines appear while it runs; Cancel stops it, Retry queues it again.
    let job = send(
        &server,
        "runner",
        "POST",
        "/api/v1/jobs",
        json!({"task": "sleepy", "input": {"n": 1, "ms": 60000, "ticks": 120}}),
    )
    .await;
    let job = job.json["id"].as_str().unwrap().to_owned();
    wait_for_job(&server, Some("runner"), &job, "running").await;
    browser.open(&server.url(&format!("/#/jobs/{job}"))).await;
    browser
        .wait_for("a live log line", "document.querySelector('#live-log').innerText.includes('tick')")
        .await;
    browser.screenshot(&shots.join(format!("{prefix}-job-live-log.png"))).await;
    browser.click("Cancel").await;
    wait_for_job(&server, Some("runner"), &job, "cancelled").await;
    browser.click("Retry").await;
    // A retry is a new job with the same task and input: the page moves to it.
    let moved = format!(
        "location.hash.startsWith('#/jobs/') && !location.hash.includes('{job}') && location.hash.slice(7)"
    );
    let retried = browser.wait_for("the retried job's page", &moved).await;
    let retried = retried.as_str().unwrap().to_owned();
    let again = send(&server, "runner", "GET", &format!("/api/v1/jobs/{retried}"), Value::Null).await;
    assert_eq!(again.json["input"], json!({"n": 1, "ms": 60000, "ticks": 120}), "{again:?}");
    assert!(["queued", "running"].contains(&again.json["status"].as_str().unwrap()), "{again:?}");
    send(&server, "runner", "POST", &format!("/api/v1/jobs/{retried}/cancel"), json!({})).await;
    wait_for_job(&server, Some("runner"), &retried, "cancelled").await;

    // A viewer sees no action, and is refused when it calls one anyway.
    browser.click("Sign out").await;
    sign_in(&mut browser, "viewer").await;
    browser.open(&server.url(&format!("/#/jobs/{job}"))).await;
    browser.wait_for_text("Attempts").await;
    browser.wait_for_text("cancelled").await;
    assert!(
        !browser.has_button("Retry").await && !browser.has_button("Cancel").await,
        "{}",
        browser.text().await
    );
    browser.open(&server.url("/#/tasks/addition")).await;
    browser.wait_for_text("Input schema").await;
    assert!(!browser.has("#run-form").await, "a viewer is offered the run form");
    send(
        &server,
        "admin",
        "POST",
        "/api/v1/schedules",
        json!({"name": "hourly", "task": "addition", "cron": "0 * * * *", "input": {"num1": 1, "num2": 1}}),
    )
    .await;
    browser.open(&server.url("/#/schedules")).await;
    browser.wait_for_text("hourly").await;
    assert!(
        !browser.has("#add-schedule").await && !browser.has_button("Pause").await,
        "{}",
        browser.text().await
    );
    let refused = browser
        .eval(&format!(
            "fetch('/api/v1/jobs/{job}/retry', {{method: 'POST', headers: {{authorization: 'Bearer ' + sessionStorage.getItem('ratchet.key')}}}}).then((r) => r.status)"
        ))
        .await;
    assert_eq!(refused, 403);
    assert_eq!(
        send(&server, "viewer", "GET", &format!("/api/v1/jobs/{job}"), Value::Null).await.json["status"],
        "cancelled"
    );

    // An admin adds a schedule from the form, seeing when it would fire, then pauses it.
    browser.click("Sign out").await;
    sign_in(&mut browser, "admin").await;
    browser.open(&server.url("/#/schedules")).await;
    // The page refreshes every 5 s until the form is opened; a refresh that lands between the
    // click and the typing closes the form again, so open it until it stays open.
    let mut opened = false;
    for _ in 0..5 {
        browser.click("Add a schedule").await;
        browser.fill("#schedule-cron", "61 * * * *").await;
        let error = "document.querySelector('#add-schedule[open] #cron-preview .error').innerText";
        if browser.try_wait_for(error, Duration::from_secs(10)).await.is_some() {
            opened = true;
            break;
        }
    }
    assert!(opened, "the cron expression's error never showed: {}", browser.text().await);
    browser.fill("#schedule-cron", "*/15 * * * *").await;
    browser.wait_for("five fire times", "document.querySelectorAll('#cron-preview li').length === 5").await;
    browser.fill("#schedule-name", "quarter-hourly").await;
    browser.fill("#schedule-task", "addition").await;
    browser.fill("#schedule-input", r#"{"num1": 2, "num2": 3}"#).await;
    browser.screenshot(&shots.join(format!("{prefix}-schedule-form.png"))).await;
    browser.click("Add the schedule").await;
    browser.wait_for_text("quarter-hourly").await;
    let added = send(&server, "admin", "GET", "/api/v1/schedules/quarter-hourly", Value::Null).await;
    assert_eq!(added.json["cron"], "*/15 * * * *", "{added:?}");
    assert_eq!(added.json["input"], json!({"num1": 2, "num2": 3}));
    browser.eval("document.querySelector('#add-schedule').open = false").await;
    let pause = "[...document.querySelectorAll('tr')].find((r) => r.innerText.includes('quarter-hourly')).querySelector('button').click(), true";
    browser.eval(pause).await;
    for _ in 0..600 {
        if send(&server, "admin", "GET", "/api/v1/schedules/quarter-hourly", Value::Null).await.json["enabled"]
            == false
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        send(&server, "admin", "GET", "/api/v1/schedules/quarter-hourly", Value::Null).await.json["enabled"],
        false
    );
    assert_stayed_local(kind, &asked);
}

/// Types `role`'s key into the sign-in form and waits until the header names the caller.
async fn sign_in(browser: &mut Browser, role: &str) {
    browser.fill("#api-key", &format!("{role}-key")).await;
    browser.click("Use this key").await;
    let signed_in = format!("document.querySelector('#caller').innerText.includes('{role}-user ({role})')");
    browser.wait_for(&format!("{role} signed in"), &signed_in).await;
}

/// A REST call with `role`'s key.
async fn send(server: &ApiServer, role: &str, method: &str, path: &str, body: Value) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request =
        server.client.request(method, server.url(path)).header("x-api-key", format!("{role}-key"));
    if !body.is_null() {
        request = request.json(&body);
    }
    server.send(request).await
}

async fn wait_for_job(server: &ApiServer, role: Option<&str>, id: &str, status: &str) -> Value {
    for _ in 0..600 {
        let job = match role {
            Some(role) => send(server, role, "GET", &format!("/api/v1/jobs/{id}"), Value::Null).await,
            None => server.get(&format!("/api/v1/jobs/{id}")).await,
        };
        if job.json["status"] == status {
            return job.json;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} never became {status}");
}
