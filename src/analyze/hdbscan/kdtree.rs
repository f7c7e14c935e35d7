//! A k-d tree over the 3D layout, built for HDBSCAN's two queries: the distance
//! to the k-th nearest neighbour (core distances) and the nearest point of
//! another component under mutual reachability (Boruvka, in `mst.rs`).
//!
//! Why our own tree and not `kiddo`: Boruvka prunes whole nodes by the component
//! all their points belong to and by the smallest core distance inside them,
//! which needs per-node data that a general-purpose tree does not expose; and
//! scikit-learn compares float64 distances, so the tree works in f64 to give
//! bit-for-bit the same core and reachability distances (`kiddo`'s f64 tree
//! would double the memory of the points anyway). The tree is ~100 lines.

use std::ops::Range;

/// At most this many points in a leaf. Measured at 1M points: 16 and 32 the
/// same, 8 about 15% slower.
const LEAF_SIZE: usize = 16;

pub(super) struct KdTree {
    /// The points in tree order, widened to f64 (scikit-learn computes in f64).
    pub pts: Vec<[f64; 3]>,
    /// `order[t]`: the caller's index of tree point `t`.
    pub order: Vec<u32>,
    pub nodes: Vec<Node>,
    /// The leaves, in tree order (ascending `start`): they tile `0..n`.
    pub leaves: Vec<u32>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Node {
    /// Bounding box of the node's points.
    pub lo: [f64; 3],
    pub hi: [f64; 3],
    /// The node's points are `pts[start..end]`.
    pub start: u32,
    pub end: u32,
    /// First child (the second is `child + 1`); 0 for a leaf (node 0 is the
    /// root, never a child). Children always have larger ids than their parent,
    /// so a reverse scan of `nodes` is a bottom-up pass.
    pub child: u32,
}

impl Node {
    pub fn is_leaf(&self) -> bool {
        self.child == 0
    }
}

/// Squared Euclidean distance, summed x, y, z like scikit-learn's
/// `EuclideanDistance.rdist`, so the values are the same to the last bit.
#[inline]
pub(super) fn dist2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let dx = a[0] - b[0];
    let dy = a[1] - b[1];
    let dz = a[2] - b[2];
    dx * dx + dy * dy + dz * dz
}

/// Squared distance from `q` to the box of `node`: a lower bound of `dist2`
/// to any point inside, also in floating point (each step rounds monotonically).
#[inline]
pub(super) fn box_dist2(q: &[f64; 3], node: &Node) -> f64 {
    let mut gap = [0.0f64; 3];
    for d in 0..3 {
        if q[d] < node.lo[d] {
            gap[d] = node.lo[d] - q[d];
        } else if q[d] > node.hi[d] {
            gap[d] = q[d] - node.hi[d];
        }
    }
    gap[0] * gap[0] + gap[1] * gap[1] + gap[2] * gap[2]
}

impl KdTree {
    /// Builds the tree over `points` (all finite). Deterministic: splits at the
    /// median of the widest dimension, ties between equal coordinates broken by
    /// index, so the same input always gives the same tree.
    pub fn build(points: &[[f32; 3]]) -> Self {
        let n = points.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        let mut nodes = Vec::with_capacity(2 * n.div_ceil(LEAF_SIZE / 2).max(1));
        nodes.push(Node {
            lo: [0.0; 3],
            hi: [0.0; 3],
            start: 0,
            end: n as u32,
            child: 0,
        });
        // An explicit stack instead of recursion: each entry is a node whose
        // points are in place and whose box and children are still to do.
        let mut stack = vec![0usize];
        let mut leaves = Vec::new();
        while let Some(id) = stack.pop() {
            let (start, end) = (nodes[id].start as usize, nodes[id].end as usize);
            let mut lo = [f32::INFINITY; 3];
            let mut hi = [f32::NEG_INFINITY; 3];
            for &i in &order[start..end] {
                let p = points[i as usize];
                for d in 0..3 {
                    lo[d] = lo[d].min(p[d]);
                    hi[d] = hi[d].max(p[d]);
                }
            }
            nodes[id].lo = lo.map(f64::from);
            nodes[id].hi = hi.map(f64::from);
            if end - start <= LEAF_SIZE {
                // Depth first, left child first: leaves come in tree order.
                leaves.push(id as u32);
                continue;
            }
            let dim = (0..3)
                .max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b])))
                .unwrap_or(0);
            let mid = start + (end - start) / 2;
            order[start..end].select_nth_unstable_by(mid - start, |&a, &b| {
                points[a as usize][dim]
                    .total_cmp(&points[b as usize][dim])
                    .then(a.cmp(&b))
            });
            let child = nodes.len();
            nodes[id].child = child as u32;
            for (s, e) in [(start, mid), (mid, end)] {
                nodes.push(Node {
                    lo: [0.0; 3],
                    hi: [0.0; 3],
                    start: s as u32,
                    end: e as u32,
                    child: 0,
                });
            }
            stack.push(child + 1);
            stack.push(child);
        }
        let pts = order
            .iter()
            .map(|&i| points[i as usize].map(f64::from))
            .collect();
        KdTree {
            pts,
            order,
            nodes,
            leaves,
        }
    }

    /// The tree points of a run of leaves (`self.leaves[task]`).
    pub fn span(&self, task: &Range<usize>) -> Range<usize> {
        let start = self.nodes[self.leaves[task.start] as usize].start;
        let end = self.nodes[self.leaves[task.end - 1] as usize].end;
        start as usize..end as usize
    }

    /// Splits `data` (`per_point` items per tree point) into one mutable
    /// slice per task, for parallel writes.
    pub fn split_by_task<'a, T>(
        &self,
        tasks: &[Range<usize>],
        data: &'a mut [T],
        per_point: usize,
    ) -> Vec<&'a mut [T]> {
        let mut parts = Vec::with_capacity(tasks.len());
        let mut rest = data;
        for task in tasks {
            let (head, tail) = rest.split_at_mut(self.span(task).len() * per_point);
            parts.push(head);
            rest = tail;
        }
        parts
    }

    /// Splits the leaves into runs of about `points` points, in tree order:
    /// the unit of parallel work, so that each task owns a contiguous range.
    pub fn leaf_tasks(&self, points: usize) -> Vec<Range<usize>> {
        let mut tasks = Vec::new();
        let mut from = 0;
        for i in 1..=self.leaves.len() {
            let span = self.nodes[self.leaves[i - 1] as usize].end
                - self.nodes[self.leaves[from] as usize].start;
            if i == self.leaves.len() || span as usize >= points {
                tasks.push(from..i);
                from = i;
            }
        }
        tasks
    }

    /// The `k` nearest points to each point of leaf `leaf`, the point itself
    /// counting (scikit-learn's `kneighbors(X)` on the training set): for the
    /// leaf's i-th point, squared distances ascending in `dist[i*k..][..k]`,
    /// tree indices in `idx[i*k..][..k]` (among equal distances, in no
    /// particular order). `k <= n`. One walk of the tree for the whole leaf,
    /// pruned by box-to-box distance, instead of one walk per point.
    pub fn knn_leaf(&self, leaf: usize, k: usize, dist: &mut Vec<f64>, idx: &mut Vec<u32>) {
        let node = &self.nodes[leaf];
        let m = (node.end - node.start) as usize;
        dist.clear();
        dist.resize(m * k, f64::INFINITY);
        idx.clear();
        idx.resize(m * k, u32::MAX);
        let mut worst = f64::INFINITY;
        self.knn_visit(0, node, k, dist, idx, &mut worst);
    }

    /// `dist` holds, per query point, the k smallest squared distances seen so
    /// far, ascending; `worst` is the largest k-th of them.
    fn knn_visit(
        &self,
        id: usize,
        query: &Node,
        k: usize,
        dist: &mut [f64],
        idx: &mut [u32],
        worst: &mut f64,
    ) {
        let node = &self.nodes[id];
        if node.is_leaf() {
            let q0 = query.start as usize;
            for (i, (best, ids)) in dist
                .chunks_exact_mut(k)
                .zip(idx.chunks_exact_mut(k))
                .enumerate()
            {
                let q = &self.pts[q0 + i];
                let last = k - 1;
                if box_dist2(q, node) >= best[last] {
                    continue;
                }
                for t in node.start..node.end {
                    let d = dist2(q, &self.pts[t as usize]);
                    if d < best[last] {
                        // Insertion from the end: k is small (min_samples), and a
                        // loop beats `copy_within`'s call to memmove here.
                        let mut j = last;
                        while j > 0 && best[j - 1] > d {
                            best[j] = best[j - 1];
                            ids[j] = ids[j - 1];
                            j -= 1;
                        }
                        best[j] = d;
                        ids[j] = t;
                    }
                }
            }
            *worst = dist.chunks_exact(k).fold(0.0f64, |w, b| w.max(b[k - 1]));
            return;
        }
        let (a, b) = (node.child as usize, node.child as usize + 1);
        let da = box_box_dist2(query, &self.nodes[a]);
        let db = box_box_dist2(query, &self.nodes[b]);
        let (first, df, second, ds) = if da <= db {
            (a, da, b, db)
        } else {
            (b, db, a, da)
        };
        // A node no nearer than every query point's k-th distance changes no
        // distance (and ties there are not needed: see `mst.rs`).
        if df < *worst {
            self.knn_visit(first, query, k, dist, idx, worst);
        }
        if ds < *worst {
            self.knn_visit(second, query, k, dist, idx, worst);
        }
    }
}

/// Squared distance between two boxes (0 when they overlap).
#[inline]
pub(super) fn box_box_dist2(a: &Node, b: &Node) -> f64 {
    let gap = |d: usize| {
        if a.hi[d] < b.lo[d] {
            b.lo[d] - a.hi[d]
        } else if b.hi[d] < a.lo[d] {
            a.lo[d] - b.hi[d]
        } else {
            0.0
        }
    };
    let (x, y, z) = (gap(0), gap(1), gap(2));
    x * x + y * y + z * z
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random_points(n: usize, seed: u64) -> Vec<[f32; 3]> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|_| [rng.normal_f32(), rng.normal_f32(), rng.normal_f32() * 3.0])
            .collect()
    }

    #[test]
    fn tree_is_a_permutation_with_boxes_that_hold_their_points() {
        let points = random_points(1000, 1);
        let tree = KdTree::build(&points);
        let mut seen = tree.order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<u32>>());
        for node in &tree.nodes {
            assert!(node.end - node.start >= 1);
            for p in &tree.pts[node.start as usize..node.end as usize] {
                for (d, &c) in p.iter().enumerate() {
                    assert!(node.lo[d] <= c && c <= node.hi[d]);
                }
            }
            if !node.is_leaf() {
                let (a, b) = (
                    tree.nodes[node.child as usize],
                    tree.nodes[node.child as usize + 1],
                );
                assert_eq!((a.start, a.end, b.end), (node.start, b.start, node.end));
            } else {
                assert!((node.end - node.start) as usize <= LEAF_SIZE);
            }
        }
    }

    #[test]
    fn knn_matches_brute_force_with_duplicates() {
        let mut points = random_points(500, 2);
        // Exact duplicates and a stack of identical points.
        for i in 0..50 {
            points.push(points[i]);
        }
        points.extend(std::iter::repeat_n([9.0, 9.0, 9.0], 40));
        let tree = KdTree::build(&points);
        let (mut dist, mut idx) = (Vec::new(), Vec::new());
        let mut covered = 0;
        for &leaf in &tree.leaves {
            let node = tree.nodes[leaf as usize];
            assert!(node.is_leaf());
            assert_eq!(
                node.start as usize, covered,
                "leaves tile the points in order"
            );
            covered = node.end as usize;
        }
        assert_eq!(covered, tree.pts.len());
        for k in [1, 2, 5, 17, 45] {
            for &leaf in &tree.leaves {
                let node = tree.nodes[leaf as usize];
                tree.knn_leaf(leaf as usize, k, &mut dist, &mut idx);
                for (i, t) in (node.start as usize..node.end as usize).enumerate() {
                    let mut all: Vec<f64> =
                        tree.pts.iter().map(|p| dist2(&tree.pts[t], p)).collect();
                    all.sort_by(f64::total_cmp);
                    assert_eq!(dist[i * k..(i + 1) * k], all[..k]);
                    for (d, &j) in dist[i * k..(i + 1) * k].iter().zip(&idx[i * k..]) {
                        assert_eq!(*d, dist2(&tree.pts[t], &tree.pts[j as usize]));
                    }
                }
            }
        }
    }
}
