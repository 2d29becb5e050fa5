//! A layered (Sugiyama-style) drawing of a DAG, left to right: the geometry behind the
//! dashboard's task graph. Pure and deterministic — the same input gives the same output — and
//! it knows nothing of tasks or SVG: `web` turns a [`Layout`] into markup.
//!
//! Steps, each in its own file: `rank` orients the edges (an input cycle is broken, not
//! refused), puts every node in a layer (longest path from the sources, then nodes that feed
//! more than they gather moved next to their successors) and chains long edges through dummy
//! nodes; `order` orders each layer to minimise crossings (barycenter and median sweeps with
//! adjacent swaps, keeping the best order by exact count); `place` gives every node a
//! vertical position close to its neighbours' (a least-squares fit per layer under the
//! minimum gaps) and routes the edges.
//!
//! Work is linear in the layered graph per sweep, and the number of sweeps and the number of
//! dummy nodes are capped by the graph's size, so huge DAGs still lay out in seconds.

mod order;
mod place;
mod rank;
#[cfg(test)]
mod tests;

/// A point in layout units (the SVG renderer uses pixels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Left to right.
    pub x: f64,
    /// Top to bottom.
    pub y: f64,
}

/// Where one node is drawn: its box, top-left corner first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeBox {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width (the width asked for).
    pub w: f64,
    /// Height ([`Spacing::node_height`]).
    pub h: f64,
}

impl NodeBox {
    /// The middle of the box's height.
    pub fn center_y(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

/// The route of one edge: a polyline from the source's right border to the target's left
/// border, through the layers it crosses.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgePath {
    /// Source node index, as given.
    pub from: usize,
    /// Target node index, as given.
    pub to: usize,
    /// At least two points; consecutive points at the same height are straight runs (through a
    /// layer), others are meant to be joined by a curve with horizontal ends.
    pub points: Vec<Point>,
}

/// A finished drawing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    /// One box per node, in input order.
    pub nodes: Vec<NodeBox>,
    /// One path per distinct edge, in input order (self-loops, repeats and edges naming a
    /// node that does not exist are left out).
    pub edges: Vec<EdgePath>,
    /// Edge crossings left between adjacent layers (long edges count once per layer gap
    /// they cross; edges too long to route are not counted).
    pub crossings: u64,
    /// Total width, margins included (0 for an empty graph).
    pub width: f64,
    /// Total height, margins included (0 for an empty graph).
    pub height: f64,
}

/// Sizes and gaps of the drawing, in layout units.
#[derive(Clone, Debug, PartialEq)]
pub struct Spacing {
    /// Height of every node box.
    pub node_height: f64,
    /// Vertical gap between two nodes of a layer.
    pub node_gap: f64,
    /// Vertical gap between an edge passing through a layer and its neighbours.
    pub edge_gap: f64,
    /// Horizontal gap between two layers, where edges bend.
    pub layer_gap: f64,
    /// Space around the whole drawing.
    pub margin: f64,
}

impl Default for Spacing {
    fn default() -> Self {
        Self {
            node_height: 40.0,
            node_gap: 16.0,
            edge_gap: 8.0,
            layer_gap: 64.0,
            margin: 8.0,
        }
    }
}

/// Lays out a graph of `widths.len()` nodes (node `i` is `widths[i]` wide) and the directed
/// `edges` between them, left to right.
pub fn layout(widths: &[f64], edges: &[(usize, usize)], spacing: &Spacing) -> Layout {
    if widths.is_empty() {
        return Layout::default();
    }
    let widths: Vec<f64> = widths
        .iter()
        .map(|&w| if w.is_finite() { w.max(0.0) } else { 0.0 })
        .collect();
    let graph = rank::build(widths.len(), edges);
    let ordering = order::minimise_crossings(&graph);
    let ys = place::vertical(&graph, &ordering.layers, spacing);
    place::finish(
        &graph,
        &ordering.layers,
        &ys,
        &widths,
        ordering.crossings,
        spacing,
    )
}
