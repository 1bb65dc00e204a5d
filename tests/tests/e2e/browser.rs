//! Headless browsers driven over their remote protocols, so that the dashboard tests use the
//! page as a person would: open it, type, click, and wait until it shows something. Chromium
//! speaks the DevTools protocol, Firefox WebDriver BiDi; the tests see one [`Browser`].

use std::io::BufRead as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long a page may take to show what a test waits for: generous, since CI shares a busy
/// two-core machine. Waiting ends as soon as the page shows it.
const PATIENCE: Duration = Duration::from_secs(45);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Which browser, and how its commands are addressed.
enum Protocol {
    /// Chromium: DevTools commands on the page's own socket.
    DevTools,
    /// Firefox: WebDriver BiDi commands naming the page's browsing context.
    Bidi { context: String },
}

pub(crate) struct Browser {
    process: std::process::Child,
    socket: Socket,
    protocol: Protocol,
    sent: u64,
}

/// Starts `command` and returns it with the first line of its standard error that starts
/// with `prefix` (the rest of that line), reading the rest to its end in the background.
fn start_and_wait_for(
    mut command: std::process::Command,
    prefix: &'static str,
) -> (std::process::Child, String) {
    // A group of its own: the browser's helper processes end with it (see `Drop`).
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut process = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = process.stderr.take().unwrap();
    let (found, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split_once(prefix).map(|(_, rest)| rest.trim().to_owned()) {
                let _ = found.send(rest);
            }
        }
    });
    let rest =
        listening.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("the browser never printed `{prefix}`"));
    (process, rest)
}

impl Browser {
    /// Starts Chromium with a fresh `profile`, its traffic through `proxy`, on a blank page.
    pub(crate) async fn chromium(profile: &Path, proxy: std::net::SocketAddr) -> Browser {
        let mut command = crate::api::chromium_command(profile, proxy);
        command.args(["--remote-debugging-port=0", "--window-size=1280,900", "about:blank"]);
        let (process, browser) = start_and_wait_for(command, "DevTools listening on ");
        let port = url::Url::parse(&browser).unwrap().port().unwrap();
        let targets: Value = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{port}/json/list"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page =
            targets.as_array().unwrap().iter().find(|t| t["type"] == "page").expect("no page in Chromium");
        let (socket, _) =
            tokio_tungstenite::connect_async(page["webSocketDebuggerUrl"].as_str().unwrap()).await.unwrap();
        Browser { process, socket, protocol: Protocol::DevTools, sent: 0 }
    }

    /// Starts Firefox with a fresh `profile` (background services off, traffic through
    /// `proxy`, loopback direct), on a blank page.
    pub(crate) async fn firefox(profile: &Path, proxy: std::net::SocketAddr) -> Browser {
        let firefox = std::env::var("RATCHET_FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into());
        assert!(
            Path::new(&firefox).is_file(),
            "{firefox} is missing: install Debian's firefox-esr package (cargo xtask ci does) or set RATCHET_FIREFOX"
        );
        std::fs::create_dir_all(profile).unwrap();
        std::fs::write(profile.join("user.js"), firefox_preferences(proxy)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = std::process::Command::new(firefox);
        command.args(["--headless", "--no-remote", "--profile"]).arg(profile).args([
            "--remote-debugging-port",
            &port.to_string(),
            "--width",
            "1280",
            "--height",
            "900",
            "about:blank",
        ]);
        let (process, address) = start_and_wait_for(command, "WebDriver BiDi listening on ");
        let (socket, _) = tokio_tungstenite::connect_async(format!("{address}/session")).await.unwrap();
        let mut browser =
            Browser { process, socket, protocol: Protocol::Bidi { context: String::new() }, sent: 0 };
        browser.command("session.new", json!({"capabilities": {}})).await;
        let tree = browser.command("browsingContext.getTree", json!({})).await;
        let context = tree["contexts"][0]["context"].as_str().expect("no page in Firefox").to_owned();
        browser.protocol = Protocol::Bidi { context };
        browser
    }

    /// Sends a DevTools command and returns its result.
    async fn command(&mut self, method: &str, params: Value) -> Value {
        self.sent += 1;
        let id = self.sent;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(message)).await.unwrap();
        let answer = tokio::time::timeout(PATIENCE, async {
            loop {
                let message = self.socket.next().await.expect("the browser closed its socket").unwrap();
                let Ok(text) = message.to_text() else { continue };
                let Ok(value) = serde_json::from_str::<Value>(text) else { continue };
                if value["id"] == id {
                    return value;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the browser did not answer {method}"));
        assert!(answer["error"].is_null(), "{method} failed: {answer}");
        answer["result"].clone()
    }

    /// The browsing context a BiDi command names.
    fn context(&self) -> Value {
        match &self.protocol {
            Protocol::Bidi { context } => json!(context),
            Protocol::DevTools => Value::Null,
        }
    }

    /// Opens `url` and waits until the page has loaded.
    pub(crate) async fn open(&mut self, url: &str) {
        match self.protocol {
            Protocol::DevTools => self.command("Page.navigate", json!({"url": url})).await,
            Protocol::Bidi { .. } => {
                let params = json!({"context": self.context(), "url": url, "wait": "complete"});
                self.command("browsingContext.navigate", params).await
            }
        };
        self.wait_for(&format!("{url} to load"), "document.readyState === 'complete'").await;
        // The dashboard marks which page it has drawn; other pages have no such mark.
        if let Some((_, hash)) = url.split_once('#') {
            let drawn = format!(
                "!document.getElementById('main') || (document.getElementById('main').dataset.shown === {} \
                 && !document.getElementById('main').hasAttribute('aria-busy'))",
                json!(format!("#{hash}"))
            );
            self.wait_for(&format!("{url} to be drawn"), &drawn).await;
        }
    }

    /// Like [`Browser::wait_for`], but gives up after `within`.
    pub(crate) async fn try_wait_for(&mut self, condition: &str, within: Duration) -> Option<Value> {
        let started = Instant::now();
        while started.elapsed() < within {
            let value = self
                .eval(&format!("(() => {{ try {{ return {condition}; }} catch (_) {{ return null; }} }})()"))
                .await;
            if !(value.is_null() || value == false || value == "" || value == 0) {
                return Some(value);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// The value of the JavaScript `expression` in the page (awaited when it is a promise), as
    /// JSON.
    pub(crate) async fn eval(&mut self, expression: &str) -> Value {
        // Both protocols hand back a string as it is: the value travels as its JSON text.
        let script = format!(
            "Promise.resolve(({expression})).then((value) => JSON.stringify(value === undefined ? null : value))"
        );
        let result = match self.protocol {
            Protocol::DevTools => {
                let params = json!({"expression": script, "awaitPromise": true, "returnByValue": true});
                let result = self.command("Runtime.evaluate", params).await;
                assert!(
                    result["exceptionDetails"].is_null(),
                    "`{expression}` threw: {}",
                    result["exceptionDetails"]
                );
                result["result"]["value"].clone()
            }
            Protocol::Bidi { .. } => {
                let params = json!({"expression": script, "target": {"context": self.context()},
                    "awaitPromise": true, "resultOwnership": "none"});
                let result = self.command("script.evaluate", params).await;
                assert_eq!(result["type"], "success", "`{expression}` threw: {}", result["exceptionDetails"]);
                result["result"]["value"].clone()
            }
        };
        serde_json::from_str(result.as_str().unwrap_or("null")).unwrap_or(Value::Null)
    }

    /// Waits until `condition` (JavaScript) holds in the page, and returns its value.
    pub(crate) async fn wait_for(&mut self, what: &str, condition: &str) -> Value {
        if let Some(value) = self.try_wait_for(condition, PATIENCE).await {
            return value;
        }
        let shown = self.eval("document.body ? document.body.innerText : ''").await;
        panic!("the page never showed {what}; it shows:\n{}", shown.as_str().unwrap_or_default());
    }

    /// Waits until the page's main part shows `text`.
    pub(crate) async fn wait_for_text(&mut self, text: &str) {
        let condition = format!("document.querySelector('main').innerText.includes({})", json!(text));
        self.wait_for(&format!("`{text}`"), &condition).await;
    }

    /// Whether an element matches `selector` now.
    pub(crate) async fn has(&mut self, selector: &str) -> bool {
        self.eval(&format!("document.querySelector({}) !== null", json!(selector))).await == true
    }

    /// The main part's text now.
    pub(crate) async fn text(&mut self) -> String {
        self.eval("document.querySelector('main').innerText").await.as_str().unwrap_or_default().to_owned()
    }

    /// Types `value` into the field `selector`, as a person would (with input events).
    pub(crate) async fn fill(&mut self, selector: &str, value: &str) {
        let script = format!(
            "(() => {{ const field = document.querySelector({}); field.focus(); field.value = {}; \
             field.dispatchEvent(new Event('input', {{bubbles: true}})); \
             field.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()",
            json!(selector),
            json!(value)
        );
        self.wait_for(
            &format!("the field {selector}"),
            &format!("document.querySelector({}) !== null", json!(selector)),
        )
        .await;
        self.eval(&script).await;
    }

    /// Clicks the first button (or link, or summary) whose text is `label`, once there is one.
    pub(crate) async fn click(&mut self, label: &str) {
        let find = format!(
            "[...document.querySelectorAll('button, a, summary')].find((e) => e.innerText.trim() === {} && !e.disabled)",
            json!(label)
        );
        self.wait_for(&format!("a `{label}` button"), &format!("{find} !== undefined")).await;
        self.eval(&format!("({find}).click(), true")).await;
    }

    /// Whether a button labelled `label` is on the page now.
    pub(crate) async fn has_button(&mut self, label: &str) -> bool {
        let find = format!(
            "[...document.querySelectorAll('button')].some((e) => e.innerText.trim() === {})",
            json!(label)
        );
        self.eval(&find).await == true
    }

    /// Presses a key as a keyboard would (`Tab`, `Enter`, or one character, typed into the
    /// focused field): the browser moves the focus and activates what has it.
    pub(crate) async fn press(&mut self, key: &str) {
        match self.protocol {
            Protocol::DevTools => {
                let (code, virtual_key, text) = match key {
                    "Tab" => ("Tab".to_owned(), 9, ""),
                    "Enter" => ("Enter".to_owned(), 13, "\r"),
                    _ => (String::new(), 0, key),
                };
                let mut down = json!({"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": virtual_key});
                if !text.is_empty() {
                    down["text"] = json!(text);
                }
                self.command("Input.dispatchKeyEvent", down).await;
                let up =
                    json!({"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": virtual_key});
                self.command("Input.dispatchKeyEvent", up).await;
            }
            Protocol::Bidi { .. } => {
                // WebDriver's codes for the keys that are not characters.
                let value = match key {
                    "Tab" => "\u{E004}",
                    "Enter" => "\u{E007}",
                    _ => key,
                };
                let actions = json!([{"type": "key", "id": "keyboard", "actions": [
                    {"type": "keyDown", "value": value}, {"type": "keyUp", "value": value}]}]);
                self.command("input.performActions", json!({"context": self.context(), "actions": actions}))
                    .await;
            }
        }
    }

    /// Presses Tab until `condition` (JavaScript, about `document.activeElement`) holds, at
    /// most `most` times; false when it never does.
    pub(crate) async fn tab_to(&mut self, condition: &str, most: usize) -> bool {
        for _ in 0..most {
            self.press("Tab").await;
            if self
                .eval(&format!(
                    "(() => {{ const e = document.activeElement; return Boolean({condition}); }})()"
                ))
                .await
                == true
            {
                return true;
            }
        }
        false
    }

    /// Lays the page out at `width` x `height` CSS pixels (a phone when narrow).
    pub(crate) async fn resize(&mut self, width: u32, height: u32) {
        match self.protocol {
            Protocol::DevTools => {
                let params =
                    json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 800});
                self.command("Emulation.setDeviceMetricsOverride", params).await
            }
            Protocol::Bidi { .. } => {
                let params =
                    json!({"context": self.context(), "viewport": {"width": width, "height": height}});
                self.command("browsingContext.setViewport", params).await
            }
        };
    }

    /// Saves what the page shows as a PNG file.
    pub(crate) async fn screenshot(&mut self, path: &Path) {
        use base64::Engine as _;
        let shot = match self.protocol {
            Protocol::DevTools => self.command("Page.captureScreenshot", json!({"format": "png"})).await,
            Protocol::Bidi { .. } => {
                self.command("browsingContext.captureScreenshot", json!({"context": self.context()})).await
            }
        };
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    /// Kills the browser's whole process group: a helper left behind (Chromium's network
    /// service) would keep calling its proxy's port, which a later test's proxy may reuse.
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.process.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.process.wait();
    }
}

/// Firefox's preferences for a test: every request through `proxy` except loopback, and the
/// browser's own background traffic (updates, telemetry, safe browsing, captive-portal and
/// connectivity checks, media plugins) off; Firefox still fetches its remote settings.
fn firefox_preferences(proxy: std::net::SocketAddr) -> String {
    let port = proxy.port();
    let preferences = [
        ("network.proxy.type", "1".to_owned()),
        ("network.proxy.http", "\"127.0.0.1\"".to_owned()),
        ("network.proxy.http_port", port.to_string()),
        ("network.proxy.ssl", "\"127.0.0.1\"".to_owned()),
        ("network.proxy.ssl_port", port.to_string()),
        ("network.proxy.no_proxies_on", "\"\"".to_owned()),
        ("network.proxy.allow_hijacking_localhost", "false".to_owned()),
        ("app.update.auto", "false".to_owned()),
        ("app.update.enabled", "false".to_owned()),
        ("app.normandy.enabled", "false".to_owned()),
        ("browser.safebrowsing.malware.enabled", "false".to_owned()),
        ("browser.safebrowsing.phishing.enabled", "false".to_owned()),
        ("browser.safebrowsing.downloads.enabled", "false".to_owned()),
        ("browser.shell.checkDefaultBrowser", "false".to_owned()),
        ("browser.startup.homepage_override.mstone", "\"ignore\"".to_owned()),
        ("browser.newtabpage.enabled", "false".to_owned()),
        ("datareporting.healthreport.uploadEnabled", "false".to_owned()),
        ("datareporting.policy.dataSubmissionEnabled", "false".to_owned()),
        ("toolkit.telemetry.enabled", "false".to_owned()),
        ("toolkit.telemetry.unified", "false".to_owned()),
        ("network.captive-portal-service.enabled", "false".to_owned()),
        ("network.connectivity-service.enabled", "false".to_owned()),
        ("network.dns.disablePrefetch", "true".to_owned()),
        ("network.prefetch-next", "false".to_owned()),
        ("extensions.update.enabled", "false".to_owned()),
        // Media plugins (OpenH264, Widevine) are fetched from Google's update servers.
        ("media.gmp-manager.updateEnabled", "false".to_owned()),
        ("media.gmp-gmpopenh264.enabled", "false".to_owned()),
        ("media.gmp-widevinecdm.enabled", "false".to_owned()),
        ("media.eme.enabled", "false".to_owned()),
    ];
    preferences.iter().map(|(name, value)| format!("user_pref(\"{name}\", {value});\n")).collect()
}
