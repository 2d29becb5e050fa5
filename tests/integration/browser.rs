//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! through fantoccini), against a real `serve` started by the test.
//!
//! [`Browser`] is the reusable helper: a synchronous API (it owns a small tokio runtime),
//! so tests stay plain `#[test]` functions like the rest of the suite — never call it from
//! a `#[tokio::test]`. Without `ORCHESTRATOR_TEST_CHROMEDRIVER` (which `.ci/run` sets after
//! installing Debian's `chromium` and `chromium-driver`) the browser tests print a note and
//! pass; with it, any failure fails. Screenshots go to `<target>/screenshots/`.

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

use crate::support::{Env, PATIENCE, wait_until};

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

// ---------------------------------------------------------------------------------------

const HELLO: &str = "dag_id: hello
description: Says hello every morning
tags: [demo, example]
schedule: '0 3 * * *'
timezone: Europe/Paris
tasks:
  greet: {type: shell, command: 'echo hello'}
  done: {type: noop, depends_on: greet}
";

const FLAKY: &str = "dag_id: flaky
description: Fails on purpose
tags: [demo]
tasks:
  try: {type: shell, command: 'exit 3'}
";

/// Waits until `dag` has runs and all of them have finished (a scheduled DAG may have
/// created one of its own besides the triggered one).
fn wait_finished(env: &Env, dag: &str) {
    wait_until(&format!("the runs of {dag} finish"), || {
        let runs = env.runs(dag);
        !runs.is_empty()
            && runs
                .iter()
                .all(|r| matches!(r["state"].as_str(), Some("success" | "failed")))
    });
}

#[test]
fn the_dag_list_is_styled_in_both_schemes_and_reachable_by_keyboard() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let mut env = Env::new();
    env.dag("hello", HELLO);
    env.dag("flaky", FLAKY);
    env.dag("broken", "dag_id: broken\ntasks:\n  a: {type: nope}\n");
    let server = env.serve();
    env.ok(&["trigger", "hello"]);
    env.ok(&["trigger", "flaky"]);
    wait_finished(&env, "hello");
    wait_finished(&env, "flaky");
    env.ok(&["pause", "flaky"]);

    browser.set_scheme(Scheme::Light);
    browser.goto(&format!("http://{}/", server.addr));
    browser.wait_for("table.table");
    // The stylesheet is applied: the top bar is a coloured flex row, not a default block.
    assert_eq!(browser.computed_style("header.topbar", "display"), "flex");
    let light_bar = browser.computed_style("header.topbar", "background-color");
    assert_ne!(light_bar, "rgba(0, 0, 0, 0)");
    let light_page = browser.computed_style("body", "background-color");
    assert_eq!(light_page, "rgb(255, 255, 255)");
    assert!(!browser.find_all(".mark.state-success").is_empty());
    assert_eq!(browser.find_all(".mark.state-failed").len(), 1);
    assert!(browser.text(".errorbox").contains("broken"));
    browser.screenshot("dags-light");

    browser.click(".nav a");
    assert_eq!(browser.url(), format!("http://{}/", server.addr));
    browser.reset_focus();
    // Tab order: the skip link first, then the product name and the main navigation.
    let order = browser.tab_order(3);
    assert!(order[0].contains("\"Skip to content\""), "{order:?}");
    assert!(order[1].starts_with("a.brand href=/"), "{order:?}");
    assert!(order[2].contains("\"DAGs\""), "{order:?}");
    browser.screenshot("dags-focus");
    let ring = browser.computed_style(".nav a:focus-visible", "outline-style");
    assert_eq!(ring, "solid", "the focused link shows a ring");

    browser.set_scheme(Scheme::Dark);
    browser.goto(&format!("http://{}/", server.addr));
    let dark_page = browser.computed_style("body", "background-color");
    assert_ne!(
        dark_page, light_page,
        "the dark scheme follows prefers-color-scheme"
    );
    browser.screenshot("dags-dark");
}

/// Every component of the stylesheet on one page (swapped into a served page's `<main>`).
const STYLE_SAMPLE: &str = include_str!("style_sample.html");

/// Elements whose text is checked for WCAG AA contrast (4.5:1) against what lies behind.
const TEXT: &str = ".badge, .btn, a, .muted, .tag, .flash, .errorbox, .empty, dt, dd, th, td, \
    .log-ts, .lvl-info, .lvl-warn, .lvl-error, .lvl-debug, .page-title, .subtitle, p, .desc, \
    code, .gantt-tick, .gantt-label, .footer span, .live, summary, textarea, input, label, .hint";

/// The texts among `selector` with a contrast under 4.5:1, as `description ratio`.
const LOW_CONTRAST: &str = r##"
function rgba(c) {
  const v = (c.match(/[\d.]+/g) || ["0", "0", "0", "0"]).map(Number);
  return { r: v[0], g: v[1], b: v[2], a: v.length > 3 ? v[3] : 1 };
}
function behind(e) {
  const layers = [];
  for (; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c.a > 0) layers.push(c);
    if (c.a >= 1) break;
  }
  let out = { r: 255, g: 255, b: 255 };
  if (layers.length && layers[layers.length - 1].a >= 1) out = layers.pop();
  for (const l of layers.reverse()) {
    out = { r: l.r * l.a + out.r * (1 - l.a), g: l.g * l.a + out.g * (1 - l.a), b: l.b * l.a + out.b * (1 - l.a) };
  }
  return out;
}
function lum(c) {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
}
const low = [];
for (const e of document.querySelectorAll(arguments[0])) {
  if (!e.textContent.trim() || e.closest("[hidden], dialog:not([open])")) continue;
  const a = lum(rgba(getComputedStyle(e).color)), b = lum(behind(e));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) low.push(e.tagName.toLowerCase() + "." + [...e.classList].join(".") + " '" +
    e.textContent.trim().slice(0, 30) + "' " + ratio.toFixed(2));
}
return low;
"##;

/// For each state badge: its state class, background colour and glyph.
const BADGES: &str = r##"
return [...document.querySelectorAll("#states .badge[class*=state-]")].map((e) => [
  [...e.classList].find((c) => c.startsWith("state-")),
  getComputedStyle(e).backgroundColor,
  getComputedStyle(e, "::before").content,
]);
"##;

#[test]
fn every_component_is_legible_with_aa_contrast_and_states_have_glyphs_in_both_schemes() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let mut env = Env::new();
    let server = env.serve();
    for (scheme, name) in [(Scheme::Light, "style-light"), (Scheme::Dark, "style-dark")] {
        browser.set_scheme(scheme);
        browser.goto(&format!("http://{}/", server.addr));
        browser.js(
            "document.querySelector('main').innerHTML = arguments[0];",
            vec![json!(STYLE_SAMPLE)],
        );
        browser.wait_for("#states .badge.state-none");
        let low = browser.js(LOW_CONTRAST, vec![json!(TEXT)]);
        assert_eq!(low, json!([]), "{scheme:?}: text under 4.5:1");
        let badges = browser.js(BADGES, vec![]);
        let badges = badges.as_array().unwrap();
        assert_eq!(badges.len(), 9, "{badges:?}");
        let colours: std::collections::HashSet<_> = badges.iter().map(|b| &b[1]).collect();
        assert_eq!(
            colours.len(),
            9,
            "{scheme:?}: each state has its own colour: {badges:?}"
        );
        for badge in badges {
            let glyph = badge[2].as_str().unwrap();
            assert!(
                !["none", "normal", "\"\""].contains(&glyph),
                "{badge:?}: no glyph"
            );
        }
        browser.screenshot_full(name);
    }
    // app.js opens a <dialog> from its button, and the first field has the focus.
    browser.click("[data-open-dialog=conf]");
    browser.wait_js(
        "the conf dialog opens",
        "document.getElementById('conf').open",
    );
    assert!(
        browser.focused().starts_with("textarea#conf-text"),
        "{}",
        browser.focused()
    );
    browser.screenshot("style-dialog");
}
