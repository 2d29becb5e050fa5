//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! through fantoccini), against a real `serve` started by the test.
//!
//! Page tests use [`Browser`] (in `browser/driver.rs`): `let Some(browser) =
//! Browser::start() else { return };` — without `ORCHESTRATOR_TEST_CHROMEDRIVER` (which
//! `.ci/run` sets after installing Debian's `chromium` and `chromium-driver`) it prints a
//! note and the test passes; with it, any failure fails. Screenshots go to
//! `<target>/screenshots/`.

mod driver;

pub use driver::{Browser, Scheme};
use serde_json::json;

use crate::support::{Env, wait_until};

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
const STYLE_SAMPLE: &str = include_str!("browser/style_sample.html");

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

/// A DAG whose tasks wait for files the test creates, so each step of the journey can be
/// watched while it happens rather than raced.
const JOURNEY: &str = "dag_id: journey
description: Talks, then waits to be told to finish
tags: [demo]
tasks:
  talk:
    type: shell
    command: 'echo \"hello {{ conf.who }} $((40 + 2))\"; while [ ! -f gate1 ]; do sleep 0.05; done; echo \"line $((1 + 1))\"'
  finish:
    type: shell
    command: 'while [ ! -f gate2 ]; do sleep 0.05; done; echo done'
    depends_on: talk
";

/// Whether the page is still the one marked by [`mark_page`] (no reload happened).
const SAME_PAGE: &str = "window.__journey === 1";

fn mark_page(browser: &Browser) {
    browser.js("window.__journey = 1;", vec![]);
}

#[test]
fn a_user_triggers_with_conf_watches_the_log_and_grid_live_and_pauses_from_the_browser() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let mut env = Env::new();
    env.dag("journey", JOURNEY);
    env.dag("hello", HELLO);
    let server = env.serve();
    let base = format!("http://{}", server.addr);
    browser.set_scheme(Scheme::Light);

    // The list: trigger `journey` with a conf from the form.
    browser.goto(&format!("{base}/"));
    let row = "tr:has(a.dag-id[href=\"/dags/journey\"])";
    browser.click(&format!("{row} details.trigger summary"));
    browser.fill("#conf-journey", r#"{"who": "<b>world</b>"}"#);
    browser.screenshot("journey-trigger-form");
    browser.click(&format!("{row} details.trigger button[type=submit]"));
    wait_until("the triggered run exists", || {
        !env.runs("journey").is_empty()
    });
    let run = env.runs("journey")[0].clone();
    assert_eq!(run["conf"], json!({"who": "<b>world</b>"}));
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let run_path = format!(
        "/dags/journey/runs/{}",
        percent_encoding::utf8_percent_encode(&run_id, percent_encoding::NON_ALPHANUMERIC)
    );

    // The task log grows while the task runs, without a reload.
    browser.goto(&format!("{base}{run_path}/tasks/talk"));
    browser.wait_js(
        "the first line arrives",
        "document.querySelector('pre.log').textContent.includes('hello <b>world</b> 42')",
    );
    mark_page(&browser);
    assert!(!browser.text("pre.log").contains("line 2"));
    std::fs::write(env.path("gate1"), "").unwrap();
    browser.wait_js(
        "the second line is appended live",
        "document.querySelector('pre.log').textContent.includes('line 2')",
    );
    browser.wait_js("the page was not reloaded", SAME_PAGE);
    browser.screenshot("journey-log");

    // The DAG page: the grid follows the run to success in place.
    browser.goto(&format!("{base}/dags/journey"));
    browser.wait_for("table.grid a.cell.state-running");
    mark_page(&browser);
    std::fs::write(env.path("gate2"), "").unwrap();
    browser.wait_js(
        "the grid shows both tasks succeeded without a reload",
        "document.querySelectorAll('table.grid a.cell.state-success').length === 2 \
         && window.__journey === 1",
    );
    browser.wait_for("svg.dag-graph .node.state-success");
    browser.screenshot("journey-dag");

    // The run page: tasks, a timeline, the conf shown as text.
    browser.goto(&format!("{base}{run_path}"));
    browser.wait_for(".gantt .gantt-bar.state-success");
    assert!(browser.text("main").contains("<b>world</b>"));
    assert!(browser.find_all("main b").is_empty(), "conf is escaped");
    browser.screenshot("journey-run");

    // Pause and unpause from the list; the switch says which.
    browser.goto(&format!("{base}/"));
    let toggle = format!("{row} button.toggle");
    assert_eq!(attribute(&browser, &toggle, "aria-checked"), "true");
    browser.click(&toggle);
    browser.wait_js(
        "the switch shows paused",
        &format!(
            "document.querySelector('{row} button.toggle').getAttribute('aria-checked') === 'false'"
        ),
    );
    assert!(paused(&env, "journey"));
    browser.click(&toggle);
    browser.wait_js(
        "the switch shows active",
        &format!(
            "document.querySelector('{row} button.toggle').getAttribute('aria-checked') === 'true'"
        ),
    );
    assert!(!paused(&env, "journey"));

    // Keyboard: from the top, Tab reaches the search box, then the DAG rows' controls.
    browser.reset_focus();
    let order = browser.tab_order(12);
    let search = order.iter().position(|e| e.starts_with("input#search"));
    let switch = order.iter().position(|e| e.starts_with("button.toggle"));
    assert!(
        matches!((search, switch), (Some(s), Some(t)) if s < t),
        "{order:?}"
    );

    // A form on another site posting to the dashboard is refused and changes nothing.
    let forged = format!(
        "data:text/html,<form id=f method=post action='{base}/dags/journey/pause'></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    browser.goto(&forged);
    browser.wait_js(
        "the forged post is answered",
        "document.body && document.body.textContent.includes('403')",
    );
    assert!(!paused(&env, "journey"), "a cross-site form must not pause");
}

fn attribute(browser: &Browser, css: &str, name: &str) -> String {
    browser
        .js(
            "return document.querySelector(arguments[0]).getAttribute(arguments[1]);",
            vec![json!(css), json!(name)],
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn paused(env: &Env, dag: &str) -> bool {
    let dags = env.json(&["dags", "list"]);
    dags.as_array()
        .unwrap()
        .iter()
        .find(|d| d["dag_id"] == dag)
        .unwrap()["paused"]
        .as_bool()
        .unwrap()
}
