//! Clusters by HDBSCAN (`hdbscan` crate) on the 3D layout.
//!
//! Why the layout and not the embedding: measured on MNIST (README), HDBSCAN on
//! the UMAP layout finds the digit classes far better and runs in a fraction of
//! the time of HDBSCAN on the 784-D pixels, and the clusters then agree with what
//! the user sees.

use hdbscan::{Hdbscan, HdbscanHyperParams};
use serde::Serialize;

use crate::geometry::Point3;

#[derive(Clone, Debug, Serialize, Default)]
pub struct ClusterParams {
    /// Smallest group called a cluster; `None`: 1% of the images, between 5 and 100.
    pub min_cluster_size: Option<usize>,
    /// Neighbours for HDBSCAN's core distance; `None`: same as min_cluster_size.
    pub min_samples: Option<usize>,
}

impl ClusterParams {
    pub fn resolved_min_cluster_size(&self, n: usize) -> usize {
        self.min_cluster_size
            .unwrap_or((n / 100).clamp(5, 100))
            .max(2)
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

pub fn find_clusters(layout: &[Point3], params: &ClusterParams) -> anyhow::Result<Clusters> {
    let n = layout.len();
    let min_cluster_size = params.resolved_min_cluster_size(n);
    let min_samples = params.min_samples.unwrap_or(min_cluster_size).max(1);
    if n < min_cluster_size.max(2) || n <= min_samples {
        return Ok(Clusters {
            labels: vec![-1; n],
            members: Vec::new(),
            min_cluster_size,
        });
    }
    let data: Vec<Vec<f32>> = layout.iter().map(|p| p.to_vec()).collect();
    let hyper = HdbscanHyperParams::builder()
        .min_cluster_size(min_cluster_size)
        .min_samples(min_samples)
        .build();
    let raw = Hdbscan::new(&data, hyper)
        .cluster()
        .map_err(|e| anyhow::anyhow!("clustering failed: {e:?}"))?;
    Ok(renumber_by_size(&raw, min_cluster_size))
}

/// Clusters from per-point labels (-1 for noise), as stored in the analysis
/// cache: numbered by size again, so ids mean the same as when computed.
pub fn from_labels(labels: &[i32], min_cluster_size: usize) -> Clusters {
    renumber_by_size(labels, min_cluster_size)
}

/// Largest cluster gets id 0; ties broken by first member, so ids are stable.
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
        let c = find_clusters(&layout, &ClusterParams::default()).unwrap();
        assert_eq!(c.members.len(), 2);
        assert!(c.members[0].len() > c.members[1].len());
        assert!(
            c.members[0].iter().all(|&i| i >= 40),
            "the larger blob is id 0"
        );
    }

    #[test]
    fn tiny_inputs_are_all_noise() {
        for n in 0..4 {
            let c = find_clusters(&vec![[0.0; 3]; n], &ClusterParams::default()).unwrap();
            assert_eq!(c.labels, vec![-1; n]);
        }
    }
}
