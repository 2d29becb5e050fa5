use super::*;

fn node(label: &str, state: Option<TaskState>) -> SvgNode {
    SvgNode {
        label: label.into(),
        state,
        href: Some(format!("/tasks/{label}")),
        title: None,
    }
}

fn diamond() -> (Vec<SvgNode>, Vec<(usize, usize)>) {
    let nodes = vec![
        node("extract", Some(TaskState::Success)),
        node("transform_a", Some(TaskState::Running)),
        node("transform_b", Some(TaskState::Failed)),
        node("load", None),
    ];
    (nodes, vec![(0, 1), (0, 2), (1, 3), (2, 3)])
}

#[test]
fn the_svg_is_one_labelled_element_with_a_view_box_and_size() {
    let (nodes, edges) = diamond();
    let svg = render(&nodes, &edges);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"dag-graph\""));
    assert!(svg.ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    for attribute in ["viewBox=\"0 0 ", "width=\"", "height=\"", "role=\"group\""] {
        assert!(svg.contains(attribute), "{attribute} missing in {svg}");
    }
    assert!(svg.contains("aria-label=\"Task graph: 4 tasks, 4 dependencies\""));
}

#[test]
fn a_graph_without_links_is_an_image() {
    let nodes = vec![SvgNode {
        label: "only".into(),
        state: None,
        href: None,
        title: None,
    }];
    let svg = render(&nodes, &[]);
    assert!(svg.contains("role=\"img\""));
    assert!(!svg.contains("<a "));
}

#[test]
fn each_node_is_a_link_with_its_state_as_class_word_and_glyph() {
    let (nodes, edges) = diamond();
    let svg = render(&nodes, &edges);
    assert_eq!(svg.matches("<a href=").count(), 4);
    assert!(svg.contains("<a href=\"/tasks/extract\"><g class=\"node state-success\""));
    assert!(svg.contains("class=\"node state-none\""));
    for words in [">success<", ">running<", ">failed<", ">no status<"] {
        assert!(svg.contains(words), "{words} missing");
    }
    assert_eq!(svg.matches("class=\"glyph\"").count(), 4);
    assert!(svg.contains("<title>transform_b: failed</title>"));
}

#[test]
fn every_state_has_its_own_class_words_and_glyph() {
    let mut glyphs = Vec::new();
    let states = TaskState::ALL.into_iter().map(Some).chain([None]);
    for state in states {
        let svg = render(&[node("t", state)], &[]);
        let class = format!("state-{}", state.map_or("none", TaskState::as_str));
        assert!(svg.contains(&class), "{class}");
        assert!(svg.contains(&format!(">{}<", state_words(state))));
        let start = svg
            .find("class=\"glyph\"")
            .map(|i| &svg[i..])
            .unwrap_or_default();
        let d = start
            .split(" d=\"")
            .nth(1)
            .and_then(|s| s.split('"').next());
        glyphs.push(d.unwrap_or_default().to_owned());
    }
    let mut distinct = glyphs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), glyphs.len(), "{glyphs:?}");
}

#[test]
fn edges_are_curves_with_arrowheads() {
    let (nodes, edges) = diamond();
    let svg = render(&nodes, &edges);
    assert!(svg.contains("<marker id=\"dag-graph-arrow\""));
    assert_eq!(svg.matches("class=\"edge\"").count(), 4);
    assert_eq!(
        svg.matches("marker-end=\"url(#dag-graph-arrow)\"").count(),
        4
    );
    assert!(svg.contains('C'));
    // Edges come first so the boxes cover their ends.
    assert!(svg.find("class=\"edge\"") < svg.find("class=\"node "));
}

#[test]
fn everything_from_the_input_is_escaped() {
    let nodes = vec![
        SvgNode {
            label: "<script>alert('x')</script>".into(),
            state: Some(TaskState::Success),
            href: Some("/t?a=1&b=\"><script>".into()),
            title: Some("it's <b>bold</b> & \"quoted\"".into()),
        },
        node("b\u{0}c", None),
    ];
    let svg = render(&nodes, &[(0, 1)]);
    assert!(!svg.contains("<script>"), "{svg}");
    assert!(!svg.contains("<b>"));
    assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(svg.contains("href=\"/t?a=1&amp;b=&quot;&gt;&lt;script&gt;\""));
    assert!(svg.contains("it&#39;s &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;"));
    assert!(svg.contains("b\u{FFFD}c") && !svg.contains('\u{0}'));
}

#[test]
fn links_that_could_run_script_are_dropped() {
    for bad in [
        "javascript:alert(1)",
        " JavaScript:alert(1)",
        "java\tscript:x",
        "data:text/html,x",
    ] {
        assert_eq!(safe_href(bad), None, "{bad}");
    }
    for good in [
        "/dags/a/runs/r?x=1",
        "https://example.com/a",
        "log#end",
        "?try=2",
    ] {
        assert_eq!(safe_href(good), Some(good));
    }
    let mut n = node("t", None);
    n.href = Some("javascript:alert(1)".into());
    assert!(!render(&[n], &[]).contains("javascript"));
}

#[test]
fn boxes_are_wide_enough_for_their_text() {
    let long = "a_rather_long_task_identifier_for_loading";
    let svg = render(&[node(long, Some(TaskState::UpstreamFailed))], &[]);
    let width = svg
        .split("<rect width=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|w| w.parse::<f64>().ok())
        .unwrap_or_default();
    let needed = long.len() as f64 * FONT_SIZE * 0.6;
    assert!(width > needed, "{width} <= {needed}");
}

#[test]
fn very_long_labels_are_cut_but_kept_whole_in_the_title() {
    let long = "x".repeat(200);
    let svg = render(&[node(&long, None)], &[]);
    assert!(svg.contains(&format!(">{}…<", "x".repeat(MAX_LABEL_CHARS - 1))));
    assert!(svg.contains(&format!("<title>{long}: no status")));
    assert_eq!(
        shortened(&"y".repeat(MAX_LABEL_CHARS)),
        "y".repeat(MAX_LABEL_CHARS)
    );
}

#[test]
fn an_empty_graph_says_so() {
    let svg = render(&[], &[]);
    assert!(svg.contains(">No tasks<") && svg.ends_with("</svg>"));
}

#[test]
fn nodes_come_in_reading_order_for_the_keyboard() {
    // Given last, drawn first: the source is the first link.
    let nodes = vec![node("sink", None), node("source", None)];
    let svg = render(&nodes, &[(1, 0)]);
    assert!(svg.find("/tasks/source") < svg.find("/tasks/sink"));
}

#[test]
fn a_large_graph_renders_with_a_smaller_font() {
    let n = 2_500;
    let nodes: Vec<SvgNode> = (0..n).map(|i| node(&format!("task_{i}"), None)).collect();
    let edges: Vec<(usize, usize)> = (1..n).map(|i| (i / 3, i)).collect();
    let svg = render(&nodes, &edges);
    assert!(svg.contains(&format!("font-size=\"{SMALL_FONT_SIZE}\"")));
    assert_eq!(svg.matches("<a href=").count(), n);
}

#[test]
fn coordinates_have_at_most_one_decimal() {
    assert_eq!(Num(12.0).to_string(), "12");
    assert_eq!(Num(12.345).to_string(), "12.3");
    assert_eq!(Num(0.04).to_string(), "0");
    assert_eq!(Num(-0.04).to_string(), "0");
}
