//! Barnes–Hut t-SNE in 3D (van der Maaten 2014), following scikit-learn's
//! `TSNE(method="barnes_hut", init="pca")`: perplexity-calibrated affinities on
//! the kNN graph, 250 iterations of early exaggeration (12) with momentum 0.5,
//! then momentum 0.8, per-coordinate gains, learning rate `max(n / 48, 50)`.
//!
//! Written here rather than taken from a crate so that a run is bit-for-bit
//! reproducible: every parallel step computes per-point values and every sum
//! is taken in a fixed order. (The `bhtsne` crate was measured first: fast and
//! accurate, but its parallel reductions made two runs differ by ~1e-3.)

use rayon::prelude::*;
use serde::Serialize;

use crate::geometry::{Point3, norm2, sub};
use crate::neighbours::KnnGraph;
use crate::progress::{CancelToken, ProgressEvent, ProgressSink, Stage};

/// Below this, perplexity cannot be meaningful; PCA is used instead.
pub const MIN_POINTS: usize = 8;

const EARLY_EXAGGERATION: f32 = 12.0;
const EXAGGERATION_ITERATIONS: usize = 250;
const MIN_GAIN: f32 = 0.01;

#[derive(Clone, Debug, Serialize)]
pub struct TsneParams {
    pub perplexity: f32,
    /// Barnes–Hut accuracy: a cell is summarised when width / distance < theta.
    pub theta: f32,
    pub epochs: usize,
}

impl Default for TsneParams {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            theta: 0.5,
            epochs: 1000,
        }
    }
}

/// Returns the layout and, when the perplexity had to be lowered for a small
/// input, a note saying so.
pub fn tsne(
    knn: &KnnGraph,
    init: &[Point3],
    params: &TsneParams,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<(Vec<Point3>, Option<String>)> {
    let n = knn.n;
    let max_perplexity = ((n - 1) as f32 / 3.0).floor();
    let perplexity = params.perplexity.min(max_perplexity).max(1.0);
    let note = (perplexity < params.perplexity).then(|| {
        format!(
            "perplexity lowered from {} to {perplexity} for {n} images",
            params.perplexity
        )
    });
    let k = ((3.0 * perplexity) as usize).min(knn.k).max(1);
    let affinities = joint_probabilities(knn, k, perplexity);

    // scikit-learn's PCA initialisation: first axis scaled to std 1e-4.
    let mean0 = init.iter().map(|p| p[0] as f64).sum::<f64>() / n as f64;
    let std0 = (init
        .iter()
        .map(|p| (p[0] as f64 - mean0).powi(2))
        .sum::<f64>()
        / n as f64)
        .sqrt();
    let scale = if std0 > 0.0 {
        (1e-4 / std0) as f32
    } else {
        1.0
    };
    let mut y: Vec<Point3> = init.iter().map(|p| p.map(|x| x * scale)).collect();

    let learning_rate = (n as f32 / EARLY_EXAGGERATION / 4.0).max(50.0);
    let mut update = vec![[0.0f32; 3]; n];
    let mut gains = vec![[1.0f32; 3]; n];
    let epochs = params.epochs.max(1);
    progress.event(ProgressEvent::Started {
        stage: Stage::Layout,
        total: Some(epochs as u64),
    });
    for epoch in 0..epochs {
        super::epoch_checkpoint(epoch, 10, progress, cancel)?;
        let (exaggeration, momentum) = if epoch < EXAGGERATION_ITERATIONS {
            (EARLY_EXAGGERATION, 0.5)
        } else {
            (1.0, 0.8)
        };
        let gradient = gradient(&y, &affinities, exaggeration, params.theta);
        y.par_iter_mut()
            .zip(update.par_iter_mut())
            .zip(gains.par_iter_mut())
            .zip(gradient.par_iter())
            .for_each(|(((y, u), g), grad)| {
                for d in 0..3 {
                    if u[d] * grad[d] < 0.0 {
                        g[d] += 0.2;
                    } else {
                        g[d] *= 0.8;
                    }
                    g[d] = g[d].max(MIN_GAIN);
                    u[d] = momentum * u[d] - learning_rate * g[d] * grad[d];
                    y[d] += u[d];
                }
            });
        // Keep the layout centred, as the reference implementations do.
        let mut centre = [0.0f64; 3];
        for p in &y {
            for d in 0..3 {
                centre[d] += p[d] as f64;
            }
        }
        let centre = centre.map(|c| (c / n as f64) as f32);
        y.par_iter_mut().for_each(|p| {
            for d in 0..3 {
                p[d] -= centre[d];
            }
        });
    }
    progress.event(ProgressEvent::Advanced {
        stage: Stage::Layout,
        done: epochs as u64,
    });
    Ok((y, note))
}

/// Symmetric joint probabilities P in compressed rows (`rows[i]..rows[i+1]`).
struct Affinities {
    rows: Vec<usize>,
    columns: Vec<u32>,
    values: Vec<f32>,
}

/// Conditional P(j|i) by binary search for the Gaussian width that gives the
/// requested perplexity over the k nearest neighbours, then P = (P + Pᵀ) / 2n.
fn joint_probabilities(knn: &KnnGraph, k: usize, perplexity: f32) -> Affinities {
    let n = knn.n;
    let target = (perplexity as f64).ln();
    let conditional: Vec<Vec<(u32, f64)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let neighbours: Vec<(u32, f64)> = knn
                .neighbours(i)
                .take(k)
                .map(|(j, d)| (j as u32, (d as f64) * (d as f64)))
                .collect();
            let (mut beta, mut lo, mut hi) = (1.0f64, f64::NEG_INFINITY, f64::INFINITY);
            let min_d2 = neighbours.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
            let mut p = vec![0.0f64; neighbours.len()];
            for _ in 0..200 {
                // Shifting by the smallest distance leaves P unchanged and avoids underflow.
                let mut sum = 0.0;
                for (pj, (_, d2)) in p.iter_mut().zip(&neighbours) {
                    *pj = (-beta * (d2 - min_d2)).exp();
                    sum += *pj;
                }
                let sum = sum.max(1e-300);
                let mut entropy = 0.0;
                for (pj, (_, d2)) in p.iter_mut().zip(&neighbours) {
                    *pj /= sum;
                    entropy += beta * (d2 - min_d2) * *pj;
                }
                let entropy = entropy + sum.ln();
                let diff = entropy - target;
                if diff.abs() < 1e-5 {
                    break;
                }
                if diff > 0.0 {
                    lo = beta;
                    beta = if hi.is_finite() {
                        (beta + hi) / 2.0
                    } else {
                        beta * 2.0
                    };
                } else {
                    hi = beta;
                    beta = if lo.is_finite() {
                        (beta + lo) / 2.0
                    } else {
                        beta / 2.0
                    };
                }
            }
            neighbours
                .iter()
                .zip(p)
                .map(|((j, _), pj)| (*j, pj))
                .collect()
        })
        .collect();

    let mut triplets: Vec<(u32, u32, f64)> = Vec::with_capacity(2 * n * k);
    for (i, row) in conditional.iter().enumerate() {
        for &(j, p) in row {
            triplets.push((i as u32, j, p));
            triplets.push((j, i as u32, p));
        }
    }
    triplets.par_sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let norm = 2.0 * n as f64;
    let mut rows = vec![0usize; n + 1];
    let mut columns = Vec::with_capacity(triplets.len());
    let mut values: Vec<f32> = Vec::with_capacity(triplets.len());
    let mut last: Option<(u32, u32)> = None;
    let mut acc = 0.0f64;
    for &(i, j, p) in &triplets {
        if last == Some((i, j)) {
            acc += p;
            continue;
        }
        if let Some((li, lj)) = last {
            columns.push(lj);
            values.push((acc / norm) as f32);
            rows[li as usize + 1] += 1;
        }
        last = Some((i, j));
        acc = p;
    }
    if let Some((li, lj)) = last {
        columns.push(lj);
        values.push((acc / norm) as f32);
        rows[li as usize + 1] += 1;
    }
    for i in 0..n {
        rows[i + 1] += rows[i];
    }
    Affinities {
        rows,
        columns,
        values,
    }
}

/// The t-SNE gradient: exact attraction over P's non-zeros, Barnes–Hut repulsion.
fn gradient(y: &[Point3], p: &Affinities, exaggeration: f32, theta: f32) -> Vec<Point3> {
    let tree = Octree::build(y);
    // Per point: repulsive force (unnormalised) and its share of Z.
    let repulsion: Vec<(Point3, f64)> = (0..y.len())
        .into_par_iter()
        .map(|i| tree.repulsion(y, i, theta))
        .collect();
    // Fixed-order sum: the same Z on every run and thread count.
    let z: f64 = repulsion.iter().map(|r| r.1).sum::<f64>().max(1e-12);
    (0..y.len())
        .into_par_iter()
        .map(|i| {
            let mut attract = [0.0f32; 3];
            for e in p.rows[i]..p.rows[i + 1] {
                let j = p.columns[e] as usize;
                let diff = sub(y[i], y[j]);
                let q = 1.0 / (1.0 + norm2(diff));
                let w = p.values[e] * q;
                for d in 0..3 {
                    attract[d] += w * diff[d];
                }
            }
            let rep = repulsion[i].0;
            let mut g = [0.0f32; 3];
            for d in 0..3 {
                g[d] = 4.0 * (exaggeration * attract[d] - (rep[d] as f64 / z) as f32);
            }
            g
        })
        .collect()
}

/// Points per leaf: summaries below this size cost more than they save.
const LEAF_SIZE: usize = 8;

struct Node {
    centre_of_mass: Point3,
    count: u32,
    /// Edge length of the cell.
    width: f32,
    /// Children in `nodes`, or for a leaf the range of `order`.
    first: u32,
    len: u32,
    leaf: bool,
}

/// An octree over the points, rebuilt every iteration (sequentially, so its
/// shape never depends on threads).
struct Octree {
    nodes: Vec<Node>,
    order: Vec<u32>,
}

impl Octree {
    fn build(y: &[Point3]) -> Self {
        let mut lo = [f32::INFINITY; 3];
        let mut hi = [f32::NEG_INFINITY; 3];
        for p in y {
            for d in 0..3 {
                lo[d] = lo[d].min(p[d]);
                hi[d] = hi[d].max(p[d]);
            }
        }
        let width = (0..3)
            .map(|d| hi[d] - lo[d])
            .fold(0.0f32, f32::max)
            .max(1e-12)
            * (1.0 + 1e-5);
        let mut tree = Octree {
            nodes: Vec::with_capacity(2 * y.len() / LEAF_SIZE + 16),
            order: (0..y.len() as u32).collect(),
        };
        tree.nodes.push(Node {
            centre_of_mass: [0.0; 3],
            count: 0,
            width,
            first: 0,
            len: 0,
            leaf: true,
        });
        let mut scratch = Vec::new();
        tree.split(0, y, 0, y.len(), lo, width, 0, &mut scratch);
        tree
    }

    #[allow(clippy::too_many_arguments)]
    fn split(
        &mut self,
        node: usize,
        y: &[Point3],
        start: usize,
        end: usize,
        corner: Point3,
        width: f32,
        depth: u32,
        scratch: &mut Vec<u32>,
    ) {
        let count = end - start;
        let mut com = [0.0f64; 3];
        for &i in &self.order[start..end] {
            for d in 0..3 {
                com[d] += y[i as usize][d] as f64;
            }
        }
        let com = com.map(|c| (c / count.max(1) as f64) as f32);
        let node_ref = &mut self.nodes[node];
        node_ref.centre_of_mass = com;
        node_ref.count = count as u32;
        node_ref.width = width;
        if count <= LEAF_SIZE || depth >= 40 {
            node_ref.leaf = true;
            node_ref.first = start as u32;
            node_ref.len = count as u32;
            return;
        }
        // Counting sort of this range by octant.
        let half = width / 2.0;
        let octant = |p: &Point3| -> usize {
            (0..3)
                .map(|d| ((p[d] >= corner[d] + half) as usize) << d)
                .sum()
        };
        let mut counts = [0usize; 8];
        for &i in &self.order[start..end] {
            counts[octant(&y[i as usize])] += 1;
        }
        let mut offsets = [0usize; 9];
        for o in 0..8 {
            offsets[o + 1] = offsets[o] + counts[o];
        }
        scratch.clear();
        scratch.resize(count, 0);
        let mut cursor = offsets;
        for &i in &self.order[start..end] {
            let o = octant(&y[i as usize]);
            scratch[cursor[o]] = i;
            cursor[o] += 1;
        }
        self.order[start..end].copy_from_slice(scratch);

        let first_child = self.nodes.len();
        let children = counts.iter().filter(|&&c| c > 0).count() as u32;
        for _ in 0..children {
            self.nodes.push(Node {
                centre_of_mass: [0.0; 3],
                count: 0,
                width: half,
                first: 0,
                len: 0,
                leaf: true,
            });
        }
        let node_ref = &mut self.nodes[node];
        node_ref.leaf = false;
        node_ref.first = first_child as u32;
        node_ref.len = children;
        let mut child = first_child;
        for o in 0..8 {
            if counts[o] == 0 {
                continue;
            }
            let c: Point3 =
                std::array::from_fn(|d| corner[d] + if o >> d & 1 == 1 { half } else { 0.0 });
            self.split(
                child,
                y,
                start + offsets[o],
                start + offsets[o + 1],
                c,
                half,
                depth + 1,
                scratch,
            );
            child += 1;
        }
    }

    /// Σ_j q_ij² (y_i − y_j) and Σ_j q_ij over all j ≠ i, q = 1 / (1 + d²),
    /// with far cells summarised by their centre of mass.
    fn repulsion(&self, y: &[Point3], i: usize, theta: f32) -> (Point3, f64) {
        let yi = y[i];
        let mut force = [0.0f32; 3];
        let mut z = 0.0f64;
        let theta2 = theta * theta;
        // Depth ≤ 40 with ≤ 8 children a level: 512 slots never overflow.
        let mut stack = [0u32; 512];
        let mut top = 1;
        while top > 0 {
            top -= 1;
            let index = stack[top];
            let node = &self.nodes[index as usize];
            if node.leaf {
                for &j in &self.order[node.first as usize..(node.first + node.len) as usize] {
                    if j as usize == i {
                        continue;
                    }
                    let diff = sub(yi, y[j as usize]);
                    let q = 1.0 / (1.0 + norm2(diff));
                    z += q as f64;
                    let q2 = q * q;
                    for d in 0..3 {
                        force[d] += q2 * diff[d];
                    }
                }
                continue;
            }
            let diff = sub(yi, node.centre_of_mass);
            let d2 = norm2(diff);
            if node.width * node.width < theta2 * d2 {
                let q = 1.0 / (1.0 + d2);
                let m = node.count as f32;
                z += (m * q) as f64;
                let mq2 = m * q * q;
                for d in 0..3 {
                    force[d] += mq2 * diff[d];
                }
            } else {
                for child in node.first..node.first + node.len {
                    stack[top] = child;
                    top += 1;
                }
            }
        }
        (force, z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn barnes_hut_matches_the_exact_sum_closely() {
        let mut rng = Rng::new(4);
        let y: Vec<Point3> = (0..2000)
            .map(|_| {
                [
                    rng.normal_f32() * 5.0,
                    rng.normal_f32() * 5.0,
                    rng.normal_f32(),
                ]
            })
            .collect();
        let tree = Octree::build(&y);
        for i in [0, 17, 999, 1999] {
            let (f, z) = tree.repulsion(&y, i, 0.5);
            let (mut fe, mut ze) = ([0.0f64; 3], 0.0f64);
            for (j, yj) in y.iter().enumerate() {
                if j != i {
                    let diff = sub(y[i], *yj);
                    let q = 1.0 / (1.0 + norm2(diff) as f64);
                    ze += q;
                    for d in 0..3 {
                        fe[d] += q * q * diff[d] as f64;
                    }
                }
            }
            assert!((z - ze).abs() / ze < 0.01, "Z {z} vs {ze}");
            let scale = fe.iter().map(|x| x.abs()).fold(0.0, f64::max);
            for d in 0..3 {
                assert!(
                    (f[d] as f64 - fe[d]).abs() < 0.05 * scale,
                    "{f:?} vs {fe:?}"
                );
            }
            // theta = 0 is exact.
            let (f0, z0) = tree.repulsion(&y, i, 0.0);
            assert!((z0 - ze).abs() / ze < 1e-5);
            assert!((f0[0] as f64 - fe[0]).abs() < 1e-4 * scale.max(1e-9));
        }
    }

    #[test]
    fn affinities_are_symmetric_and_sum_to_one() {
        let e = crate::neighbours::tests::random_unit_rows(300, 8, 2);
        let knn = crate::neighbours::build(
            &e,
            45,
            crate::neighbours::KnnMethod::Exact,
            0,
            &crate::progress::NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
        let p = joint_probabilities(&knn, 45, 15.0);
        let total: f64 = p.values.iter().map(|v| *v as f64).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        let get = |i: usize, j: u32| {
            (p.rows[i]..p.rows[i + 1])
                .find(|&e| p.columns[e] == j)
                .map(|e| p.values[e])
        };
        for i in 0..300 {
            for e in p.rows[i]..p.rows[i + 1] {
                let j = p.columns[e];
                assert_eq!(get(j as usize, i as u32), Some(p.values[e]));
            }
        }
    }
}
