//! Layering: orients the edges, gives every node a layer and replaces edges spanning several
//! layers by chains of dummy nodes, so that every remaining edge joins adjacent layers.

use std::collections::VecDeque;

/// Dummy nodes allowed beyond this many per node and edge are refused to the longest edges,
/// which are then drawn straight across (a chain of 0 → every node of a long chain would
/// otherwise need a quadratic number of them).
const DUMMIES_PER_ELEMENT: usize = 4;
/// Dummy nodes always allowed, whatever the size.
const DUMMIES_FLOOR: usize = 10_000;

/// One edge of the input, as drawn.
#[derive(Debug)]
pub(super) struct Chain {
    /// Source, as given.
    pub from: usize,
    /// Target, as given.
    pub to: usize,
    /// The drawing runs from `to` to `from` (the edge closed a cycle).
    pub reversed: bool,
    /// Dummy nodes from the left end to the right end, one per layer crossed; empty for an
    /// edge between adjacent layers or one refused dummies by the budget.
    pub dummies: Vec<usize>,
}

impl Chain {
    /// The left and right ends.
    pub fn ends(&self) -> (usize, usize) {
        if self.reversed {
            (self.to, self.from)
        } else {
            (self.from, self.to)
        }
    }
}

/// The layered graph: real nodes `0..real`, dummies after them.
#[derive(Debug)]
pub(super) struct Layered {
    /// Number of real nodes.
    pub real: usize,
    /// Layer of every node.
    pub layer: Vec<usize>,
    /// Neighbours in the previous layer.
    pub preds: Vec<Vec<usize>>,
    /// Neighbours in the next layer.
    pub succs: Vec<Vec<usize>>,
    /// Nodes of each layer, real nodes by index then dummies by creation.
    pub layers: Vec<Vec<usize>>,
    /// The distinct edges, in input order.
    pub chains: Vec<Chain>,
}

impl Layered {
    /// Whether `v` is a dummy node.
    pub fn is_dummy(&self, v: usize) -> bool {
        v >= self.real
    }

    /// Nodes plus adjacent-layer edges: the unit of work of a sweep.
    pub fn size(&self) -> usize {
        self.layer.len() + self.succs.iter().map(Vec::len).sum::<usize>()
    }
}

/// Builds the layered graph of `n` nodes and `edges`.
pub(super) fn build(n: usize, edges: &[(usize, usize)]) -> Layered {
    let edges = distinct(n, edges);
    let position = topological_positions(n, &edges);
    let mut chains: Vec<Chain> = edges
        .iter()
        .map(|&(from, to)| Chain {
            from,
            to,
            reversed: position[from] > position[to],
            dummies: Vec::new(),
        })
        .collect();
    let layer = layers_of(n, &position, &chains);
    let mut g = Layered {
        real: n,
        layer,
        preds: vec![Vec::new(); n],
        succs: vec![Vec::new(); n],
        layers: Vec::new(),
        chains: Vec::new(),
    };
    let granted = dummy_grants(n, &g.layer, &chains);
    for (chain, dummies) in chains.iter_mut().zip(granted) {
        link_chain(&mut g, chain, dummies);
    }
    g.chains = chains;
    let count = g.layer.iter().max().map_or(0, |&l| l + 1);
    g.layers = vec![Vec::new(); count];
    for (v, &l) in g.layer.iter().enumerate() {
        g.layers[l].push(v);
    }
    g
}

/// The edges that can be drawn, each once, in input order.
fn distinct(n: usize, edges: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut keyed: Vec<(usize, usize, usize)> = edges
        .iter()
        .enumerate()
        .filter(|&(_, &(u, v))| u < n && v < n && u != v)
        .map(|(i, &(u, v))| (u, v, i))
        .collect();
    keyed.sort_unstable();
    keyed.dedup_by_key(|&mut (u, v, _)| (u, v));
    keyed.sort_unstable_by_key(|&(_, _, i)| i);
    keyed.into_iter().map(|(u, v, _)| (u, v)).collect()
}

/// Each node's place in a topological order (Kahn's, first come first served). On a cycle the
/// lowest-indexed waiting node goes next anyway, so any input gets an order.
fn topological_positions(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut out = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    for &(u, v) in edges {
        out[u].push(v);
        indegree[v] += 1;
    }
    let mut queue: VecDeque<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    let mut position = vec![usize::MAX; n];
    let (mut placed, mut cursor) = (0, 0);
    while placed < n {
        let v = match queue.pop_front() {
            Some(v) if position[v] != usize::MAX => continue,
            Some(v) => v,
            None => {
                while position[cursor] != usize::MAX {
                    cursor += 1;
                }
                cursor
            }
        };
        position[v] = placed;
        placed += 1;
        for &w in &out[v] {
            indegree[w] = indegree[w].saturating_sub(1);
            if indegree[w] == 0 && position[w] == usize::MAX {
                queue.push_back(w);
            }
        }
    }
    position
}

/// Longest path from the sources, then shortened edges: from the sinks back, a node with more
/// edges out than in moves right to sit just before its nearest successor, which shortens the
/// edges in total. A node with as many out as in may move too (a neutral move), but keeps the
/// move only when a predecessor followed it: then a branch that joins late (a sensor and what
/// it feeds) sits next to where it joins instead of dragging one long edge across the drawing,
/// while a plain chain stays where the longest path put it.
fn layers_of(n: usize, position: &[usize], chains: &[Chain]) -> Vec<usize> {
    let mut out = vec![Vec::new(); n];
    let mut into = vec![Vec::new(); n];
    for chain in chains {
        let (a, b) = chain.ends();
        out[a].push(b);
        into[b].push(a);
    }
    let mut order = vec![0; n];
    for (v, &p) in position.iter().enumerate() {
        order[p] = v;
    }
    let mut layer = vec![0usize; n];
    for &v in &order {
        for &w in &out[v] {
            layer[w] = layer[w].max(layer[v] + 1);
        }
    }
    let longest = layer.clone();
    let mut neutral = vec![false; n];
    for &v in order.iter().rev() {
        if out[v].len() < into[v].len() {
            continue;
        }
        if let Some(nearest) = out[v].iter().map(|&w| layer[w]).min() {
            neutral[v] = out[v].len() == into[v].len() && nearest - 1 > layer[v];
            layer[v] = nearest - 1;
        }
    }
    for &v in &order {
        if neutral[v] && into[v].iter().all(|&u| layer[u] == longest[u]) {
            layer[v] = longest[v];
        }
    }
    layer
}

/// How many dummies each chain gets: all it needs while the budget lasts, shortest edges
/// first; a chain refused is drawn straight across.
fn dummy_grants(n: usize, layer: &[usize], chains: &[Chain]) -> Vec<bool> {
    let spans: Vec<usize> = chains
        .iter()
        .map(|c| {
            let (a, b) = c.ends();
            layer[b] - layer[a]
        })
        .collect();
    let needed: usize = spans.iter().map(|s| s - 1).sum();
    let budget = DUMMIES_PER_ELEMENT * (n + chains.len()) + DUMMIES_FLOOR;
    if needed <= budget {
        return vec![true; chains.len()];
    }
    let mut by_span: Vec<usize> = (0..chains.len()).collect();
    by_span.sort_by_key(|&i| (spans[i], i));
    let mut granted = vec![false; chains.len()];
    let mut left = budget;
    for i in by_span {
        let cost = spans[i] - 1;
        if cost > left {
            break;
        }
        left -= cost;
        granted[i] = true;
    }
    granted
}

/// Adds the chain's dummies and adjacent-layer links to `g`.
fn link_chain(g: &mut Layered, chain: &mut Chain, granted: bool) {
    let (a, b) = chain.ends();
    let (la, lb) = (g.layer[a], g.layer[b]);
    if lb - la > 1 && !granted {
        return;
    }
    let mut previous = a;
    for l in la + 1..lb {
        let d = g.layer.len();
        g.layer.push(l);
        g.preds.push(Vec::new());
        g.succs.push(Vec::new());
        chain.dummies.push(d);
        g.succs[previous].push(d);
        g.preds[d].push(previous);
        previous = d;
    }
    g.succs[previous].push(b);
    g.preds[b].push(previous);
}
