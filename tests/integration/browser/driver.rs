//! The reusable browser helper: chromedriver on a free port, a headless Chromium session
//! (fantoccini over plain HTTP), and synchronous wrappers for what page tests need —
//! navigation, waiting on selectors and conditions, screenshots, keyboard order, the colour
//! scheme. It owns a small tokio runtime, so tests stay plain `#[test]` functions like the
//! rest of the suite: never call it from a `#[tokio::test]`.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::Method;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::support::{PATIENCE, wait_until};

/// The variable naming chromedriver; unset, browser tests are skipped.
const DRIVER_VAR: &str = "ORCHESTRATOR_TEST_CHROMEDRIVER";
/// Optional: the Chromium binary (default: `/usr/bin/chromium`, Debian's).
const CHROMIUM_VAR: &str = "ORCHESTRATOR_TEST_CHROMIUM";

/// The laptop screen the dashboard must be readable on.
pub const WINDOW: (u32, u32) = (1366, 768);

/// Which `prefers-color-scheme` the page sees.
#[derive(Clone, Copy, Debug)]
pub enum Scheme {
    Light,
    Dark,
}

/// A headless Chromium session; closing it and stopping chromedriver on drop.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless 1366×768 session; `None`
    /// (with a note on stderr) when `ORCHESTRATOR_TEST_CHROMEDRIVER` is unset.
    pub fn start() -> Option<Self> {
        let Ok(driver_path) = std::env::var(DRIVER_VAR) else {
            // Straight to stderr: the test harness captures `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "note: browser test skipped: set {DRIVER_VAR}=/usr/bin/chromedriver \
                 (.ci/run installs chromium and chromium-driver and sets it)"
            );
            return None;
        };
        let port = free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_path}: {e}"));
        let mut browser = Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: None,
            driver,
        };
        let addr = format!("127.0.0.1:{port}");
        wait_until("chromedriver listens", || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        let client = browser.rt.block_on(async {
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities())
                .connect(&format!("http://{addr}"))
                .await
        });
        browser.client = Some(client.unwrap_or_else(|e| panic!("no browser session: {e}")));
        Some(browser)
    }

    /// The WebDriver client, for what this helper does not wrap (use with [`Self::block_on`]).
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("session is open until drop")
    }

    /// Runs a future on the browser's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// Opens a URL and waits until the document has loaded.
    pub fn goto(&self, url: &str) {
        self.block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
        self.wait_js("the page loads", "document.readyState === 'complete'");
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.block_on(self.client().current_url())
            .unwrap()
            .to_string()
    }

    /// Waits (up to [`PATIENCE`]) until an element matches `css`, and returns it.
    pub fn wait_for(&self, css: &str) -> Element {
        self.block_on(
            self.client()
                .wait()
                .at_most(PATIENCE)
                .every(Duration::from_millis(50))
                .for_element(Locator::Css(css)),
        )
        .unwrap_or_else(|e| panic!("no element matches {css:?} within {PATIENCE:?}: {e}"))
    }

    /// Waits (up to [`PATIENCE`]) until the JavaScript expression `condition` is truthy.
    pub fn wait_js(&self, what: &str, condition: &str) {
        let script = format!("return Boolean({condition});");
        let start = Instant::now();
        while self.js(&script, vec![]) != Value::Bool(true) {
            assert!(start.elapsed() < PATIENCE, "timed out waiting for: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a script (its `return` value comes back as JSON; `arguments[i]` are `args`).
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.block_on(self.client().execute(script, args))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// All elements matching `css` now (possibly none).
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.block_on(self.client().find_all(Locator::Css(css)))
            .unwrap()
    }

    /// The visible text of the first element matching `css` (waiting for it).
    pub fn text(&self, css: &str) -> String {
        let element = self.wait_for(css);
        self.block_on(element.text()).unwrap()
    }

    /// Clicks the first element matching `css` (waiting for it).
    pub fn click(&self, css: &str) {
        let element = self.wait_for(css);
        self.block_on(element.click())
            .unwrap_or_else(|e| panic!("cannot click {css:?}: {e}"));
    }

    /// Replaces the value of the field matching `css` with `text`.
    #[allow(dead_code)] // for the page tests (trigger form, search box)
    pub fn fill(&self, css: &str, text: &str) {
        let element = self.wait_for(css);
        self.block_on(async {
            element.clear().await?;
            element.send_keys(text).await
        })
        .unwrap_or_else(|e| panic!("cannot type into {css:?}: {e}"));
    }

    /// A computed CSS property of the first element matching `css`.
    pub fn computed_style(&self, css: &str, property: &str) -> String {
        self.wait_for(css);
        let value = self.js(
            "return getComputedStyle(document.querySelector(arguments[0]))\
             .getPropertyValue(arguments[1]);",
            vec![json!(css), json!(property)],
        );
        value.as_str().unwrap_or_default().trim().to_string()
    }

    /// Saves a PNG of the window as `<target>/screenshots/<name>.png` and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.block_on(self.client().screenshot()).unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Like [`Self::screenshot`], but of the whole page: the window grows to the page's
    /// height for the shot, then returns to [`WINDOW`].
    pub fn screenshot_full(&self, name: &str) -> PathBuf {
        let (w, h) = WINDOW;
        let page = self.js("return document.documentElement.scrollHeight;", vec![]);
        let viewport = self.js("return window.innerHeight;", vec![]);
        let chrome = h.saturating_sub(viewport.as_u64().unwrap_or(u64::from(h)) as u32);
        let tall = (page.as_u64().unwrap_or(u64::from(h)) as u32 + chrome).max(h);
        self.block_on(self.client().set_window_size(w, tall))
            .unwrap();
        let path = self.screenshot(name);
        self.block_on(self.client().set_window_size(w, h)).unwrap();
        path
    }

    /// Presses Tab once.
    pub fn press_tab(&self) {
        let tab = KeyActions::new("keyboard".into())
            .then(KeyAction::Down {
                value: Key::Tab.into(),
            })
            .then(KeyAction::Up {
                value: Key::Tab.into(),
            });
        self.block_on(self.client().perform_actions(tab)).unwrap();
    }

    /// Presses Tab `n` times from where the focus is, describing the focused element after
    /// each press (see [`Self::focused`]).
    pub fn tab_order(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                self.press_tab();
                self.focused()
            })
            .collect()
    }

    /// The focused element as `tag#id.class href=/x "label"`: its tag, id, classes, `href`
    /// for links, and its label (aria-label, text, value or title; 60 characters at most);
    /// `body` when nothing has the focus.
    pub fn focused(&self) -> String {
        self.js(DESCRIBE_FOCUS, vec![])
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Moves the focus back to the start of the document, as after a fresh load.
    pub fn reset_focus(&self) {
        self.js(
            "document.activeElement && document.activeElement.blur(); \
             window.getSelection().removeAllRanges(); window.scrollTo(0, 0);",
            vec![],
        );
    }

    /// Emulates `prefers-color-scheme` (over the DevTools protocol) for the current page
    /// and the ones to come.
    pub fn set_scheme(&self, scheme: Scheme) {
        let value = match scheme {
            Scheme::Light => "light",
            Scheme::Dark => "dark",
        };
        let params = json!({"features": [{"name": "prefers-color-scheme", "value": value}]});
        self.cdp("Emulation.setEmulatedMedia", params);
    }

    /// Sends a DevTools protocol command through chromedriver.
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        let command = Cdp {
            cmd: cmd.to_string(),
            params,
        };
        self.block_on(self.client().issue_cmd(command))
            .unwrap_or_else(|e| panic!("DevTools command {cmd} failed: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Bounded: a wedged browser must not hang the suite; chromedriver's kill follows.
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(PATIENCE, client.close()).await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The session chromedriver opens: headless Chromium, quiet, at the laptop size.
fn capabilities() -> Capabilities {
    let binary = std::env::var(CHROMIUM_VAR).unwrap_or_else(|_| "/usr/bin/chromium".into());
    let (w, h) = WINDOW;
    let options = json!({
        "binary": binary,
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--hide-scrollbars",
            format!("--window-size={w},{h}"),
        ],
    });
    let caps = json!({"browserName": "chrome", "goog:chromeOptions": options});
    caps.as_object().cloned().unwrap()
}

/// `<target>/screenshots`, found from the test binary (`<target>/debug/deps/…`), so it
/// follows `CARGO_TARGET_DIR`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary lies in <target>/<profile>/deps");
    target.join("screenshots")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const DESCRIBE_FOCUS: &str = r##"
const e = document.activeElement;
if (!e || e === document.body || e === document.documentElement) return "body";
let d = e.tagName.toLowerCase();
if (e.id) d += "#" + e.id;
for (const c of e.classList) d += "." + c;
const href = e.getAttribute("href");
if (href) d += " href=" + href;
const label = (e.getAttribute("aria-label") || e.innerText || e.value || e.getAttribute("title") || "")
  .trim().replace(/\s+/g, " ").slice(0, 60);
if (label) d += ' "' + label + '"';
return d;
"##;

/// chromedriver's vendor endpoint for DevTools protocol commands.
#[derive(Debug)]
struct Cdp {
    cmd: String,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (Method::POST, Some(body.to_string()))
    }
}
