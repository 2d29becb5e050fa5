//! TEMPORARY stand-in for the `svg` branch's graph renderer (same signature), so the DAG
//! page builds before that branch is merged; the merge replaces this file.

/// One task as the graph shows it.
pub(crate) struct SvgNode {
    /// The text in the box: the task id.
    pub label: String,
    /// Its state in the selected run.
    pub state: Option<crate::state::TaskState>,
    /// Where the node leads.
    pub href: Option<String>,
    /// Extra hover text.
    pub title: Option<String>,
}

/// Draws the tasks as a column of boxes (the real layout comes with the `svg` branch).
pub(crate) fn render(nodes: &[SvgNode], _edges: &[(usize, usize)]) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut svg = format!(
        "<svg class=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"320\" height=\"{}\">",
        nodes.len() * 40 + 10
    );
    for (i, n) in nodes.iter().enumerate() {
        let state = n.state.map_or("none", |s| s.as_str());
        let body = format!(
            "<g class=\"node state-{state}\"><title>{}</title><rect x=\"5\" y=\"{}\" width=\"300\" height=\"30\"/>\
             <text x=\"12\" y=\"{}\">{} {}</text></g>",
            esc(n.title.as_deref().unwrap_or("")),
            i * 40 + 5,
            i * 40 + 25,
            esc(&n.label),
            state
        );
        match &n.href {
            Some(h) => svg.push_str(&format!("<a href=\"{}\">{body}</a>", esc(h))),
            None => svg.push_str(&body),
        }
    }
    svg.push_str("</svg>");
    svg
}
