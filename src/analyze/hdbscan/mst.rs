//! Core distances and the minimum spanning tree of the mutual-reachability
//! graph, by Boruvka over the k-d tree (the approach of hdbscan's
//! `boruvka_kdtree` and of fast_hdbscan), in O(n log n)-ish time instead of
//! the O(n²) of Prim's on all pairs.
//!
//! Mutual reachability: `mreach(a, b) = max(core(a), core(b), |a - b|)`.
//!
//! Each round finds, for every component, its lightest edge to another
//! component, and adds them all. With edges ordered by `(weight, lower end,
//! higher end)` (a strict total order), those edges never form a cycle and the
//! result is the unique minimum spanning tree under that order, whatever the
//! thread count: see [`Round::search`] for why the parallel pruning cannot
//! change it.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::kdtree::{KdTree, Node, box_box_dist2, box_dist2, dist2};
use crate::progress::{CancelToken, Cancelled};

/// Points handed to one rayon task: big enough to amortise the task, small
/// enough that a cancel is seen within a few milliseconds.
const CHUNK: usize = 2048;

/// An MST edge between tree points `a` and `b` (tree order) of weight `w`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Edge {
    pub a: u32,
    pub b: u32,
    pub w: f64,
}

impl Edge {
    /// The strict total order that makes the MST unique.
    #[cfg(test)]
    pub fn key(&self) -> (f64, u32, u32) {
        (self.w, self.a.min(self.b), self.a.max(self.b))
    }
}

pub(super) fn key_less(a: (f64, u32, u32), b: (f64, u32, u32)) -> bool {
    a.0.total_cmp(&b.0)
        .then(a.1.cmp(&b.1))
        .then(a.2.cmp(&b.2))
        .is_lt()
}

/// Neighbour lists are kept for the first Boruvka round only while they
/// take at most this many entries (64 MiB); past that, round one searches.
const MAX_LIST_ENTRIES: usize = 1 << 24;

/// Core distances, and the first Boruvka round's answer where the
/// neighbour lists already prove it.
pub(super) struct Cores {
    /// Per tree point: distance to its `k`-th nearest point, itself included
    /// (scikit-learn's definition of `min_samples`).
    pub core: Vec<f64>,
    /// Per tree point: its lightest edge `(core, other end)` when its
    /// neighbour list proves it (see [`core_distances`]); `(inf, NONE)` when
    /// it has to be searched.
    pub first: Vec<(f64, u32)>,
}

/// Core distances of all tree points, from their `k` nearest neighbours.
///
/// The lightest edge of a point q weighs at least core(q), and exactly that
/// to every neighbour j within core(q) whose own core(j) <= core(q). When the
/// (k+1)-th neighbour is farther than the k-th, the list holds every point
/// within core(q), so the lowest-indexed such j is q's lightest edge under
/// the total order, with no search: in 3D that is most points.
pub(super) fn core_distances(
    tree: &KdTree,
    k: usize,
    cancel: &CancelToken,
) -> Result<Cores, Cancelled> {
    let n = tree.pts.len();
    let k = k.clamp(1, n);
    // k + 1 neighbours tell whether the k-th ties with the next one.
    let kk = (k + 1).min(n);
    let keep = n.saturating_mul(k) <= MAX_LIST_ENTRIES;
    let mut core = vec![0.0f64; n];
    // Per point: its k neighbours when the list is complete, else NONE first.
    let mut lists: Vec<u32> = if keep { vec![NONE; n * k] } else { Vec::new() };
    let tasks = tree.leaf_tasks(CHUNK);
    let (leaves, nodes) = (&tree.leaves, &tree.nodes);
    let core_parts = tree.split_by_task(&tasks, &mut core, 1);
    let list_parts = tree.split_by_task(&tasks, &mut lists, if keep { k } else { 0 });
    tasks
        .par_iter()
        .zip(core_parts.into_par_iter().zip(list_parts.into_par_iter()))
        .try_for_each_init(
            || (Vec::new(), Vec::new()),
            |(dist, idx), (task, (core_out, list_out))| {
                cancel.check()?;
                let base = tree.span(task).start;
                for &leaf in &leaves[task.clone()] {
                    let node = &nodes[leaf as usize];
                    tree.knn_leaf(leaf as usize, kk, dist, idx);
                    for (i, q) in (node.start as usize..node.end as usize).enumerate() {
                        let (d, ids) = (&dist[i * kk..(i + 1) * kk], &idx[i * kk..(i + 1) * kk]);
                        core_out[q - base] = d[k - 1].sqrt();
                        let complete = kk == k || d[k] > d[k - 1];
                        if keep && complete {
                            list_out[(q - base) * k..(q - base + 1) * k].copy_from_slice(&ids[..k]);
                        }
                    }
                }
                Ok(())
            },
        )?;
    let mut first = vec![(f64::INFINITY, NONE); n];
    if keep {
        first
            .par_iter_mut()
            .zip(lists.par_chunks(k))
            .enumerate()
            .for_each(|(q, (f, list))| {
                if list[0] == NONE {
                    return;
                }
                let j = list
                    .iter()
                    .copied()
                    .filter(|&j| j as usize != q && core[j as usize] <= core[q])
                    .min();
                if let Some(j) = j {
                    *f = (core[q], j);
                }
            });
    }
    Ok(Cores { core, first })
}

/// Sequential union-find with path halving and union by size.
struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    /// Joins the sets of `a` and `b`; false when they already were one.
    fn union(&mut self, a: u32, b: u32) -> bool {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        if self.size[ra as usize] < self.size[rb as usize] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb as usize] = ra;
        self.size[ra as usize] += self.size[rb as usize];
        true
    }
}

const NONE: u32 = u32::MAX;

/// What one Boruvka round reads: the tree plus the current components.
struct Round<'a> {
    tree: &'a KdTree,
    core: &'a [f64],
    /// Per node: the smallest core distance of its points (a lower bound of
    /// any reachability distance into the node).
    node_min_core: &'a [f64],
    /// Per tree point: its component (the union-find root).
    comp: &'a [u32],
    /// Per node: the component of all its points, or `NONE` if they differ.
    node_comp: &'a [u32],
    /// Per component root: the lightest edge weight any of its points has
    /// found so far this round (f64 bits; weights are >= 0, where the bit
    /// patterns order like the numbers, so `fetch_min` on bits works).
    bound: &'a [AtomicU64],
}

/// Lexicographic (weight, other end): the per-point order, which for a fixed
/// point is the total order of [`Edge::key`].
#[inline]
fn better(w: f64, t: u32, best: (f64, u32)) -> bool {
    w < best.0 || (w == best.0 && t < best.1)
}

#[inline]
fn load(bound: &AtomicU64) -> f64 {
    f64::from_bits(bound.load(Ordering::Relaxed))
}

impl Round<'_> {
    /// Improves `best`, tree point `q`'s lightest known edge to another
    /// component, to its lightest one, as `(weight, other end)` with the lower
    /// end winning ties; `lower` is a lower bound of that weight.
    ///
    /// Why the result of the round does not depend on the threads: `bound` is
    /// shared and lowered while other points search, so how much a search
    /// prunes varies, but it only prunes what is *strictly* heavier than an
    /// edge some point of the component really has. The component's lightest
    /// edge (by weight, then ends) is never pruned from its own point's
    /// search, so the minimum taken over the component is always the same.
    fn search(&self, q: usize, best: &mut (f64, u32), lower: f64) {
        let c = self.comp[q];
        let core_q = self.core[q];
        let bound = &self.bound[c as usize];
        if lower.max(core_q) > load(bound) {
            // No edge of q can be the component's lightest.
            return;
        }
        self.visit(0, &self.tree.pts[q], c, core_q, bound, best);
    }

    fn visit(
        &self,
        id: usize,
        p: &[f64; 3],
        c: u32,
        core_q: f64,
        bound: &AtomicU64,
        best: &mut (f64, u32),
    ) {
        let node = &self.tree.nodes[id];
        if node.is_leaf() {
            let limit = best.0.min(load(bound));
            for t in node.start..node.end {
                let (ct, core_t) = (self.comp[t as usize], self.core[t as usize]);
                if ct == c || core_t > limit {
                    continue;
                }
                let d = dist2(p, &self.tree.pts[t as usize]).sqrt();
                let w = core_q.max(core_t).max(d);
                if better(w, t, *best) {
                    *best = (w, t);
                    bound.fetch_min(w.to_bits(), Ordering::Relaxed);
                }
            }
            return;
        }
        let (a, b) = (node.child as usize, node.child as usize + 1);
        let (na, nb) = (&self.tree.nodes[a], &self.tree.nodes[b]);
        let (da, db) = (box_dist2(p, na), box_dist2(p, nb));
        let order = if da <= db {
            [(a, da), (b, db)]
        } else {
            [(b, db), (a, da)]
        };
        for (child, d2) in order {
            if self.node_comp[child] == c {
                continue;
            }
            // Lower bound of any edge into the child; `sqrt` is monotonic, so
            // comparing after it is exact.
            let lower = d2.sqrt().max(core_q).max(self.node_min_core[child]);
            if lower <= best.0.min(load(bound)) {
                self.visit(child, p, c, core_q, bound, best);
            }
        }
    }

    /// [`Round::search`] for all points of leaf `leaf` at once: one walk of
    /// the tree, pruned by box-to-box distances, instead of one walk per
    /// point. Every round after the first is most of its work here.
    fn search_leaf(&self, leaf: usize, best: &mut [(f64, u32)], lower: &[f64]) {
        let node = &self.tree.nodes[leaf];
        let start = node.start as usize;
        let mut active = [0u8; 64];
        let mut count = 0;
        let mut min_core = f64::INFINITY;
        // The one component of all active points, or NONE.
        let mut common = NONE;
        let cores = &self.core[start..start + best.len()];
        for (i, (&low, &core_q)) in lower.iter().zip(cores).enumerate() {
            let c = self.comp[start + i];
            if low.max(core_q) <= load(&self.bound[c as usize]) {
                common = if count == 0 || common == c { c } else { NONE };
                active[count] = i as u8;
                count += 1;
                min_core = min_core.min(core_q);
            }
        }
        if count == 0 {
            return;
        }
        let mut batch = Batch {
            leaf: node,
            start,
            active: &active[..count],
            min_core,
            common,
            worst: 0.0,
        };
        self.update_worst(&mut batch, best);
        self.visit_batch(0, &mut batch, best);
    }

    fn visit_batch(&self, id: usize, batch: &mut Batch, best: &mut [(f64, u32)]) {
        if batch.common != NONE && self.node_comp[id] == batch.common {
            return;
        }
        let node = &self.tree.nodes[id];
        let lower = box_box_dist2(batch.leaf, node)
            .sqrt()
            .max(batch.min_core)
            .max(self.node_min_core[id]);
        if lower > batch.worst {
            return;
        }
        if node.is_leaf() {
            for &i in batch.active {
                let i = i as usize;
                let q = batch.start + i;
                let (c, core_q) = (self.comp[q], self.core[q]);
                if self.node_comp[id] == c {
                    continue;
                }
                let bound = &self.bound[c as usize];
                let limit = best[i].0.min(load(bound));
                let p = &self.tree.pts[q];
                if core_q.max(box_dist2(p, node).sqrt()) > limit {
                    continue;
                }
                for t in node.start..node.end {
                    let (ct, core_t) = (self.comp[t as usize], self.core[t as usize]);
                    if ct == c || core_t > limit {
                        continue;
                    }
                    let d = dist2(p, &self.tree.pts[t as usize]).sqrt();
                    let w = core_q.max(core_t).max(d);
                    if better(w, t, best[i]) {
                        best[i] = (w, t);
                        bound.fetch_min(w.to_bits(), Ordering::Relaxed);
                    }
                }
            }
            self.update_worst(batch, best);
            return;
        }
        let (a, b) = (node.child as usize, node.child as usize + 1);
        let da = box_box_dist2(batch.leaf, &self.tree.nodes[a]);
        let db = box_box_dist2(batch.leaf, &self.tree.nodes[b]);
        let (first, second) = if da <= db { (a, b) } else { (b, a) };
        self.visit_batch(first, batch, best);
        self.visit_batch(second, batch, best);
    }

    /// The largest of the active points' limits: a node farther than that
    /// can improve none of them.
    fn update_worst(&self, batch: &mut Batch, best: &[(f64, u32)]) {
        batch.worst = batch.active.iter().fold(0.0f64, |m, &i| {
            let q = batch.start + i as usize;
            let bound = load(&self.bound[self.comp[q] as usize]);
            m.max(best[i as usize].0.min(bound))
        });
    }
}

/// A query leaf whose points search together.
struct Batch<'a> {
    leaf: &'a Node,
    /// Tree index of the leaf's first point.
    start: usize,
    /// The leaf's points still able to hold their component's lightest edge.
    active: &'a [u8],
    min_core: f64,
    /// The component of all active points, or `NONE` when they differ.
    common: u32,
    /// The largest limit among the active points (see `update_worst`).
    worst: f64,
}

/// The minimum spanning tree of the mutual-reachability graph, `n - 1` edges
/// in tree order, unsorted.
pub(super) fn boruvka(
    tree: &KdTree,
    cores: Cores,
    cancel: &CancelToken,
) -> Result<Vec<Edge>, Cancelled> {
    let Cores { core, first } = cores;
    let core = &core[..];
    let n = tree.pts.len();
    let nodes = &tree.nodes;
    let mut edges: Vec<Edge> = Vec::with_capacity(n.saturating_sub(1));
    if n < 2 {
        return Ok(edges);
    }

    let mut node_min_core = vec![f64::INFINITY; nodes.len()];
    for id in (0..nodes.len()).rev() {
        let node = &nodes[id];
        node_min_core[id] = if node.is_leaf() {
            core[node.start as usize..node.end as usize]
                .iter()
                .fold(f64::INFINITY, |m, &c| m.min(c))
        } else {
            node_min_core[node.child as usize].min(node_min_core[node.child as usize + 1])
        };
    }
    // Work is handed out by whole leaves, in tree order, about CHUNK points a task.
    let leaves = &tree.leaves;
    let tasks = tree.leaf_tasks(CHUNK);
    let mut uf = UnionFind::new(n);
    let mut comp: Vec<u32> = (0..n as u32).collect();
    let mut node_comp = vec![NONE; nodes.len()];
    let bound: Vec<AtomicU64> = (0..n)
        .map(|_| AtomicU64::new(f64::INFINITY.to_bits()))
        .collect();
    // Per point, the lightest edge found to another component: it stays a
    // real edge (an upper bound) while that component has not merged with
    // the point's. Round one starts from what the neighbour lists proved.
    let mut found: Vec<(f64, u32)> = first;
    // Per point, a lower bound of its lightest edge to another component.
    // Components only merge, so the set of other points only shrinks and a
    // bound stays valid in later rounds: it lets points skip the search once
    // their component has an edge lighter than it.
    let mut lower: Vec<f64> = core.to_vec();
    let mut best_of: Vec<(f64, u32, u32)> = vec![(f64::INFINITY, NONE, NONE); n];

    let mut round_no = 0;
    while edges.len() < n - 1 {
        cancel.check()?;
        round_no += 1;
        // Components of the nodes, bottom-up.
        for id in (0..nodes.len()).rev() {
            let node = &nodes[id];
            node_comp[id] = if node.is_leaf() {
                let first = comp[node.start as usize];
                if comp[node.start as usize..node.end as usize]
                    .iter()
                    .all(|&c| c == first)
                {
                    first
                } else {
                    NONE
                }
            } else {
                let (a, b) = (
                    node_comp[node.child as usize],
                    node_comp[node.child as usize + 1],
                );
                if a == b { a } else { NONE }
            };
        }
        bound
            .par_iter()
            .for_each(|b| b.store(f64::INFINITY.to_bits(), Ordering::Relaxed));
        // Last round's edges that still leave their component give every
        // component a bound before any search runs.
        found.par_iter_mut().enumerate().for_each(|(q, f)| {
            if f.1 != NONE && comp[f.1 as usize] != comp[q] {
                bound[comp[q] as usize].fetch_min(f.0.to_bits(), Ordering::Relaxed);
            } else {
                *f = (f64::INFINITY, NONE);
            }
        });
        let round = Round {
            tree,
            core,
            node_min_core: &node_min_core,
            comp: &comp,
            node_comp: &node_comp,
            bound: &bound,
        };
        let slices = tree.split_by_task(&tasks, &mut found, 1);
        let first_round = round_no == 1;
        tasks
            .par_iter()
            .zip(slices.into_par_iter())
            .try_for_each(|(task, out)| {
                cancel.check()?;
                let base = tree.span(task).start;
                for &leaf in &leaves[task.clone()] {
                    let node = &nodes[leaf as usize];
                    let (s, e) = (node.start as usize, node.end as usize);
                    let best = &mut out[s - base..e - base];
                    // Leaves of one component search together; in mixed ones
                    // (most leaves in the first rounds) the points search
                    // alone, which measured faster there.
                    if node_comp[leaf as usize] != NONE && !first_round {
                        round.search_leaf(leaf as usize, best, &lower[s..e]);
                    } else {
                        for (b, q) in best.iter_mut().zip(s..e) {
                            // In round one, a proved edge is already the lightest.
                            if !(first_round && b.1 != NONE) {
                                round.search(q, b, lower[q]);
                            }
                        }
                    }
                }
                Ok::<(), Cancelled>(())
            })?;
        // What the searches proved (see `Round::search`): no edge of q is
        // lighter than its component's lightest.
        lower.par_iter_mut().enumerate().for_each(|(q, l)| {
            *l = l.max(load(&bound[comp[q] as usize]));
        });

        // Lightest edge of each component, by the total order.
        for (q, &(w, t)) in found.iter().enumerate() {
            if t == NONE {
                continue;
            }
            let key = (w, (q as u32).min(t), (q as u32).max(t));
            let slot = &mut best_of[comp[q] as usize];
            if slot.1 == NONE || key_less(key, *slot) {
                *slot = key;
            }
        }
        let before = edges.len();
        for slot in best_of.iter_mut() {
            if slot.1 != NONE {
                let (w, a, b) = *slot;
                if uf.union(a, b) {
                    edges.push(Edge { a, b, w });
                }
                *slot = (f64::INFINITY, NONE, NONE);
            }
        }
        if edges.len() == before {
            // Cannot happen with finite points (the graph is complete); stop
            // rather than loop if it ever did.
            break;
        }
        for (q, c) in comp.iter_mut().enumerate() {
            *c = uf.find(q as u32);
        }
    }
    Ok(edges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Prim's on all pairs with the same total order: the reference MST.
    fn prim_reference(tree: &KdTree, core: &[f64]) -> Vec<(f64, u32, u32)> {
        let n = tree.pts.len();
        let mreach = |a: usize, b: usize| {
            core[a]
                .max(core[b])
                .max(dist2(&tree.pts[a], &tree.pts[b]).sqrt())
        };
        let mut in_tree = vec![false; n];
        let mut best: Vec<(f64, u32, u32)> = vec![(f64::INFINITY, u32::MAX, u32::MAX); n];
        let mut out = Vec::new();
        let mut cur = 0usize;
        for _ in 0..n - 1 {
            in_tree[cur] = true;
            for j in 0..n {
                if !in_tree[j] {
                    let key = (
                        mreach(cur, j),
                        (cur as u32).min(j as u32),
                        (cur as u32).max(j as u32),
                    );
                    if key_less(key, best[j]) {
                        best[j] = key;
                    }
                }
            }
            let next = (0..n)
                .filter(|&j| !in_tree[j])
                .min_by(|&a, &b| {
                    let (x, y) = (best[a], best[b]);
                    if key_less(x, y) {
                        std::cmp::Ordering::Less
                    } else if key_less(y, x) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                })
                .unwrap();
            out.push(best[next]);
            cur = next;
        }
        out.sort_by(|x, y| {
            if key_less(*x, *y) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        });
        out
    }

    fn check(points: &[[f32; 3]], k: usize) {
        let tree = KdTree::build(points);
        let cancel = CancelToken::new();
        let cores = core_distances(&tree, k, &cancel).unwrap();
        let core = cores.core.clone();
        let mut got: Vec<(f64, u32, u32)> = boruvka(&tree, cores, &cancel)
            .unwrap()
            .iter()
            .map(Edge::key)
            .collect();
        got.sort_by(|x, y| {
            if key_less(*x, *y) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        });
        assert_eq!(got, prim_reference(&tree, &core));
    }

    #[test]
    fn boruvka_equals_prim_on_blobs_and_on_ties() {
        let mut rng = Rng::new(5);
        let mut points: Vec<[f32; 3]> = (0..600)
            .map(|i| {
                let c = (i % 3) as f32 * 6.0;
                [c + rng.normal_f32(), rng.normal_f32(), rng.normal_f32()]
            })
            .collect();
        for k in [1, 2, 5, 12] {
            check(&points, k);
        }
        // A grid: a great many equal distances, and duplicated points.
        points = (0..512)
            .map(|i| [(i % 8) as f32, ((i / 8) % 8) as f32, (i / 64) as f32])
            .collect();
        points.extend_from_slice(&points.clone()[..40]);
        for k in [1, 3, 7] {
            check(&points, k);
        }
    }

    #[test]
    fn cancel_stops_the_tree() {
        let points: Vec<[f32; 3]> = (0..5000).map(|i| [i as f32, 0.0, 0.0]).collect();
        let tree = KdTree::build(&points);
        let cancel = CancelToken::new();
        cancel.cancel();
        assert!(core_distances(&tree, 5, &cancel).is_err());
        let cores = Cores {
            core: vec![0.0; 5000],
            first: vec![(f64::INFINITY, NONE); 5000],
        };
        assert!(boruvka(&tree, cores, &cancel).is_err());
    }
}
