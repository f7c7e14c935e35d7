//! Stage 4: the k-nearest-neighbour graph that UMAP, t-SNE, clusters and
//! duplicate detection share.
//!
//! Rows are unit vectors, so the cosine order equals the Euclidean order and the
//! graph stores Euclidean (chord) distances `sqrt(2 - 2·cos)`, which is what UMAP
//! and t-SNE expect. Small sets use an exact blocked matrix product; larger ones
//! NN-descent ([`nndescent`], the algorithm behind pynndescent and umap-learn),
//! deterministic for a seed (recall measured in the tests and in README).

mod exact;
pub mod nndescent;

pub use exact::nearest_beyond;

use serde::Serialize;

use crate::Embeddings;
use crate::progress::{CancelToken, ProgressSink};

/// Up to this many images the search is exact (when `Auto`) whatever `k`.
/// Measured on MNIST pixels (784-D, 2 cores): at 5k exact 0.41 s, NN-descent
/// with 15 neighbours 0.22 s at recall@15 0.993; both under half a second, and
/// exact is exact.
pub const EXACT_LIMIT: usize = 5_000;

/// Up to how many images `Auto` searches exactly for `k` neighbours: the
/// exact search costs n², NN-descent grows with k. Measured on MNIST pixels
/// (784-D, 2 cores), exact against NN-descent: at 10k 0.92 s against 0.86 s
/// with 30 neighbours and 2.0 s with 50; at 20k 3.3 s against 4.2 s with 50;
/// at 40k 12.7 s against 8.6 s with 50. So about 400 images per neighbour.
pub fn exact_limit(k: usize) -> usize {
    (400 * k).max(EXACT_LIMIT)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KnnMethod {
    /// Exact for up to [`exact_limit`] images (5,000, and 400 per
    /// neighbour asked for), NN-descent beyond.
    Auto,
    Exact,
    Approximate,
}

impl crate::choice::Choice for KnnMethod {
    const ALL: &'static [Self] = &[KnnMethod::Auto, KnnMethod::Exact, KnnMethod::Approximate];

    fn name(self) -> &'static str {
        match self {
            KnnMethod::Auto => "auto",
            KnnMethod::Exact => "exact",
            KnnMethod::Approximate => "approximate",
        }
    }

    fn help(self) -> &'static str {
        match self {
            KnnMethod::Auto => {
                "exact up to 400 images per neighbour (at least 5,000), NN-descent above"
            }
            KnnMethod::Exact => "every pair compared (grows as n²)",
            KnnMethod::Approximate => "NN-descent, as umap-learn (about n^1.14; recall ≈ 0.98)",
        }
    }
}

/// `k` neighbours per point, nearest first. A row with fewer real neighbours
/// (fewer than k+1 points) is padded with `u32::MAX` and an infinite distance.
#[derive(Clone, Debug)]
pub struct KnnGraph {
    pub n: usize,
    pub k: usize,
    pub indices: Vec<u32>,
    pub distances: Vec<f32>,
    /// The method actually used (never `Auto`).
    pub method: KnnMethod,
}

impl KnnGraph {
    pub fn neighbours(&self, i: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let range = i * self.k..(i + 1) * self.k;
        self.indices[range.clone()]
            .iter()
            .zip(&self.distances[range])
            .filter(|(j, _)| **j != u32::MAX)
            .map(|(j, d)| (*j as usize, *d))
    }

    /// Cosine similarity from a stored chord distance.
    pub fn cosine_of_distance(d: f32) -> f32 {
        1.0 - d * d / 2.0
    }
}

/// Builds the graph with `k` neighbours per point (fewer if there are fewer
/// other points; the rows are then padded).
pub fn build(
    embeddings: &Embeddings,
    k: usize,
    method: KnnMethod,
    seed: u64,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<KnnGraph> {
    let method = match method {
        KnnMethod::Auto if embeddings.n > exact_limit(k) => KnnMethod::Approximate,
        KnnMethod::Auto => KnnMethod::Exact,
        other => other,
    };
    match method {
        KnnMethod::Approximate if embeddings.n > 1 => {
            nndescent::build(embeddings, k, seed, progress, cancel)
        }
        _ => exact::build(embeddings, k, progress, cancel),
    }
}

/// Fraction of the exact graph's neighbours that `approx` also found.
pub fn recall(exact: &KnnGraph, approx: &KnnGraph) -> f64 {
    let k = exact.k.min(approx.k);
    let mut hits = 0usize;
    let mut total = 0usize;
    for i in 0..exact.n {
        let truth: std::collections::HashSet<u32> = exact.indices[i * exact.k..i * exact.k + k]
            .iter()
            .copied()
            .collect();
        total += truth.iter().filter(|j| **j != u32::MAX).count();
        hits += approx.indices[i * approx.k..i * approx.k + k]
            .iter()
            .filter(|j| **j != u32::MAX && truth.contains(j))
            .count();
    }
    if total == 0 {
        1.0
    } else {
        hits as f64 / total as f64
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::rng::Rng;

    pub(crate) fn random_unit_rows(n: usize, dim: usize, seed: u64) -> Embeddings {
        let mut rng = Rng::new(seed);
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let mut row: Vec<f32> = (0..dim).map(|_| rng.normal_f32()).collect();
            crate::l2_normalize(&mut row);
            data.extend(row);
        }
        Embeddings::new(n, dim, data)
    }

    fn brute_force(e: &Embeddings, i: usize, k: usize) -> Vec<u32> {
        let mut all: Vec<(f32, u32)> = (0..e.n)
            .filter(|&j| j != i)
            .map(|j| (-e.cosine(i, j), j as u32))
            .collect();
        all.sort_by(|a, b| a.partial_cmp(b).unwrap());
        all.into_iter().take(k).map(|(_, j)| j).collect()
    }

    #[test]
    fn exact_matches_brute_force() {
        let e = random_unit_rows(700, 24, 3);
        let g = build(
            &e,
            10,
            KnnMethod::Exact,
            0,
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
        for i in [0, 1, 250, 699] {
            let got: Vec<u32> = g.neighbours(i).map(|(j, _)| j as u32).collect();
            assert_eq!(got, brute_force(&e, i, 10), "row {i}");
            for (j, d) in g.neighbours(i) {
                let cos = KnnGraph::cosine_of_distance(d);
                assert!((cos - e.cosine(i, j)).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn nearest_beyond_leaves_out_what_is_too_close() {
        // 1,300 rows (more than one block), rows 5..45 copies of row 0.
        let mut e = random_unit_rows(1300, 16, 9);
        let first = e.row(0).to_vec();
        for i in 5..45 {
            e.data[i * 16..(i + 1) * 16].copy_from_slice(&first);
        }
        let cancel = CancelToken::new();
        let got = nearest_beyond(&e, &[0, 700, 5], 10, 0.045, &cancel).unwrap();
        let chord = |i: usize, j: usize| (2.0 - 2.0 * e.cosine(i, j)).max(0.0).sqrt();
        for (q, list) in [0usize, 700, 5].iter().zip(&got) {
            let mut want: Vec<f32> = (0..e.n)
                .map(|j| chord(*q, j))
                .filter(|&d| d >= 0.045)
                .collect();
            want.sort_by(f32::total_cmp);
            want.truncate(10);
            assert_eq!(list.len(), 10);
            for (a, b) in list.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "query {q}: {list:?} vs {want:?}");
            }
        }
        // Copies of one row see the same neighbours.
        assert_eq!(got[0], got[2]);
        assert!(
            nearest_beyond(&e, &[], 10, 0.045, &cancel)
                .unwrap()
                .is_empty()
        );
        // Fewer rows that far than asked for: the list is shorter.
        let few = random_unit_rows(4, 3, 1);
        assert_eq!(
            nearest_beyond(&few, &[0], 10, 0.01, &cancel).unwrap()[0].len(),
            3
        );
    }

    #[test]
    fn tiny_inputs_are_padded_not_panicking() {
        for n in 0..4 {
            let e = random_unit_rows(n, 5, 1);
            for method in [KnnMethod::Exact, KnnMethod::Approximate] {
                let g = build(&e, 15, method, 0, &NoProgress, &CancelToken::new()).unwrap();
                assert_eq!(g.indices.len(), n * 15);
                for i in 0..n {
                    assert_eq!(g.neighbours(i).count(), n - 1);
                }
            }
        }
    }

    fn exact_and_approximate(e: &Embeddings) -> (KnnGraph, KnnGraph) {
        let run = |method| build(e, 15, method, 0, &NoProgress, &CancelToken::new()).unwrap();
        (run(KnnMethod::Exact), run(KnnMethod::Approximate))
    }

    #[test]
    fn approximate_recall_is_high_for_wide_clustered_rows() {
        // Wide rows take the random-projection path; clustered like real embeddings.
        let (n, dim) = (2000, 300);
        let centres = random_unit_rows(20, dim, 7);
        let noise = random_unit_rows(n, dim, 8);
        let mut data = Vec::with_capacity(n * dim);
        for i in 0..n {
            let mut row: Vec<f32> = centres
                .row(i % 20)
                .iter()
                .zip(noise.row(i))
                .map(|(c, e)| c + 0.6 * e)
                .collect();
            crate::l2_normalize(&mut row);
            data.extend(row);
        }
        let e = Embeddings::new(n, dim, data);
        let (exact, approx) = exact_and_approximate(&e);
        let r = recall(&exact, &approx);
        assert!(r > 0.9, "recall {r}");
        // Distances are exact full-width ones, whatever the index used.
        for (j, d) in approx.neighbours(0) {
            assert!((KnnGraph::cosine_of_distance(d) - e.cosine(0, j)).abs() < 1e-4);
        }
    }

    #[test]
    fn approximate_recall_is_high() {
        let e = random_unit_rows(3000, 16, 5);
        let (exact, approx) = exact_and_approximate(&e);
        let r = recall(&exact, &approx);
        assert!(r > 0.95, "recall {r}");
    }
}
