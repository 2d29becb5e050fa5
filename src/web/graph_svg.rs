//! The DAG page's task graph, drawn on the server as an inline `<svg>`: the layout comes from
//! [`crate::dag::layout`], this file turns it into markup. Each node is a rounded box with the
//! task id and, under it, its state in words beside a small glyph (so a state is never told
//! by colour alone), wrapped in a link when the page gives one. Every input string is escaped.
//!
//! Colours come from CSS classes only (`node state-<state>`, `state-none` without a state), so
//! the one stylesheet sets both schemes; the few presentation attributes are neutral defaults
//! that keep the drawing legible without it. The stylesheet snippet (Airflow's state colours,
//! text contrast at least 4.5:1 on every fill, node borders at least 3:1 on the page):
//!
//! ```css
//! .dag-graph-box { overflow: auto; max-height: 80vh; } /* a wrapper: big graphs scroll */
//! .dag-graph { display: block; }
//! .dag-graph .edge { stroke: #8a8a8a; stroke-width: 1.4; fill: none; }
//! .dag-graph .arrow { fill: #8a8a8a; }
//! .dag-graph .node rect { stroke: #4d4d4d; stroke-width: 1; }
//! .dag-graph .node text { fill: #111; }
//! .dag-graph .node { color: #111; }              /* glyphs draw in currentColor */
//! .dag-graph .state-success rect { fill: #008000; }
//! .dag-graph .state-success text { fill: #fff; }
//! .dag-graph .state-success { color: #fff; }
//! .dag-graph .state-failed rect { fill: #d32f2f; }
//! .dag-graph .state-failed text { fill: #fff; }
//! .dag-graph .state-failed { color: #fff; }
//! .dag-graph .state-running rect { fill: #32cd32; }
//! .dag-graph .state-queued rect { fill: #a0a0a0; }
//! .dag-graph .state-scheduled rect { fill: #d2b48c; }
//! .dag-graph .state-up_for_retry rect { fill: #ffd700; }
//! .dag-graph .state-upstream_failed rect { fill: #ffa500; }
//! .dag-graph .state-skipped rect { fill: #ff69b4; }
//! .dag-graph .state-none rect { fill: #fff; stroke: #767676; stroke-dasharray: 4 3; }
//! .dag-graph a:hover rect { stroke-width: 2.5; }
//! .dag-graph a:focus { outline: none; }
//! .dag-graph a:focus-visible rect { stroke: #0b57d0; stroke-width: 3.5; }
//! @media (prefers-color-scheme: dark) {
//!   .dag-graph .edge { stroke: #9a9a9a; }
//!   .dag-graph .arrow { fill: #9a9a9a; }
//!   .dag-graph .state-none rect { fill: #1e1e1e; stroke: #9a9a9a; }
//!   .dag-graph .state-none text { fill: #e6e6e6; }
//!   .dag-graph .state-none { color: #e6e6e6; }
//!   .dag-graph a:focus-visible rect { stroke: #8ab4f8; }
//! }
//! ```

use std::fmt::{self, Write};

use crate::dag::layout::{self, Layout, NodeBox, Point, Spacing};
use crate::state::TaskState;

/// One task as the graph shows it.
pub(crate) struct SvgNode {
    /// The text in the box: the task id.
    pub label: String,
    /// Its state in the selected run; `None` when it has none (or no run is selected).
    pub state: Option<TaskState>,
    /// Where the node leads (the task's log in the selected run).
    pub href: Option<String>,
    /// Extra hover text, after the label and state.
    pub title: Option<String>,
}

/// Above this many tasks the text shrinks, so the drawing stays a manageable size.
const LARGE_GRAPH: usize = 2_000;
/// Labels longer than this are cut (with "…"); the full text stays in the hover title.
const MAX_LABEL_CHARS: usize = 48;
/// Font size of the task id in a normal graph, in pixels; everything else scales with it.
const FONT_SIZE: f64 = 13.0;
/// Font size in a large graph.
const SMALL_FONT_SIZE: f64 = 10.0;
/// Advance of one character as a share of the font size (monospace fonts are 0.6).
const CHAR_WIDTH: f64 = 0.62;
/// The state line's size relative to the label's.
const STATE_SCALE: f64 = 0.85;
/// The monospace stack: labels are measured by counting characters.
const FONT_FAMILY: &str = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', \
                           'Liberation Mono', monospace";
/// Marker id of the arrowheads; one graph per page.
const ARROW_ID: &str = "dag-graph-arrow";

/// Draws the tasks `nodes` and the dependencies `edges` (indices into `nodes`, upstream first)
/// as an inline SVG element.
pub(crate) fn render(nodes: &[SvgNode], edges: &[(usize, usize)]) -> String {
    let font = if nodes.len() > LARGE_GRAPH {
        SMALL_FONT_SIZE
    } else {
        FONT_SIZE
    };
    let metrics = Metrics::new(font);
    let labels: Vec<String> = nodes.iter().map(|n| shortened(&n.label)).collect();
    let widths: Vec<f64> = nodes
        .iter()
        .zip(&labels)
        .map(|(n, label)| metrics.node_width(label, state_words(n.state)))
        .collect();
    let drawing = layout::layout(&widths, edges, &metrics.spacing());
    let mut svg = String::with_capacity(512 + nodes.len() * 600 + edges.len() * 120);
    // Writing to a String cannot fail.
    let _ = write_svg(&mut svg, nodes, &labels, &drawing, &metrics);
    svg
}

/// Sizes derived from the font size.
struct Metrics {
    font: f64,
}

impl Metrics {
    fn new(font: f64) -> Self {
        Self { font }
    }

    /// Space inside a box, left and right of the text.
    fn padding(&self) -> f64 {
        self.font * 0.8
    }

    /// Side of a state glyph.
    fn glyph(&self) -> f64 {
        self.font * 0.8
    }

    fn spacing(&self) -> Spacing {
        let k = self.font / FONT_SIZE;
        Spacing {
            node_height: 42.0 * k,
            node_gap: 14.0 * k,
            edge_gap: 7.0 * k,
            layer_gap: 64.0 * k,
            margin: 6.0 * k,
        }
    }

    fn node_width(&self, label: &str, state: &str) -> f64 {
        let label_width = text_width(label) * self.font * CHAR_WIDTH;
        let state_width = self.glyph()
            + self.font * 0.4
            + text_width(state) * self.font * STATE_SCALE * CHAR_WIDTH;
        label_width.max(state_width).max(self.font * 3.0) + 2.0 * self.padding()
    }
}

/// Width of `text` in character cells: East Asian wide characters and emoji take two.
fn text_width(text: &str) -> f64 {
    text.chars()
        .map(|c| if is_wide(c) { 2.0 } else { 1.0 })
        .sum()
}

fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x1F300..=0x1FAFF
        | 0x20000..=0x3FFFD)
}

/// `label` cut to [`MAX_LABEL_CHARS`] characters.
fn shortened(label: &str) -> String {
    match label.char_indices().nth(MAX_LABEL_CHARS - 1) {
        Some((cut, _)) if label[cut..].chars().count() > 1 => format!("{}…", &label[..cut]),
        _ => label.to_owned(),
    }
}

/// The state as shown under the id.
fn state_words(state: Option<TaskState>) -> &'static str {
    match state {
        None => "no status",
        Some(TaskState::UpForRetry) => "up for retry",
        Some(TaskState::UpstreamFailed) => "upstream failed",
        Some(s) => s.as_str(),
    }
}

fn write_svg(
    out: &mut String,
    nodes: &[SvgNode],
    labels: &[String],
    drawing: &Layout,
    metrics: &Metrics,
) -> fmt::Result {
    let (w, h) = if nodes.is_empty() {
        (metrics.font * 12.0, metrics.font * 3.0)
    } else {
        (drawing.width, drawing.height)
    };
    // An image role would hide the links from assistive technology.
    let role = if nodes.iter().any(|n| n.href.is_some()) {
        "group"
    } else {
        "img"
    };
    write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="dag-graph" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="{role}" aria-label="Task graph: {} tasks, {} dependencies" font-family="{}" font-size="{}">"#,
        nodes.len(),
        drawing.edges.len(),
        FONT_FAMILY,
        Num(metrics.font),
        w = Num(w),
        h = Num(h),
    )?;
    if nodes.is_empty() {
        write!(
            out,
            r#"<text x="{}" y="{}" class="empty">No tasks</text></svg>"#,
            Num(metrics.font),
            Num(metrics.font * 1.9)
        )?;
        return Ok(());
    }
    write!(
        out,
        r##"<defs><marker id="{ARROW_ID}" viewBox="0 0 10 10" refX="10" refY="5" markerUnits="userSpaceOnUse" markerWidth="{s}" markerHeight="{s}" orient="auto"><path class="arrow" d="M0 0L10 5L0 10z" fill="#8a8a8a"/></marker></defs>"##,
        s = Num(metrics.font * 0.6),
    )?;
    out.push_str(r#"<g class="edges">"#);
    for edge in &drawing.edges {
        write_edge(out, &edge.points)?;
    }
    out.push_str(r#"</g><g class="nodes">"#);
    // Document order is tab order: left to right, then top to bottom.
    let mut visit: Vec<usize> = (0..nodes.len()).collect();
    let boxes = &drawing.nodes;
    visit.sort_by(|&a, &b| {
        (boxes[a].x.total_cmp(&boxes[b].x)).then(boxes[a].y.total_cmp(&boxes[b].y))
    });
    for i in visit {
        write_node(out, &nodes[i], &labels[i], &boxes[i], metrics)?;
    }
    out.push_str("</g></svg>");
    Ok(())
}

/// An edge as a smooth path: straight where the route runs level, a cubic curve with level
/// ends between two heights, so it leaves and enters boxes horizontally.
fn write_edge(out: &mut String, points: &[Point]) -> fmt::Result {
    let Some((first, rest)) = points.split_first() else {
        return Ok(());
    };
    write!(
        out,
        r#"<path class="edge" d="M{} {}"#,
        Num(first.x),
        Num(first.y)
    )?;
    let mut previous = first;
    for p in rest {
        if p.y == previous.y {
            write!(out, "H{}", Num(p.x))?;
        } else {
            let mid = (previous.x + p.x) / 2.0;
            write!(
                out,
                "C{} {} {} {} {} {}",
                Num(mid),
                Num(previous.y),
                Num(mid),
                Num(p.y),
                Num(p.x),
                Num(p.y)
            )?;
        }
        previous = p;
    }
    write!(
        out,
        r##"" fill="none" stroke="#8a8a8a" marker-end="url(#{ARROW_ID})"/>"##
    )
}

fn write_node(
    out: &mut String,
    node: &SvgNode,
    label: &str,
    b: &NodeBox,
    metrics: &Metrics,
) -> fmt::Result {
    let href = node.href.as_deref().and_then(safe_href);
    if let Some(href) = href {
        write!(out, r#"<a href="{}">"#, Escaped(href))?;
    }
    let class = node.state.map_or("none", TaskState::as_str);
    write!(
        out,
        r#"<g class="node state-{class}" transform="translate({} {})"><title>{}: {}"#,
        Num(b.x),
        Num(b.y),
        Escaped(&node.label),
        state_words(node.state),
    )?;
    if let Some(title) = &node.title {
        write!(out, "\n{}", Escaped(title))?;
    }
    let pad = metrics.padding();
    let font = metrics.font;
    write!(
        out,
        r##"</title><rect width="{}" height="{}" rx="{}" fill="#fff" stroke="#4d4d4d"/><text class="label" x="{}" y="{}">{}</text>"##,
        Num(b.w),
        Num(b.h),
        Num(font * 0.45),
        Num(pad),
        Num(font * 1.35),
        Escaped(label),
    )?;
    let glyph_top = font * 1.95;
    write_glyph(out, node.state, pad, glyph_top, metrics.glyph())?;
    write!(
        out,
        r#"<text class="state" x="{}" y="{}" font-size="{}">{}</text></g>"#,
        Num(pad + metrics.glyph() + font * 0.4),
        Num(glyph_top + metrics.glyph() * 0.88),
        Num(font * STATE_SCALE),
        state_words(node.state),
    )?;
    if href.is_some() {
        out.push_str("</a>");
    }
    Ok(())
}

/// A small shape per state, drawn in a 10×10 box scaled to `size` at (`x`, `y`).
fn write_glyph(
    out: &mut String,
    state: Option<TaskState>,
    x: f64,
    y: f64,
    size: f64,
) -> fmt::Result {
    let (d, solid) = match state {
        Some(TaskState::Success) => ("M1.5 5.5L4 8L8.5 2", false),
        Some(TaskState::Failed) => ("M2 2L8 8M8 2L2 8", false),
        Some(TaskState::Running) => ("M2 1L9 5L2 9Z", true),
        Some(TaskState::Queued) => ("M1 2.5H9M1 5H9M1 7.5H9", false),
        Some(TaskState::Scheduled) => ("M5 1A4 4 0 1 1 4.99 1M5 2.8V5H7.2", false),
        Some(TaskState::UpForRetry) => (
            "M8.6 5.6A3.7 3.7 0 1 1 7.3 2.1M7.8 0.4L7.3 2.1L9.1 2.5",
            false,
        ),
        Some(TaskState::UpstreamFailed) => ("M5 1L9.3 8.8H0.7ZM5 4V6M5 7.3V7.4", false),
        Some(TaskState::Skipped) => ("M1.5 2L4.5 5L1.5 8M5.5 2L8.5 5L5.5 8", false),
        None => ("M5 1.5A3.5 3.5 0 1 1 4.99 1.5", false),
    };
    let fill = if solid { "currentColor" } else { "none" };
    let dash = if state.is_none() {
        r#" stroke-dasharray="1.6 1.4""#
    } else {
        ""
    };
    write!(
        out,
        r#"<path class="glyph" transform="translate({} {}) scale({})" d="{d}" fill="{fill}" stroke="currentColor" stroke-width="1.4" stroke-linecap="round" stroke-linejoin="round"{dash}/>"#,
        Num(x),
        Num(y),
        Num(size / 10.0),
    )
}

/// `href` if following it cannot run script: relative, or http(s).
fn safe_href(href: &str) -> Option<&str> {
    let href = href.trim();
    match href.find([':', '/', '?', '#']) {
        Some(i) if href[i..].starts_with(':') => {
            let scheme = &href[..i];
            (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
                .then_some(href)
        }
        _ => Some(href),
    }
}

/// Text escaped for XML and HTML, in content and in quoted attributes; control characters
/// that XML forbids become U+FFFD.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                '\t' | '\n' | '\r' => f.write_char(c)?,
                c if c.is_control() => f.write_char('\u{FFFD}')?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A coordinate with at most one decimal, which is finer than a pixel needs.
struct Num(f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Adding 0.0 turns -0 into 0.
        let tenths = (self.0 * 10.0).round() + 0.0;
        if tenths % 10.0 == 0.0 {
            write!(f, "{}", tenths / 10.0)
        } else {
            write!(f, "{:.1}", tenths / 10.0)
        }
    }
}

#[cfg(test)]
mod tests;
