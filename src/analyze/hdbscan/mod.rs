//! HDBSCAN on 3D points, as scikit-learn's `sklearn.cluster.HDBSCAN` defines
//! it (euclidean, `alpha = 1`, `cluster_selection_method = "eom"`,
//! `allow_single_cluster = False`, no epsilon), with a minimum spanning tree
//! that scales: Boruvka over a k-d tree, parallel and deterministic.
//!
//! The steps and where they live:
//! 1. core distance of each point: distance to its `min_samples`-th nearest
//!    point, counting the point itself (`kdtree.rs`);
//! 2. the minimum spanning tree of the mutual-reachability graph,
//!    `max(core(a), core(b), |a - b|)`, by Boruvka (`mst.rs`);
//! 3. single-linkage tree, condensed tree for `min_cluster_size`, excess-of-
//!    mass selection, labels (`tree.rs`, a port of scikit-learn's Cython).
//!
//! Distances are float64 and summed as scikit-learn sums them, so when no two
//! spanning-tree edges tie, the labels are scikit-learn's exactly (up to the
//! numbering); with ties (duplicated points, grids) scikit-learn's Prim's picks
//! among equal trees by visiting order and we by index, which can move a point
//! or two sitting exactly on a tie.

mod kdtree;
mod mst;
mod tree;

use std::time::Instant;

use rayon::slice::ParallelSliceMut;

use crate::geometry::Point3;
use crate::progress::{CancelToken, Cancelled};

/// HDBSCAN's result on the caller's points.
#[derive(Clone, Debug, Default)]
pub struct Hdbscan {
    /// Per point: cluster index (`0..clusters`, in scikit-learn's order), or
    /// -1 for noise (and for points with a NaN or infinite coordinate).
    pub labels: Vec<i32>,
    pub clusters: usize,
    /// Seconds spent in each step, for benchmarks: core distances (with the
    /// tree), spanning tree, cluster tree and labels.
    pub seconds: [f64; 3],
}

/// Clusters `points` with HDBSCAN. `min_cluster_size` is raised to 2 and
/// `min_samples` is kept within `1..=points`, where scikit-learn would refuse
/// them instead. Stops with `Cancelled` between chunks of work once `cancel`
/// is set.
pub fn hdbscan(
    points: &[Point3],
    min_cluster_size: usize,
    min_samples: usize,
    cancel: &CancelToken,
) -> Result<Hdbscan, Cancelled> {
    let mut out = Hdbscan {
        labels: vec![-1; points.len()],
        ..Default::default()
    };
    // Points with NaN or infinite coordinates have no distances; like
    // scikit-learn, cluster the others and leave these out (as noise here).
    let finite: Vec<u32> = (0..points.len() as u32)
        .filter(|&i| points[i as usize].iter().all(|c| c.is_finite()))
        .collect();
    let kept: Vec<Point3> = finite.iter().map(|&i| points[i as usize]).collect();
    let n = kept.len();
    if n < 2 {
        return Ok(out);
    }
    let min_cluster_size = min_cluster_size.max(2);
    let min_samples = min_samples.clamp(1, n);

    let started = Instant::now();
    let tree = kdtree::KdTree::build(&kept);
    let cores = mst::core_distances(&tree, min_samples, cancel)?;
    out.seconds[0] = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let edges = mst::boruvka(&tree, cores, cancel)?;
    out.seconds[1] = started.elapsed().as_secs_f64();
    cancel.check()?;

    let started = Instant::now();
    // In the kept points' order, sorted by weight (scikit-learn sorts by weight
    // alone; the ends break ties here so the order is always the same).
    let mut edges: Vec<(u32, u32, f64)> = edges
        .iter()
        .map(|e| (tree.order[e.a as usize], tree.order[e.b as usize], e.w))
        .collect();
    drop(tree);
    edges.par_sort_unstable_by(|x, y| {
        x.2.total_cmp(&y.2)
            .then(x.0.min(x.1).cmp(&y.0.min(y.1)))
            .then(x.0.max(x.1).cmp(&y.0.max(y.1)))
    });
    let hierarchy = tree::single_linkage(n, &edges);
    drop(edges);
    let rows = tree::condense(&hierarchy, n, min_cluster_size);
    drop(hierarchy);
    let selected = tree::select_and_label(&rows, n);

    // scikit-learn numbers the selected clusters in the order of their ids.
    let mut ids: Vec<u32> = selected.iter().flatten().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    for (&i, s) in finite.iter().zip(&selected) {
        if let Some(id) = s {
            out.labels[i as usize] = ids.binary_search(id).unwrap_or(0) as i32;
        }
    }
    out.clusters = ids.len();
    out.seconds[2] = started.elapsed().as_secs_f64();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The cases of `testdata/sklearn_fixture.txt` (made by
    /// `py/reference.py fixture`): name, min_cluster_size, min_samples, points
    /// and scikit-learn 1.9's labels.
    #[allow(clippy::type_complexity)]
    fn fixture() -> Vec<(String, usize, usize, Vec<Point3>, Vec<i32>)> {
        let text = include_str!("testdata/sklearn_fixture.txt");
        let mut cases: Vec<(String, usize, usize, Vec<Point3>, Vec<i32>)> = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f[0] == "#" {
                cases.push((
                    f[2].into(),
                    f[4].parse().unwrap(),
                    f[5].parse().unwrap(),
                    vec![],
                    vec![],
                ));
            } else {
                let case = cases.last_mut().unwrap();
                case.3.push([
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                ]);
                case.4.push(f[3].parse().unwrap());
            }
        }
        cases
    }

    /// True when `a` and `b` are the same partition, noise (-1) kept as noise.
    fn same_partition(a: &[i32], b: &[i32]) -> bool {
        let mut ab = std::collections::HashMap::new();
        let mut ba = std::collections::HashMap::new();
        a.iter().zip(b).all(|(&x, &y)| {
            (x < 0) == (y < 0) && *ab.entry(x).or_insert(y) == y && *ba.entry(y).or_insert(x) == x
        })
    }

    #[test]
    fn labels_equal_scikit_learns() {
        let cases = fixture();
        assert_eq!(cases.len(), 3);
        for (name, mcs, ms, points, expected) in cases {
            let got = hdbscan(&points, mcs, ms, &CancelToken::new()).unwrap();
            assert!(
                expected.iter().any(|&l| l >= 0),
                "{name}: fixture has clusters"
            );
            // The same clusters and noise; the numbering can differ, as it
            // follows which side of each merge scikit-learn's Prim's calls left.
            assert!(
                same_partition(&got.labels, &expected),
                "{name}: labels differ from scikit-learn's"
            );
        }
    }

    #[test]
    fn same_labels_whatever_the_thread_count() {
        let mut rng = Rng::new(9);
        let points: Vec<Point3> = (0..4000)
            .map(|i| {
                let c = (i % 5) as f32 * 4.0;
                [
                    c + rng.normal_f32(),
                    c * 0.5 + rng.normal_f32(),
                    rng.normal_f32(),
                ]
            })
            .collect();
        let cancel = CancelToken::new();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| hdbscan(&points, 40, 5, &cancel).unwrap().labels)
        };
        let one = run(1);
        assert!(one.iter().any(|&l| l > 0));
        assert_eq!(one, run(3));
        assert_eq!(one, run(8));
    }

    #[test]
    fn non_finite_points_are_noise_and_the_rest_still_cluster() {
        let mut rng = Rng::new(4);
        let mut points: Vec<Point3> = (0..300)
            .map(|i| {
                let c = if i < 150 { 0.0 } else { 30.0 };
                [c + rng.normal_f32(), rng.normal_f32(), rng.normal_f32()]
            })
            .collect();
        let clean = hdbscan(&points, 20, 5, &CancelToken::new()).unwrap();
        points.insert(7, [f32::NAN, 0.0, 0.0]);
        points.push([0.0, f32::INFINITY, 1.0]);
        let got = hdbscan(&points, 20, 5, &CancelToken::new()).unwrap();
        assert_eq!(got.labels[7], -1);
        assert_eq!(got.labels[301], -1);
        let mut rest = got.labels.clone();
        rest.remove(301);
        rest.remove(7);
        assert_eq!(rest, clean.labels);
        assert_eq!(clean.clusters, 2);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let cancel = CancelToken::new();
        for n in 0..5 {
            let same = vec![[1.0f32; 3]; n];
            let got = hdbscan(&same, 2, 10, &cancel).unwrap();
            assert_eq!(got.labels.len(), n);
        }
        // All points equal: zero distances, infinite densities.
        let same = vec![[0.5f32; 3]; 100];
        let got = hdbscan(&same, 5, 3, &cancel).unwrap();
        assert_eq!(got.labels.len(), 100);
        // min_samples larger than n, min_cluster_size 0.
        let line: Vec<Point3> = (0..30).map(|i| [i as f32, 0.0, 0.0]).collect();
        assert_eq!(hdbscan(&line, 0, 1000, &cancel).unwrap().labels.len(), 30);
    }

    #[test]
    fn cancelled_before_start_returns_cancelled() {
        let cancel = CancelToken::new();
        cancel.cancel();
        let points: Vec<Point3> = (0..100).map(|i| [i as f32, 0.0, 0.0]).collect();
        assert!(hdbscan(&points, 5, 5, &cancel).is_err());
    }
}
