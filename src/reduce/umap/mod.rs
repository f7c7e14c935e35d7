//! UMAP, as umap-learn computes it, deterministic for a seed on any number of
//! threads:
//!
//! * the fuzzy simplicial set comes from `umap-rs` (its graph equals
//!   umap-learn's `fuzzy_simplicial_set` to 3e-6 per edge, measured on
//!   MNIST-10k and 100k), taken as CSR rows;
//! * [`find_ab_params`]: the (a, b) of the low-dimensional curve, fitted as
//!   umap-learn fits it (least squares by Levenberg–Marquardt). `umap-rs` fits
//!   it by plain gradient descent, stops at 1.516 / 0.900 instead of
//!   1.577 / 0.895 for min_dist 0.1, and exposes it only through its graph;
//! * [`sgd`]: umap-learn's layout SGD (attraction along graph edges moving both
//!   ends, negative sampling, linearly decaying learning rate), block-parallel.
//!   `umap-rs`'s own optimiser is Hogwild on the thread RNG, so a seeded run
//!   could not be reproduced with it.

use anyhow::{bail, ensure};
use ndarray::ArrayView2;
use serde::Serialize;
use umap_rs::{GraphParams, ManifoldParams, Umap, UmapConfig};

use crate::Embeddings;
use crate::geometry::Point3;
use crate::neighbours::KnnGraph;
use crate::progress::{CancelToken, ProgressEvent, ProgressSink, Stage};
use crate::rng::Rng;

pub mod sgd;

/// Below this, UMAP's neighbourhood graph means little; PCA is used instead.
pub const MIN_POINTS: usize = 4;

#[derive(Clone, Debug, Serialize)]
pub struct UmapParams {
    /// Neighbourhood size, the point itself included (as in umap-learn).
    pub n_neighbors: usize,
    pub min_dist: f32,
    pub spread: f32,
    /// `None`: 500 up to 10,000 points, 200 above (umap-learn's rule).
    pub n_epochs: Option<usize>,
    pub learning_rate: f32,
    pub negative_sample_rate: usize,
    pub repulsion_strength: f32,
}

impl Default for UmapParams {
    fn default() -> Self {
        Self {
            n_neighbors: 15,
            min_dist: 0.1,
            spread: 1.0,
            n_epochs: None,
            learning_rate: 1.0,
            negative_sample_rate: 5,
            repulsion_strength: 1.0,
        }
    }
}

impl UmapParams {
    /// Errors that tell the user which setting to change.
    fn check(&self) -> anyhow::Result<()> {
        ensure!(
            self.n_neighbors >= 2,
            "UMAP needs n_neighbors of at least 2 (the point itself and one more); got {}",
            self.n_neighbors
        );
        ensure!(
            self.spread.is_finite() && self.spread > 0.0,
            "UMAP's spread must be a positive number; got {}",
            self.spread
        );
        ensure!(
            self.min_dist.is_finite() && (0.0..=self.spread).contains(&self.min_dist),
            "UMAP's min_dist must lie between 0 and spread ({}); got {}",
            self.spread,
            self.min_dist
        );
        ensure!(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "UMAP's learning rate must be positive; got {}",
            self.learning_rate
        );
        ensure!(
            self.repulsion_strength.is_finite() && self.repulsion_strength >= 0.0,
            "UMAP's repulsion strength must be 0 or more; got {}",
            self.repulsion_strength
        );
        ensure!(
            self.n_epochs != Some(0),
            "UMAP needs at least one epoch; got n_epochs = 0"
        );
        Ok(())
    }

    /// umap-learn's rule: 500 epochs up to 10,000 points, 200 above.
    pub(crate) fn epochs_for(&self, n: usize) -> usize {
        self.n_epochs
            .unwrap_or(if n <= 10_000 { 500 } else { 200 })
            .max(1)
    }
}

pub fn umap(
    embeddings: &Embeddings,
    knn: &KnnGraph,
    init: &[Point3],
    params: &UmapParams,
    seed: u64,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<Vec<Point3>> {
    params.check()?;
    let n = embeddings.n;
    ensure!(
        n >= MIN_POINTS,
        "UMAP needs at least {MIN_POINTS} points; got {n} (use PCA for fewer)"
    );
    ensure!(
        knn.n == n && init.len() == n,
        "internal: UMAP got {n} embeddings, a neighbour graph of {} and an initial layout of {}",
        knn.n,
        init.len()
    );
    // umap-learn's neighbourhoods count the point itself; the kNN graph holds the others.
    let n_neighbors = params.n_neighbors.min(n - 1).max(2);
    let others = n_neighbors - 1;
    ensure!(
        knn.k >= others,
        "internal: the neighbour graph holds {} neighbours, UMAP needs {others}",
        knn.k
    );
    check_inputs(knn, others, init)?;
    let n_epochs = params.epochs_for(n);

    let graph = fuzzy_graph(embeddings, knn, params, n_neighbors, n_epochs)?;
    cancel.check()?;
    let (a, b) = find_ab_params(params.spread, params.min_dist);

    let mut rng = Rng::new(seed);
    let start = initial_layout(init, &mut rng);
    let mut optimiser = sgd::Sgd::new(
        &graph.row_start,
        &graph.cols,
        &graph.weights,
        start,
        sgd::SgdParams {
            a,
            b,
            gamma: params.repulsion_strength,
            initial_alpha: params.learning_rate,
            negative_sample_rate: params.negative_sample_rate,
            n_epochs,
        },
    );
    drop(graph);
    progress.event(ProgressEvent::Started {
        stage: Stage::Layout,
        total: Some(n_epochs as u64),
    });
    // Above 100k points an epoch takes long enough (~1 s at 1M on 2 cores) to
    // check for cancellation after every one.
    let check_every = if n > 100_000 { 1 } else { 5 };
    for epoch in 0..n_epochs {
        super::epoch_checkpoint(epoch, check_every, progress, cancel)?;
        optimiser.epoch(epoch, seed);
    }
    progress.event(ProgressEvent::Advanced {
        stage: Stage::Layout,
        done: n_epochs as u64,
    });
    Ok(optimiser.into_positions())
}

/// The symmetric fuzzy graph in CSR form, row j holding the edges whose head is j.
struct FuzzyGraph {
    row_start: Vec<usize>,
    cols: Vec<u32>,
    weights: Vec<f32>,
}

/// umap-rs's fuzzy simplicial set over the kNN graph, with umap-learn's
/// pruning: edges that would be sampled less than once in `n_epochs` go.
fn fuzzy_graph(
    embeddings: &Embeddings,
    knn: &KnnGraph,
    params: &UmapParams,
    n_neighbors: usize,
    n_epochs: usize,
) -> anyhow::Result<FuzzyGraph> {
    let n = embeddings.n;
    // umap-learn's kNN lists start with the point itself at distance 0.
    let others = n_neighbors - 1;
    let mut knn_indices = Vec::with_capacity(n * n_neighbors);
    let mut knn_dists = Vec::with_capacity(n * n_neighbors);
    for i in 0..n {
        knn_indices.push(i as u32);
        knn_dists.push(0.0);
        for slot in 0..others {
            knn_indices.push(knn.indices[i * knn.k + slot]);
            knn_dists.push(knn.distances[i * knn.k + slot]);
        }
    }
    let config = UmapConfig {
        n_components: 3,
        manifold: ManifoldParams {
            min_dist: params.min_dist,
            spread: params.spread,
            ..Default::default()
        },
        graph: GraphParams {
            n_neighbors,
            ..Default::default()
        },
        ..Default::default()
    };
    let data = ArrayView2::from_shape((n, embeddings.dim), &embeddings.data)?;
    let indices = ArrayView2::from_shape((n, n_neighbors), &knn_indices)?;
    let dists = ArrayView2::from_shape((n, n_neighbors), &knn_dists)?;
    let manifold = Umap::new(config).learn_manifold(data, indices, dists);
    let graph = manifold.graph();
    let max_weight = graph.data().iter().copied().fold(0.0f32, f32::max);
    let keep = max_weight / n_epochs as f32;
    let mut fuzzy = FuzzyGraph {
        row_start: Vec::with_capacity(n + 1),
        cols: Vec::with_capacity(graph.nnz()),
        weights: Vec::with_capacity(graph.nnz()),
    };
    fuzzy.row_start.push(0);
    for row in graph.outer_iterator() {
        for (col, &w) in row.iter() {
            if w > 0.0 && w >= keep {
                fuzzy.cols.push(col as u32);
                fuzzy.weights.push(w);
            }
        }
        fuzzy.row_start.push(fuzzy.cols.len());
    }
    ensure!(
        fuzzy.row_start.len() == n + 1,
        "internal: the fuzzy graph has {} rows for {n} points",
        fuzzy.row_start.len() - 1
    );
    Ok(fuzzy)
}

/// Non-finite values would spread through the whole layout; say where they come from.
fn check_inputs(knn: &KnnGraph, others: usize, init: &[Point3]) -> anyhow::Result<()> {
    for i in 0..knn.n {
        for slot in 0..others {
            let (j, d) = (
                knn.indices[i * knn.k + slot],
                knn.distances[i * knn.k + slot],
            );
            let padding = j == u32::MAX;
            if !padding && (j as usize >= knn.n || !d.is_finite() || d < 0.0) {
                bail!(
                    "the neighbour graph is broken at point {i} (neighbour {j}, distance {d}): \
                     the embeddings probably hold NaN or infinite values; re-embed the images"
                );
            }
        }
    }
    if let Some(i) = init.iter().position(|p| p.iter().any(|x| !x.is_finite())) {
        bail!(
            "the initial layout holds a non-finite coordinate at point {i}: the embeddings probably hold NaN or infinite values"
        );
    }
    Ok(())
}

/// umap-learn's `find_ab_params`: the (a, b) for which 1 / (1 + a·x^(2b)) best
/// fits, in least squares over 300 points of [0, 3·spread], the curve that is 1
/// below `min_dist` and exp(−(x − min_dist)/spread) above. umap-learn fits it
/// with scipy's `curve_fit` (Levenberg–Marquardt from (1, 1)); so does this, in
/// f64. For min_dist 0.1, spread 1: a = 1.5769, b = 0.8951, as umap-learn.
pub fn find_ab_params(spread: f32, min_dist: f32) -> (f32, f32) {
    let (spread, min_dist) = (spread as f64, min_dist as f64);
    let xs: Vec<f64> = (0..300).map(|i| spread * 3.0 * i as f64 / 299.0).collect();
    let target = |x: f64| {
        if x < min_dist {
            1.0
        } else {
            (-(x - min_dist) / spread).exp()
        }
    };
    let cost = |a: f64, b: f64| -> f64 {
        xs.iter()
            .map(|&x| {
                let r = 1.0 / (1.0 + a * x.powf(2.0 * b)) - target(x);
                r * r
            })
            .sum()
    };
    let (mut a, mut b) = (1.0f64, 1.0f64);
    let mut current = cost(a, b);
    let mut damping = 1e-3;
    for _ in 0..200 {
        // Normal equations of the residuals' Jacobian, (JᵀJ + λ·diag) δ = −Jᵀr.
        let (mut jaa, mut jab, mut jbb, mut ga, mut gb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &x in &xs {
            if x <= 0.0 {
                // x^(2b) = 0: residual constant in a and b.
                continue;
            }
            let x2b = x.powf(2.0 * b);
            let den = 1.0 + a * x2b;
            let r = 1.0 / den - target(x);
            let da = -x2b / (den * den);
            let db = -2.0 * a * x2b * x.ln() / (den * den);
            jaa += da * da;
            jab += da * db;
            jbb += db * db;
            ga += da * r;
            gb += db * r;
        }
        let mut improved = false;
        while damping < 1e12 {
            let (maa, mbb) = (jaa * (1.0 + damping), jbb * (1.0 + damping));
            let det = maa * mbb - jab * jab;
            let (na, nb) = (
                a - (mbb * ga - jab * gb) / det,
                b - (maa * gb - jab * ga) / det,
            );
            let c = if det.is_normal() && na > 0.0 && nb > 0.0 {
                cost(na, nb)
            } else {
                f64::INFINITY
            };
            if c < current {
                improved = current - c > 1e-14 * current;
                (a, b, current) = (na, nb, c);
                damping = (damping / 10.0).max(1e-12);
                break;
            }
            damping *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (a as f32, b as f32)
}

/// umap-learn's treatment of a supplied initialisation: scaled so the largest
/// coordinate is 10, a little noise to break ties, then each axis mapped to [0, 10].
pub(crate) fn initial_layout(init: &[Point3], rng: &mut Rng) -> Vec<Point3> {
    let largest = init
        .iter()
        .flatten()
        .fold(0.0f32, |m, x| m.max(x.abs()))
        .max(1e-12);
    let mut layout: Vec<Point3> = init
        .iter()
        .map(|p| p.map(|x| x * 10.0 / largest + 1e-4 * rng.normal_f32()))
        .collect();
    for axis in 0..3 {
        let (lo, hi) = layout
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p[axis]), hi.max(p[axis]))
            });
        let span = (hi - lo).max(1e-12);
        for p in &mut layout {
            p[axis] = 10.0 * (p[axis] - lo) / span;
        }
    }
    layout
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neighbours::KnnMethod;
    use crate::progress::NoProgress;

    /// `clusters` Gaussian blobs of `per` points in 8-D, and their exact kNN.
    fn blobs(
        clusters: usize,
        per: usize,
        k: usize,
        seed: u64,
    ) -> (Embeddings, KnnGraph, Vec<String>) {
        let dim = 8;
        let mut rng = Rng::new(seed);
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| (0..dim).map(|_| 6.0 * rng.normal_f32()).collect())
            .collect();
        let n = clusters * per;
        let mut data = Vec::with_capacity(n * dim);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            // Interleaved, so that no block holds a whole cluster.
            let c = i % clusters;
            data.extend(centres[c].iter().map(|x| x + rng.normal_f32()));
            labels.push(c.to_string());
        }
        let e = Embeddings::new(n, dim, data);
        let mut indices = Vec::with_capacity(n * k);
        let mut distances = Vec::with_capacity(n * k);
        for i in 0..n {
            let mut all: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let d2: f32 = e
                        .row(i)
                        .iter()
                        .zip(e.row(j))
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum();
                    (d2.sqrt(), j)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for &(d, j) in &all[..k] {
                indices.push(j as u32);
                distances.push(d);
            }
        }
        let knn = KnnGraph {
            n,
            k,
            indices,
            distances,
            method: KnnMethod::Exact,
        };
        (e, knn, labels)
    }

    fn run(
        e: &Embeddings,
        knn: &KnnGraph,
        params: &UmapParams,
        seed: u64,
        threads: usize,
    ) -> anyhow::Result<Vec<Point3>> {
        let init = crate::reduce::pca::project(e, seed)?;
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?
            .install(|| {
                umap(
                    e,
                    knn,
                    &init,
                    params,
                    seed,
                    &NoProgress,
                    &CancelToken::new(),
                )
            })
    }

    #[test]
    fn ab_params_match_umap_learn() {
        // From umap-learn 0.5.12 (py/graph_fixture.py).
        for (spread, min_dist, a, b) in [
            (1.0, 0.1, 1.576_943_5, 0.895_060_9),
            (1.0, 0.5, 0.583_03, 1.334_167),
            (2.0, 0.0, 0.646_046_7, 0.790_494_5),
            (1.0, 0.001, 1.929_073_4, 0.791_504_5),
        ] {
            let (fa, fb) = find_ab_params(spread, min_dist);
            assert!(
                (fa - a).abs() < 1e-4 * a && (fb - b).abs() < 1e-4 * b,
                "spread {spread}, min_dist {min_dist}: ({fa}, {fb}) vs ({a}, {b})"
            );
        }
    }

    #[test]
    fn separates_blobs_deterministically_on_any_number_of_threads() {
        let (e, knn, labels) = blobs(4, 150, 14, 1);
        let params = UmapParams {
            n_epochs: Some(200),
            ..Default::default()
        };
        let one = run(&e, &knn, &params, 7, 1).unwrap();
        assert!(one.iter().flatten().all(|x| x.is_finite()));
        let accuracy = crate::metrics::knn_accuracy(&one, &labels, 10);
        assert!(accuracy > 0.99, "10-NN accuracy {accuracy}");
        assert_eq!(
            one,
            run(&e, &knn, &params, 7, 4).unwrap(),
            "thread count changed the layout"
        );
        assert_ne!(
            one,
            run(&e, &knn, &params, 8, 4).unwrap(),
            "the seed should matter"
        );
    }

    #[test]
    fn tiny_inputs() {
        for n in [4, 5, 9] {
            let (e, mut knn, _) = blobs(1, n, n - 1, 2);
            // Fewer neighbours than asked for: padding, as the kNN stage writes it.
            if n == 9 {
                for i in 0..n {
                    knn.indices[i * knn.k + knn.k - 1] = u32::MAX;
                    knn.distances[i * knn.k + knn.k - 1] = f32::INFINITY;
                }
            }
            let y = run(&e, &knn, &UmapParams::default(), 1, 2).unwrap();
            assert_eq!(y.len(), n);
            assert!(y.iter().flatten().all(|x| x.is_finite()), "{y:?}");
        }
    }

    #[test]
    fn bad_inputs_give_errors_that_say_what_to_do() {
        let (e, knn, _) = blobs(2, 20, 14, 3);
        let bad = |params: UmapParams, want: &str| {
            let err = run(&e, &knn, &params, 1, 1).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        };
        bad(
            UmapParams {
                n_neighbors: 1,
                ..Default::default()
            },
            "n_neighbors",
        );
        bad(
            UmapParams {
                min_dist: 2.0,
                ..Default::default()
            },
            "min_dist",
        );
        bad(
            UmapParams {
                spread: 0.0,
                ..Default::default()
            },
            "spread",
        );
        bad(
            UmapParams {
                learning_rate: f32::NAN,
                ..Default::default()
            },
            "learning rate",
        );
        bad(
            UmapParams {
                n_epochs: Some(0),
                ..Default::default()
            },
            "epoch",
        );
        bad(
            UmapParams {
                n_neighbors: 30,
                ..Default::default()
            },
            "neighbours",
        );

        let mut broken = knn.clone();
        broken.distances[5] = f32::NAN;
        let init = crate::reduce::pca::project(&e, 1).unwrap();
        let err = umap(
            &e,
            &broken,
            &init,
            &UmapParams::default(),
            1,
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("NaN"), "{err}");

        let cancel = CancelToken::new();
        cancel.cancel();
        let err = umap(
            &e,
            &knn,
            &init,
            &UmapParams::default(),
            1,
            &NoProgress,
            &cancel,
        )
        .unwrap_err();
        assert!(crate::progress::is_cancelled(&err), "{err}");
    }
}
