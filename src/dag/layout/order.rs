//! Crossing minimisation: layer by layer sweeps that sort each layer by the barycenter or
//! median of its neighbours in the layer just fixed, then swaps of adjacent nodes that remove
//! crossings; the order with the fewest crossings (exact count) wins. Ties keep the current
//! order, so the result depends on nothing but the input.

use super::rank::Layered;

/// Node-visits allowed to the sweeps of one layout: the number of sweeps is this divided by
/// the layered graph's size, kept between `MIN_SWEEPS` and `MAX_SWEEPS`.
const SWEEP_BUDGET: usize = 400_000;
/// Sweeps made whatever the size.
const MIN_SWEEPS: usize = 2;
/// Sweeps never exceeded (small graphs settle well before).
const MAX_SWEEPS: usize = 24;
/// Sweeps in a row without a better order after which the search stops.
const PATIENCE: usize = 4;
/// Passes of adjacent swaps over a layer per sweep.
const SWAP_PASSES: usize = 4;
/// Beyond this size adjacent swaps are skipped (sorting alone is good enough and cheaper).
const SWAP_LIMIT: usize = 400_000;

/// Layers in their final order.
#[derive(Debug)]
pub(super) struct Ordering {
    /// Nodes of each layer, top to bottom.
    pub layers: Vec<Vec<usize>>,
    /// Crossings of `layers`.
    pub crossings: u64,
}

/// Orders every layer of `g` to minimise crossings.
pub(super) fn minimise_crossings(g: &Layered) -> Ordering {
    let mut layers = g.layers.clone();
    let mut pos = vec![0; g.layer.len()];
    for layer in &layers {
        set_positions(layer, &mut pos);
    }
    let initial = count_crossings(g, &layers, &pos);
    let (mut best, mut fewest) = (layers.clone(), initial);
    let size = g.size().max(1);
    let sweeps = (SWEEP_BUDGET / size).clamp(MIN_SWEEPS, MAX_SWEEPS);
    let mut stale = 0;
    for sweep in 0..sweeps {
        if fewest == 0 || stale >= PATIENCE {
            break;
        }
        let downward = sweep % 2 == 0;
        let median = (sweep / 2) % 2 == 1;
        sort_layers(g, &mut layers, &mut pos, downward, median);
        if size <= SWAP_LIMIT {
            swap_adjacent(g, &mut layers, &mut pos);
        }
        let crossings = count_crossings(g, &layers, &pos);

        if crossings < fewest {
            (best, fewest, stale) = (layers.clone(), crossings, 0);
        } else {
            stale += 1;
        }
    }
    Ordering {
        layers: best,
        crossings: fewest,
    }
}

fn set_positions(layer: &[usize], pos: &mut [usize]) {
    for (i, &v) in layer.iter().enumerate() {
        pos[v] = i;
    }
}

/// One sweep: each layer in turn, downward from the second or upward from the last but one,
/// is sorted by its neighbours in the layer before it in the sweep.
fn sort_layers(
    g: &Layered,
    layers: &mut [Vec<usize>],
    pos: &mut [usize],
    downward: bool,
    median: bool,
) {
    let count = layers.len();
    let visit: Vec<usize> = if downward {
        (1..count).collect()
    } else {
        (0..count.saturating_sub(1)).rev().collect()
    };
    let neighbours = if downward { &g.preds } else { &g.succs };
    for l in visit {
        sort_layer(&mut layers[l], neighbours, pos, median);
        set_positions(&layers[l], pos);
    }
}

/// Sorts the nodes of `layer` that have neighbours by their key, in the slots those nodes
/// occupy; nodes without neighbours keep their slot.
fn sort_layer(layer: &mut [usize], neighbours: &[Vec<usize>], pos: &[usize], median: bool) {
    let mut keyed: Vec<(f64, usize, usize)> = Vec::new();
    let mut scratch = Vec::new();
    for (i, &v) in layer.iter().enumerate() {
        if neighbours[v].is_empty() {
            continue;
        }
        scratch.clear();
        scratch.extend(neighbours[v].iter().map(|&u| pos[u]));
        let key = if median {
            median_of(&mut scratch)
        } else {
            scratch.iter().sum::<usize>() as f64 / scratch.len() as f64
        };
        keyed.push((key, i, v));
    }
    keyed.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut sorted = keyed.into_iter().map(|(_, _, v)| v);
    for slot in layer.iter_mut() {
        if !neighbours[*slot].is_empty()
            && let Some(v) = sorted.next()
        {
            *slot = v;
        }
    }
}

/// The median of a non-empty list (the mean of the middle two for an even length).
fn median_of(values: &mut [usize]) -> f64 {
    if let [only] = values {
        return *only as f64;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid] as f64
    } else {
        (values[mid - 1] + values[mid]) as f64 / 2.0
    }
}

/// Swaps adjacent nodes of each layer while that removes crossings with both neighbouring
/// layers; a swap is made only when it strictly lowers the count, so this never adds any.
fn swap_adjacent(g: &Layered, layers: &mut [Vec<usize>], pos: &mut [usize]) {
    let (mut up, mut down) = (Flat::default(), Flat::default());
    let mut local: Vec<usize> = Vec::new();
    for layer in layers.iter_mut() {
        if layer.len() < 2 {
            continue;
        }
        up.fill(layer, &g.preds, pos);
        down.fill(layer, &g.succs, pos);
        local.clear();
        local.extend(0..layer.len());
        for _ in 0..SWAP_PASSES {
            let mut improved = false;
            for i in 0..local.len() - 1 {
                let (a, b) = (local[i], local[i + 1]);
                let keep = up.crossings(a, b) + down.crossings(a, b);
                let swap = up.crossings(b, a) + down.crossings(b, a);
                if swap < keep {
                    local.swap(i, i + 1);
                    improved = true;
                }
            }
            if !improved {
                break;
            }
        }
        let before = layer.clone();
        for (slot, &k) in layer.iter_mut().zip(&local) {
            *slot = before[k];
        }
        set_positions(layer, pos);
    }
}

/// The sorted neighbour positions of each node of a layer, in one buffer.
#[derive(Default)]
struct Flat {
    starts: Vec<usize>,
    values: Vec<usize>,
}

impl Flat {
    fn fill(&mut self, layer: &[usize], neighbours: &[Vec<usize>], pos: &[usize]) {
        self.starts.clear();
        self.values.clear();
        for &v in layer {
            let start = self.values.len();
            self.starts.push(start);
            self.values.extend(neighbours[v].iter().map(|&u| pos[u]));
            self.values[start..].sort_unstable();
        }
        self.starts.push(self.values.len());
    }

    fn list(&self, k: usize) -> &[usize] {
        &self.values[self.starts[k]..self.starts[k + 1]]
    }

    /// Crossings between the edges of local node `a` placed just above local node `b`.
    fn crossings(&self, a: usize, b: usize) -> u64 {
        pair_crossings(self.list(a), self.list(b))
    }
}

/// Crossings between the edges of a node above whose neighbours sit at `upper` and a node below
/// whose neighbours sit at `lower` (both sorted): pairs with the upper's neighbour lower down.
fn pair_crossings(upper: &[usize], lower: &[usize]) -> u64 {
    let mut below = 0;
    let mut total = 0u64;
    for &x in upper {
        while below < lower.len() && lower[below] < x {
            below += 1;
        }
        total += below as u64;
    }
    total
}

/// Exact number of crossings of the layered drawing (Barth, Jünger and Mutzel: inversions
/// counted with a Fenwick tree), O(E log V).
pub(super) fn count_crossings(g: &Layered, layers: &[Vec<usize>], pos: &[usize]) -> u64 {
    let mut total = 0;
    let mut sequence = Vec::new();
    for pair in layers.windows(2) {
        sequence.clear();
        for &u in &pair[0] {
            let start = sequence.len();
            sequence.extend(g.succs[u].iter().map(|&w| pos[w]));
            sequence[start..].sort_unstable();
        }
        total += inversions(&sequence, pair[1].len());
    }
    total
}

/// Pairs `i < j` with `values[i] > values[j]`, for values below `bound`.
fn inversions(values: &[usize], bound: usize) -> u64 {
    let mut tree = vec![0u64; bound + 1];
    let mut total = 0;
    for (seen, &v) in values.iter().enumerate() {
        let mut at_most = 0;
        let mut i = v + 1;
        while i > 0 {
            at_most += tree[i];
            i &= i - 1;
        }
        total += seen as u64 - at_most;
        let mut i = v + 1;
        while i <= bound {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    }
    total
}
