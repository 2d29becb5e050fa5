//! Coordinates: layers become columns; within a column each node sits as close as it can to
//! the median height of its neighbours. A sweep fits one layer at a time to targets taken from
//! the layer before it, by weighted least squares under the order and the minimum gaps (pool
//! adjacent violators, linear). Dummy nodes weigh more, so long edges run straight.

use super::rank::Layered;
use super::{EdgePath, Layout, NodeBox, Point, Spacing};

/// Node-visits allowed to the placement sweeps, as for ordering.
const PLACE_BUDGET: usize = 300_000;
/// Rounds (one down and one up sweep each) made whatever the size.
const MIN_ROUNDS: usize = 1;
/// Rounds never exceeded.
const MAX_ROUNDS: usize = 8;
/// Weight of a dummy node's target: keeps edges through layers straight.
const DUMMY_WEIGHT: f64 = 4.0;
/// Weight of a node with no neighbour on the side looked at: it stays unless pushed.
const FREE_WEIGHT: f64 = 0.05;

/// The vertical centre of every node of `g`, dummies included.
pub(super) fn vertical(g: &Layered, layers: &[Vec<usize>], spacing: &Spacing) -> Vec<f64> {
    let mut y = vec![0.0; g.layer.len()];
    let offsets: Vec<Vec<f64>> = layers.iter().map(|l| stacked(g, l, spacing)).collect();
    for (layer, offsets) in layers.iter().zip(&offsets) {
        let middle = offsets.last().copied().unwrap_or(0.0) / 2.0;
        for (&v, offset) in layer.iter().zip(offsets) {
            y[v] = offset - middle;
        }
    }
    let rounds = (PLACE_BUDGET / g.size().max(1)).clamp(MIN_ROUNDS, MAX_ROUNDS);
    let mut fitter = Fitter::default();
    let columns: Vec<(&Vec<usize>, &Vec<f64>)> = layers.iter().zip(&offsets).collect();
    for _ in 0..rounds {
        for &(layer, offsets) in columns.iter().skip(1) {
            fitter.fit(g, layer, offsets, &g.preds, &mut y);
        }
        for &(layer, offsets) in columns.iter().rev().skip(1) {
            fitter.fit(g, layer, offsets, &g.succs, &mut y);
        }
    }
    y
}

/// Smallest distance between the centres of two neighbours in a layer.
fn separation(g: &Layered, a: usize, b: usize, spacing: &Spacing) -> f64 {
    let half = |v: usize| {
        if g.is_dummy(v) {
            0.0
        } else {
            spacing.node_height / 2.0
        }
    };
    let gap = if g.is_dummy(a) || g.is_dummy(b) {
        spacing.edge_gap
    } else {
        spacing.node_gap
    };
    half(a) + half(b) + gap
}

/// Each node's centre when the layer is packed from 0.
fn stacked(g: &Layered, layer: &[usize], spacing: &Spacing) -> Vec<f64> {
    let mut offsets = Vec::with_capacity(layer.len());
    let mut at = 0.0;
    for (i, &v) in layer.iter().enumerate() {
        if i > 0 {
            at += separation(g, layer[i - 1], v, spacing);
        }
        offsets.push(at);
    }
    offsets
}

/// Buffers reused by every fit.
#[derive(Default)]
struct Fitter {
    blocks: Vec<Block>,
    heights: Vec<f64>,
}

impl Fitter {
    /// Moves the nodes of `layer` (packed at `offsets`) to the least-squares fit of their
    /// targets (the median height of their `neighbours`) that keeps their order and gaps.
    fn fit(
        &mut self,
        g: &Layered,
        layer: &[usize],
        offsets: &[f64],
        neighbours: &[Vec<usize>],
        y: &mut [f64],
    ) {
        let blocks = &mut self.blocks;
        blocks.clear();
        for (&v, &offset) in layer.iter().zip(offsets) {
            self.heights.clear();
            self.heights.extend(neighbours[v].iter().map(|&u| y[u]));
            let (target, weight) = match median(&mut self.heights) {
                None => (y[v], FREE_WEIGHT),
                Some(m) if g.is_dummy(v) => (m, DUMMY_WEIGHT),
                Some(m) => (m, 1.0),
            };
            blocks.push(Block::new(target - offset, weight));
            while blocks.len() >= 2
                && blocks[blocks.len() - 2].mean() > blocks[blocks.len() - 1].mean()
            {
                if let Some(last) = blocks.pop()
                    && let Some(previous) = blocks.last_mut()
                {
                    previous.absorb(&last);
                }
            }
        }
        let mut slots = layer.iter().zip(offsets);
        for block in blocks.iter() {
            for (&v, &offset) in slots.by_ref().take(block.len) {
                y[v] = block.mean() + offset;
            }
        }
    }
}

/// A run of nodes that share one shifted position in the pool-adjacent-violators fit.
struct Block {
    weight: f64,
    weighted_sum: f64,
    len: usize,
}

impl Block {
    fn new(value: f64, weight: f64) -> Self {
        Self {
            weight,
            weighted_sum: value * weight,
            len: 1,
        }
    }

    fn mean(&self) -> f64 {
        self.weighted_sum / self.weight
    }

    fn absorb(&mut self, other: &Block) {
        self.weight += other.weight;
        self.weighted_sum += other.weighted_sum;
        self.len += other.len;
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
fn median(values: &mut [f64]) -> Option<f64> {
    match values {
        [] => return None,
        [only] => return Some(*only),
        [a, b] => return Some((*a + *b) / 2.0),
        _ => values.sort_unstable_by(f64::total_cmp),
    }
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Turns layers and heights into boxes and edge routes, the drawing moved to the margin.
pub(super) fn finish(
    g: &Layered,
    layers: &[Vec<usize>],
    y: &[f64],
    widths: &[f64],
    crossings: u64,
    spacing: &Spacing,
) -> Layout {
    let columns = columns(g, layers, widths, spacing);
    let half = spacing.node_height / 2.0;
    let top = (0..g.layer.len())
        .map(|v| if g.is_dummy(v) { y[v] } else { y[v] - half })
        .fold(f64::INFINITY, f64::min);
    let bottom = (0..g.layer.len())
        .map(|v| if g.is_dummy(v) { y[v] } else { y[v] + half })
        .fold(f64::NEG_INFINITY, f64::max);
    let shift = spacing.margin - top;
    let nodes: Vec<NodeBox> = (0..g.real)
        .map(|v| {
            let column = &columns[g.layer[v]];
            NodeBox {
                x: column.left + (column.width - widths[v]) / 2.0,
                y: y[v] + shift - half,
                w: widths[v],
                h: spacing.node_height,
            }
        })
        .collect();
    let edges = g
        .chains
        .iter()
        .map(|chain| route(g, chain, &nodes, &columns, |d| y[d] + shift))
        .collect();
    let width = columns.last().map_or(0.0, |c| c.left + c.width) + spacing.margin;
    Layout {
        nodes,
        edges,
        crossings,
        width,
        height: bottom - top + 2.0 * spacing.margin,
    }
}

/// Left edge and width of a layer's column.
struct Column {
    left: f64,
    width: f64,
}

fn columns(g: &Layered, layers: &[Vec<usize>], widths: &[f64], spacing: &Spacing) -> Vec<Column> {
    let mut left = spacing.margin;
    layers
        .iter()
        .map(|layer| {
            let width = layer
                .iter()
                .filter(|&&v| !g.is_dummy(v))
                .map(|&v| widths[v])
                .fold(0.0, f64::max);
            let column = Column { left, width };
            left += width + spacing.layer_gap;
            column
        })
        .collect()
}

/// The polyline of one edge: out of the source's right border straight to its column's edge,
/// straight across each layer it passes through, into the target's column and its left border.
fn route(
    g: &Layered,
    chain: &super::rank::Chain,
    nodes: &[NodeBox],
    columns: &[Column],
    dummy_y: impl Fn(usize) -> f64,
) -> EdgePath {
    let (a, b) = chain.ends();
    let (start, end) = (&nodes[a], &nodes[b]);
    let mut points = Vec::with_capacity(chain.dummies.len() * 2 + 4);
    push_point(&mut points, start.x + start.w, start.center_y());
    let column_a = &columns[g.layer[a]];
    push_point(
        &mut points,
        column_a.left + column_a.width,
        start.center_y(),
    );
    for &d in &chain.dummies {
        let column = &columns[g.layer[d]];
        push_point(&mut points, column.left, dummy_y(d));
        push_point(&mut points, column.left + column.width, dummy_y(d));
    }
    push_point(&mut points, columns[g.layer[b]].left, end.center_y());
    push_point(&mut points, end.x, end.center_y());
    points.dedup();
    if points.len() == 1 {
        points.push(points[0]);
    }
    if chain.reversed {
        points.reverse();
    }
    EdgePath {
        from: chain.from,
        to: chain.to,
        points,
    }
}

fn push_point(points: &mut Vec<Point>, x: f64, y: f64) {
    points.push(Point { x, y });
}
