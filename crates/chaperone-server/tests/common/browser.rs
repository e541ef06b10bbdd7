//! A real browser for the page tests: headless Chromium driven through WebDriver
//! (`chromedriver`), both named by the environment that `cargo xtask test` sets.

use std::time::Duration;

use serde_json::{Value, json};

/// One browser session, ended (and its driver stopped) on drop.
pub(crate) struct Browser {
    child: std::process::Child,
    base: String,
    agent: ureq::Agent,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .agent
            .delete(format!("{}/session/{}", self.base, self.session))
            .call();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Starts the driver and a browser session; `None` (the test is skipped) outside
    /// `cargo xtask test`, which sets `CHAPERONE_TEST_REQUIRE_BROWSER=1` so that it cannot
    /// be skipped there.
    pub(crate) fn start() -> Option<Browser> {
        let driver = std::env::var("CHAPERONE_TEST_CHROMEDRIVER").ok();
        let chromium = std::env::var("CHAPERONE_TEST_CHROMIUM").ok();
        let (driver, chromium) = match (driver, chromium) {
            (Some(d), Some(c)) => (d, c),
            _ if std::env::var("CHAPERONE_TEST_REQUIRE_BROWSER").as_deref() == Ok("1") => {
                panic!(
                    "CHAPERONE_TEST_REQUIRE_BROWSER=1 but CHAPERONE_TEST_CHROMEDRIVER or CHAPERONE_TEST_CHROMIUM is unset"
                )
            }
            _ => {
                eprintln!("skipping the browser test: run it through `cargo xtask test`");
                return None;
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut browser = Browser {
            child,
            base: format!("http://127.0.0.1:{port}"),
            agent,
            session: String::new(),
        };
        let ready = (0..100).any(|_| {
            let ready = browser
                .get("/status")
                .is_some_and(|v| v["value"]["ready"] == true);
            if !ready {
                std::thread::sleep(Duration::from_millis(100));
            }
            ready
        });
        assert!(ready, "chromedriver did not become ready");
        let session = browser.post(
            "/session",
            json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage"]
                }
            } } }),
        );
        browser.session = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {session}"))
            .to_owned();
        Some(browser)
    }

    fn get(&self, path: &str) -> Option<Value> {
        let mut answer = self.agent.get(format!("{}{path}", self.base)).call().ok()?;
        answer.body_mut().read_json().ok()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let mut answer = self
            .agent
            .post(format!("{}{path}", self.base))
            .send_json(&body)
            .unwrap();
        answer.body_mut().read_json().unwrap()
    }

    fn in_session(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    /// Loads `url`.
    pub(crate) fn go(&self, url: &str) {
        self.post(&self.in_session("/url"), json!({ "url": url }));
    }

    /// The address bar.
    pub(crate) fn url(&self) -> String {
        let address = self.get(&self.in_session("/url")).unwrap();
        address["value"].as_str().unwrap().to_owned()
    }

    /// How many elements match `css` now.
    pub(crate) fn count(&self, css: &str) -> usize {
        let found = self.post(
            &self.in_session("/elements"),
            json!({ "using": "css selector", "value": css }),
        );
        found["value"].as_array().map_or(0, Vec::len)
    }

    /// Waits (bounded) for an element matching `css` to be displayed; its WebDriver id.
    pub(crate) fn displayed(&self, css: &str) -> String {
        let mut last = Value::Null;
        for _ in 0..100 {
            let found = self.post(
                &self.in_session("/element"),
                json!({ "using": "css selector", "value": css }),
            );
            if let Some(id) = found["value"][ELEMENT].as_str() {
                let shown = self
                    .get(&self.in_session(&format!("/element/{id}/displayed")))
                    .unwrap_or_default();
                if shown["value"] == true {
                    return id.to_owned();
                }
                last = shown;
            } else {
                last = found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.fail(&format!("{css} never appeared ({last})"))
    }

    /// Clicks the element matching `css`, once it is displayed.
    pub(crate) fn click(&self, css: &str) {
        let id = self.displayed(css);
        self.post(&self.in_session(&format!("/element/{id}/click")), json!({}));
    }

    /// Runs `script` in the page; what it returns.
    pub(crate) fn run(&self, script: &str) -> Value {
        self.post(
            &self.in_session("/execute/sync"),
            json!({ "script": script, "args": [] }),
        )["value"]
            .clone()
    }

    /// Sets the window's size, in CSS pixels.
    pub(crate) fn resize(&self, width: u32, height: u32) {
        self.post(
            &self.in_session("/window/rect"),
            json!({ "width": width, "height": height }),
        );
    }

    /// Types `text` into the field matching `css`, once it is displayed, replacing its value.
    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let id = self.displayed(css);
        self.post(&self.in_session(&format!("/element/{id}/clear")), json!({}));
        self.post(
            &self.in_session(&format!("/element/{id}/value")),
            json!({ "text": text }),
        );
    }

    /// The visible text of the element matching `css`, once it is displayed.
    pub(crate) fn text(&self, css: &str) -> String {
        let id = self.displayed(css);
        let text = self
            .get(&self.in_session(&format!("/element/{id}/text")))
            .unwrap();
        text["value"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits (bounded) until the element matching `css` shows text containing `needle`.
    pub(crate) fn wait_text(&self, css: &str, needle: &str) -> String {
        let mut text = String::new();
        for _ in 0..100 {
            text = self.text(css);
            if text.contains(needle) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.fail(&format!("{css} shows {text:?}, never {needle:?}"))
    }

    fn fail(&self, what: &str) -> ! {
        let page = self.get(&self.in_session("/source"));
        let log = self.post(&self.in_session("/se/log"), json!({ "type": "browser" }));
        panic!("{what}; the page: {page:?}; the console: {log}");
    }
}
