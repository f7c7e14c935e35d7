//! Clusters by HDBSCAN on the 3D layout (`analyze::hdbscan`: scikit-learn's
//! definition, Boruvka spanning tree over a k-d tree).
//!
//! Why the layout and not the embedding: measured on MNIST (README), HDBSCAN on
//! the UMAP layout finds the digit classes far better and runs in a fraction of
//! the time of HDBSCAN on the 784-D pixels, and the clusters then agree with what
//! the user sees.

use serde::Serialize;

use crate::analyze::hdbscan::hdbscan;
use crate::geometry::Point3;
use crate::progress::CancelToken;

#[derive(Clone, Debug, Serialize, Default)]
pub struct ClusterParams {
    /// Smallest group called a cluster; `None`: [`default_min_cluster_size`].
    pub min_cluster_size: Option<usize>,
    /// Neighbours for HDBSCAN's core distance, the point itself counted as the
    /// first (scikit-learn's meaning); `None`: [`default_min_samples`].
    pub min_samples: Option<usize>,
}

/// Default smallest cluster: 0.2% of the images from 10,000 up (20 at 10k,
/// 200 at 100k, 2,000 at 1M), and below that the old 1%, between 5 and 20.
///
/// A fraction of n with no cap, so that it means the same at 10k and 1M.
/// Measured on umap-learn's 3D layouts (README, Benchmarks): on MNIST the digit ARI is
/// flat for anything from 0.1% to 3% (the digit groups are far larger); on
/// the 50-component Gaussian mixture (smallest component 0.24% of the
/// points) 0.2% finds all 50 clusters (ARI 1.00), 0.5% only 45, 1% only 38.
pub fn default_min_cluster_size(n: usize) -> usize {
    (n / 500).max((n / 100).clamp(5, 20))
}

/// Default core-distance neighbours (the point itself counted, as in
/// scikit-learn): 7, and never more than the cluster size.
///
/// scikit-learn's own default (min_samples = min_cluster_size) smooths the
/// densities over hundreds of points at 100k, which blurs the gaps between
/// digits: ARI 0.54 at 100k with (100, 100). On MNIST the result hinges on
/// whether the 4/7/9 and 3/5/8 groups split, and no value splits them on
/// every layout. Measured with scikit-learn's HDBSCAN (the same definition)
/// on eight MNIST layouts (embedscope's at 10k and 100k, umap-learn's at four
/// 10k seeds and two 100k seeds; README, Benchmarks), 7 is the only value at
/// or above 0.64 on all of them (10: 0.54 on embedscope's 10k and 100k
/// layouts and one umap-learn 10k seed; 5, 6 and 8: 0.54 on one or two), and
/// at least as good as 10 on each.
pub fn default_min_samples(min_cluster_size: usize) -> usize {
    7.min(min_cluster_size)
}

impl ClusterParams {
    pub fn resolved_min_cluster_size(&self, n: usize) -> usize {
        self.min_cluster_size
            .unwrap_or_else(|| default_min_cluster_size(n))
            .max(2)
    }

    pub fn resolved_min_samples(&self, n: usize) -> usize {
        self.min_samples
            .unwrap_or_else(|| default_min_samples(self.resolved_min_cluster_size(n)))
            .max(1)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Clusters {
    /// Per image: cluster id, or -1 for noise. Ids are numbered by size, largest first.
    pub labels: Vec<i32>,
    /// Members of each cluster, in image order; `members[id]`.
    pub members: Vec<Vec<usize>>,
    pub min_cluster_size: usize,
}

impl Clusters {
    pub fn noise(&self) -> usize {
        self.labels.iter().filter(|l| **l < 0).count()
    }
}

/// HDBSCAN clusters of the layout. Points with a NaN or infinite coordinate
/// are left out of the clustering (labelled noise), as scikit-learn does.
/// Returns an error only when cancelled.
pub fn find_clusters(
    layout: &[Point3],
    params: &ClusterParams,
    cancel: &CancelToken,
) -> anyhow::Result<Clusters> {
    let n = layout.len();
    let min_cluster_size = params.resolved_min_cluster_size(n);
    let min_samples = params.resolved_min_samples(n);
    if n < min_cluster_size.max(2) {
        return Ok(Clusters {
            labels: vec![-1; n],
            members: Vec::new(),
            min_cluster_size,
        });
    }
    let raw = hdbscan(layout, min_cluster_size, min_samples, cancel)?;
    Ok(renumber_by_size(&raw.labels, min_cluster_size))
}

/// Largest cluster gets id 0; ties broken by first member, so ids are stable.
/// Clusters from per-point labels (-1 for noise), as stored in the analysis
/// cache: numbered by size again, so ids mean the same as when computed.
pub fn from_labels(labels: &[i32], min_cluster_size: usize) -> Clusters {
    renumber_by_size(labels, min_cluster_size)
}

fn renumber_by_size(raw: &[i32], min_cluster_size: usize) -> Clusters {
    let mut groups: std::collections::BTreeMap<i32, Vec<usize>> = Default::default();
    for (i, &label) in raw.iter().enumerate() {
        if label >= 0 {
            groups.entry(label).or_default().push(i);
        }
    }
    let mut members: Vec<Vec<usize>> = groups.into_values().collect();
    members.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    let mut labels = vec![-1; raw.len()];
    for (id, group) in members.iter().enumerate() {
        for &i in group {
            labels[i] = id as i32;
        }
    }
    Clusters {
        labels,
        members,
        min_cluster_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn separates_blobs_and_numbers_by_size() {
        let mut rng = Rng::new(2);
        let mut layout = Vec::new();
        for (centre, count) in [([0.0, 0.0, 0.0], 40), ([20.0, 0.0, 0.0], 80)] {
            for _ in 0..count {
                layout.push([
                    centre[0] + rng.normal_f32(),
                    centre[1] + rng.normal_f32(),
                    centre[2] + rng.normal_f32(),
                ]);
            }
        }
        let c = find_clusters(&layout, &ClusterParams::default(), &CancelToken::new()).unwrap();
        assert_eq!(c.members.len(), 2);
        assert!(c.members[0].len() > c.members[1].len());
        assert!(
            c.members[0].iter().all(|&i| i >= 40),
            "the larger blob is id 0"
        );
    }

    #[test]
    fn cancel_is_reported_as_cancelled() {
        let layout: Vec<Point3> = (0..500).map(|i| [i as f32, 0.0, 0.0]).collect();
        let cancel = CancelToken::new();
        cancel.cancel();
        let err = find_clusters(&layout, &ClusterParams::default(), &cancel).unwrap_err();
        assert!(crate::progress::is_cancelled(&err));
    }

    #[test]
    fn defaults_grow_with_n_and_explicit_values_win() {
        let d = ClusterParams::default();
        assert_eq!(d.resolved_min_cluster_size(3), 5);
        assert!(d.resolved_min_cluster_size(1_000_000) > d.resolved_min_cluster_size(100_000));
        assert!(d.resolved_min_samples(1_000_000) < d.resolved_min_cluster_size(1_000_000));
        let p = ClusterParams {
            min_cluster_size: Some(1),
            min_samples: Some(0),
        };
        assert_eq!(
            (p.resolved_min_cluster_size(10), p.resolved_min_samples(10)),
            (2, 1)
        );
    }

    #[test]
    fn tiny_inputs_are_all_noise() {
        for n in 0..4 {
            let c = find_clusters(
                &vec![[0.0; 3]; n],
                &ClusterParams::default(),
                &CancelToken::new(),
            )
            .unwrap();
            assert_eq!(c.labels, vec![-1; n]);
        }
    }
}
