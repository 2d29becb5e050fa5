use super::order::{count_crossings, minimise_crossings};
use super::rank::{Layered, build};
use super::*;

/// A reproducible stream of numbers (xorshift), so random graphs are the same every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A random DAG: every edge goes from a lower to a higher index, targets mostly nearby.
fn random_dag(n: usize, edges_per_node: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = Rng(seed);
    let mut edges = Vec::new();
    for v in 1..n {
        for _ in 0..rng.below(edges_per_node + 1) {
            let back = 1 + rng.below(v.min(12));
            edges.push((v - back, v));
        }
    }
    edges
}

fn crossings_of(n: usize, edges: &[(usize, usize)]) -> u64 {
    minimise_crossings(&build(n, edges)).crossings
}

/// Crossings of `layers`, counted afresh.
fn count(g: &Layered, layers: &[Vec<usize>]) -> u64 {
    let mut pos = vec![0; g.layer.len()];
    for layer in layers {
        for (i, &v) in layer.iter().enumerate() {
            pos[v] = i;
        }
    }
    count_crossings(g, layers, &pos)
}

fn lay(n: usize, edges: &[(usize, usize)]) -> Layout {
    layout(&vec![60.0; n], edges, &Spacing::default())
}

/// Boxes of one column never overlap and keep at least the node gap between them.
fn assert_no_overlap(l: &Layout, spacing: &Spacing) {
    for (i, a) in l.nodes.iter().enumerate() {
        for b in &l.nodes[i + 1..] {
            let same_column = a.x < b.x + b.w && b.x < a.x + a.w;
            if same_column {
                let gap = (a.y - (b.y + b.h)).max(b.y - (a.y + a.h));
                assert!(gap >= spacing.node_gap - 1e-6, "{a:?} and {b:?} overlap");
            }
        }
    }
}

#[test]
fn layers_follow_the_longest_path_from_the_sources() {
    // 0 → 1 → 2 → 3 and 0 → 3: 3 sits after the long way round.
    let g = build(4, &[(0, 1), (1, 2), (2, 3), (0, 3)]);
    assert_eq!(g.layer[..4], [0, 1, 2, 3]);
    assert_eq!(g.chains[3].dummies.len(), 2);
}

#[test]
fn a_source_sits_just_before_its_nearest_successor() {
    // 3 feeds only 2, which is in layer 2: 3 moves to layer 1 instead of a long edge.
    let g = build(4, &[(0, 1), (1, 2), (3, 2)]);
    assert_eq!(g.layer[..4], [0, 1, 2, 1]);
    assert!(g.chains.iter().all(|c| c.dummies.is_empty()));
}

#[test]
fn a_branch_that_joins_late_sits_next_to_where_it_joins() {
    // 0 → 1 → 2 → 3 → 4, and the branch 5 → 6 joining at 3.
    let g = build(7, &[(0, 1), (1, 2), (2, 3), (3, 4), (5, 6), (6, 3)]);
    assert_eq!(g.layer[..7], [0, 1, 2, 3, 4, 1, 2]);
    assert!(g.chains.iter().all(|c| c.dummies.is_empty()));
}

#[test]
fn a_node_gathering_more_than_it_feeds_stays_early() {
    // 3 gathers 0, 1 and 2 and feeds 6 at the end of 0 → 4 → 5 → 6: it stays in layer 1.
    let g = build(7, &[(0, 4), (4, 5), (5, 6), (0, 3), (1, 3), (2, 3), (3, 6)]);
    assert_eq!(g.layer[3], 1);
    assert_eq!(g.chains[6].dummies.len(), 1);
}

#[test]
fn boxes_go_left_to_right_by_layer() {
    let l = lay(3, &[(0, 1), (1, 2)]);
    assert!(l.nodes[0].x + l.nodes[0].w < l.nodes[1].x);
    assert!(l.nodes[1].x + l.nodes[1].w < l.nodes[2].x);
    // A chain is drawn straight.
    assert_eq!(l.nodes[0].y, l.nodes[1].y);
    assert_eq!(l.nodes[1].y, l.nodes[2].y);
}

#[test]
fn two_parallel_chains_fed_by_one_node_do_not_cross() {
    // Index order interleaves the chains: 0 → 1 → 3 → 5 and 0 → 2 → 4 → 6, wired crosswise.
    let edges = [(0, 1), (0, 2), (1, 4), (2, 3), (4, 5), (3, 6)];
    assert_eq!(crossings_of(7, &edges), 0);
}

#[test]
fn a_crossed_input_order_is_uncrossed() {
    // Index order puts 2 above 3, but 0 → 3 and 1 → 2 cross in it.
    let g = build(6, &[(0, 3), (1, 2), (0, 4), (1, 5)]);
    assert!(count(&g, &g.layers) > 0);
    assert_eq!(minimise_crossings(&g).crossings, 0);
}

#[test]
fn a_tree_given_in_scrambled_order_is_drawn_without_crossings() {
    let edges = [
        (0, 5),
        (0, 2),
        (5, 1),
        (5, 7),
        (2, 3),
        (2, 6),
        (7, 4),
        (1, 8),
        (6, 9),
    ];
    assert_eq!(crossings_of(10, &edges), 0);
}

#[test]
fn long_edges_pass_between_the_nodes_they_skip() {
    let l = lay(3, &[(0, 1), (1, 2), (0, 2)]);
    let path = &l.edges[2];
    let middle = &l.nodes[1];
    let inside = path
        .points
        .iter()
        .filter(|p| p.x >= middle.x && p.x <= middle.x + middle.w)
        .collect::<Vec<_>>();
    assert_eq!(inside.len(), 2, "{path:?}");
    for p in inside {
        assert!(
            p.y < middle.y || p.y > middle.y + middle.h,
            "{p:?} inside {middle:?}"
        );
    }
}

#[test]
fn edges_start_and_end_at_the_node_borders() {
    let edges = random_dag(40, 2, 7);
    let l = lay(40, &edges);
    for e in &l.edges {
        let (from, to) = (&l.nodes[e.from], &l.nodes[e.to]);
        let (first, last) = (e.points[0], e.points[e.points.len() - 1]);
        assert_eq!((first.x, first.y), (from.x + from.w, from.center_y()));
        assert_eq!((last.x, last.y), (to.x, to.center_y()));
        assert!(e.points.windows(2).all(|w| w[0].x <= w[1].x), "{e:?}");
    }
}

#[test]
fn edges_never_pass_through_boxes() {
    for seed in 1..20 {
        let edges = random_dag(80, 3, seed);
        let widths: Vec<f64> = (0..80).map(|i| 40.0 + (i * 53 % 100) as f64).collect();
        let l = layout(&widths, &edges, &Spacing::default());
        for e in &l.edges {
            for w in e.points.windows(2) {
                let (a, b) = (w[0], w[1]);
                for (i, n) in l.nodes.iter().enumerate() {
                    let overlaps_x = a.x < n.x + n.w && n.x < b.x;
                    let level_inside = a.y == b.y && a.y > n.y && a.y < n.y + n.h;
                    let touches_end =
                        (i == e.from && a.x == n.x + n.w) || (i == e.to && b.x == n.x);
                    let through = if a.y == b.y { level_inside } else { true };
                    assert!(
                        touches_end || !(overlaps_x && through),
                        "seed {seed}: {a:?}-{b:?} of {}->{} crosses node {i} {n:?}",
                        e.from,
                        e.to
                    );
                }
            }
        }
    }
}

#[test]
fn a_diamond_is_drawn_without_crossings() {
    assert_eq!(lay(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]).crossings, 0);
}

#[test]
fn crossings_never_exceed_those_of_the_initial_order() {
    for seed in 1..40 {
        let n = 30 + seed as usize;
        let g = build(n, &random_dag(n, 3, seed));
        let ordering = minimise_crossings(&g);
        assert!(ordering.crossings <= count(&g, &g.layers), "seed {seed}");
        assert_eq!(count(&g, &ordering.layers), ordering.crossings);
    }
}

#[test]
fn nodes_never_overlap() {
    let spacing = Spacing::default();
    for seed in 1..20 {
        let edges = random_dag(60, 3, seed);
        let widths: Vec<f64> = (0..60).map(|i| 40.0 + (i * 37 % 90) as f64).collect();
        let l = layout(&widths, &edges, &spacing);
        assert_no_overlap(&l, &spacing);
        for (b, &w) in l.nodes.iter().zip(&widths) {
            assert_eq!(b.w, w);
            assert!(b.x >= spacing.margin - 1e-6 && b.x + b.w <= l.width + 1e-6);
            assert!(b.y >= spacing.margin - 1e-6 && b.y + b.h <= l.height + 1e-6);
        }
    }
}

#[test]
fn the_same_input_gives_the_same_drawing() {
    let edges = random_dag(200, 3, 42);
    assert_eq!(lay(200, &edges), lay(200, &edges));
}

#[test]
fn an_empty_graph_is_an_empty_drawing() {
    let l = lay(0, &[]);
    assert!(l.nodes.is_empty() && l.edges.is_empty());
    assert_eq!((l.width, l.height), (0.0, 0.0));
}

#[test]
fn a_single_node_sits_in_the_margin() {
    let spacing = Spacing::default();
    let l = layout(&[50.0], &[], &spacing);
    let m = spacing.margin;
    assert_eq!(
        l.nodes,
        [NodeBox {
            x: m,
            y: m,
            w: 50.0,
            h: spacing.node_height
        }]
    );
    assert_eq!(
        (l.width, l.height),
        (50.0 + 2.0 * m, spacing.node_height + 2.0 * m)
    );
}

#[test]
fn bad_edges_are_dropped_and_cycles_still_drawn() {
    // A self-loop, a repeat, an unknown node and the cycle 1 → 2 → 3 → 1.
    let edges = [(0, 0), (0, 1), (0, 1), (0, 9), (1, 2), (2, 3), (3, 1)];
    let l = lay(4, &edges);
    let kept: Vec<(usize, usize)> = l.edges.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(kept, [(0, 1), (1, 2), (2, 3), (3, 1)]);
    // The edge closing the cycle still starts at its source and ends at its target.
    let back = &l.edges[3];
    assert_eq!(back.points[0].y, l.nodes[3].center_y());
    assert_eq!(back.points[back.points.len() - 1].y, l.nodes[1].center_y());
}

#[test]
fn a_five_thousand_node_dag_is_laid_out() {
    let spacing = Spacing::default();
    let edges = random_dag(5_000, 3, 5);
    let l = layout(&vec![80.0; 5_000], &edges, &spacing);
    assert_eq!(l.nodes.len(), 5_000);
    assert_eq!(l.edges.len(), {
        let mut distinct = edges.clone();
        distinct.sort_unstable();
        distinct.dedup();
        distinct.len()
    });
    assert!(l.width.is_finite() && l.height.is_finite());
}

#[test]
fn one_node_feeding_a_long_chain_stays_within_the_dummy_budget() {
    // 0 → every node of the chain 1 → 2 → … → n-1: a quadratic number of dummies if allowed.
    let n = 3_000;
    let mut edges: Vec<(usize, usize)> = (1..n - 1).map(|v| (v, v + 1)).collect();
    edges.extend((2..n).map(|v| (0, v)));
    let g = build(n, &edges);
    assert!(g.layer.len() - n <= 4 * (n + edges.len()) + 10_000);
    let l = lay(n, &edges);
    assert!(l.edges.iter().all(|e| e.points.len() >= 2));
}
