//! Exact and near-duplicate groups.
//!
//! Exact duplicates share a content hash. Near-duplicates are kNN pairs whose
//! cosine similarity is at or above the threshold, and pairs that look like the
//! same photo ([`PerceptualEvidence`]: a close perceptual hash, or detail that
//! aligns after a small crop or rescale). All kinds of link are merged with
//! union-find, so A≈B and B≈C make one group even if A and C are further
//! apart: each group reports its weakest pair to make such chaining visible,
//! and every pair says why it is there. Nothing here touches the files.

use std::fmt;

use serde::Serialize;

use crate::Embeddings;
use crate::analyze::perceptual::PerceptualEvidence;
use crate::decode::ContentHash;
use crate::neighbours::KnnGraph;

/// Groups up to this size list every pair; larger ones list the linking pairs.
const ALL_PAIRS_LIMIT: usize = 64;

/// Rounding between a kNN distance and the dot product it came from.
const COSINE_SLACK: f32 = 1e-5;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DuplicatePair {
    pub a: usize,
    pub b: usize,
    pub cosine: f32,
    /// The two files have identical bytes.
    pub identical: bool,
    /// Why the two are in one group (the first of: same bytes, cosine, hash
    /// distance, aligned detail; else linked through other members).
    pub reason: DuplicateReason,
}

/// The evidence behind a pair. `Display` gives the words people read:
/// `same bytes`, `cosine 0.991`, `hash distance 6`,
/// `aligned detail 0.87 (hash distance 14)`, `linked through other members`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DuplicateReason {
    SameBytes,
    Cosine {
        cosine: f32,
    },
    HashDistance {
        distance: u32,
    },
    AlignedDetail {
        correlation: f32,
        hash_distance: u32,
    },
    /// No direct evidence between these two: the group joins them through others.
    Chained,
}

impl fmt::Display for DuplicateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SameBytes => write!(f, "same bytes"),
            Self::Cosine { cosine } => write!(f, "cosine {cosine:.3}"),
            Self::HashDistance { distance } => write!(f, "hash distance {distance}"),
            Self::AlignedDetail {
                correlation,
                hash_distance,
            } => write!(
                f,
                "aligned detail {correlation:.2} (hash distance {hash_distance})"
            ),
            Self::Chained => write!(f, "linked through other members"),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct DuplicateGroup {
    pub id: usize,
    /// Image indices, ascending.
    pub members: Vec<usize>,
    /// Every member has the same bytes.
    pub exact: bool,
    /// The least similar pair of the group.
    pub weakest: DuplicatePair,
    /// Pairwise similarities (all pairs up to 64 members, else the linking pairs).
    pub pairs: Vec<DuplicatePair>,
}

/// Per-image group id (-1 for none) and the groups, largest first.
/// `perceptual` comes from [`crate::analyze::perceptual::perceptual_links`]
/// (computed once per run: it does not depend on `threshold`, so the viewer's
/// threshold slider regroups without redoing it); [`PerceptualEvidence::none`]
/// when there is none (embeddings read from files have no images to compare).
pub fn find_duplicates(
    embeddings: &Embeddings,
    knn: &KnnGraph,
    hashes: &[ContentHash],
    perceptual: &PerceptualEvidence,
    threshold: f32,
) -> (Vec<i32>, Vec<DuplicateGroup>) {
    let n = embeddings.n;
    let mut sets = UnionFind::new(n);
    let mut links = Vec::new();

    let mut by_hash: Vec<usize> = (0..n).collect();
    by_hash.sort_by_key(|&i| (hashes[i], i));
    for pair in by_hash.windows(2) {
        if hashes[pair[0]] == hashes[pair[1]] && sets.union(pair[0], pair[1]) {
            links.push((pair[0], pair[1]));
        }
    }
    // The graph already holds each pair's distance: no dot product here, so
    // regrouping at a new threshold (the viewer's slider) is a pass over n·k
    // stored numbers.
    for i in 0..n {
        for (j, distance) in knn.neighbours(i) {
            if KnnGraph::cosine_of_distance(distance) >= threshold && sets.union(i, j) {
                links.push((i.min(j), i.max(j)));
            }
        }
    }
    for link in &perceptual.links {
        if link.b < n && sets.union(link.a, link.b) {
            links.push((link.a, link.b));
        }
    }

    let mut members_of: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        members_of.entry(sets.find(i)).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = members_of.into_values().filter(|m| m.len() > 1).collect();
    groups.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));

    let pair = |a: usize, b: usize| {
        let identical = hashes[a] == hashes[b];
        let cosine = if identical {
            1.0
        } else {
            embeddings.cosine(a, b).min(1.0)
        };
        // The kNN link was decided on the graph's stored distance; the dot
        // product here may differ from it in the last bits.
        let reason = if identical {
            DuplicateReason::SameBytes
        } else if cosine >= threshold - COSINE_SLACK {
            DuplicateReason::Cosine { cosine }
        } else {
            match perceptual.link(a, b) {
                Some(l) => match l.aligned {
                    None => DuplicateReason::HashDistance {
                        distance: l.hash_distance,
                    },
                    Some(correlation) => DuplicateReason::AlignedDetail {
                        correlation,
                        hash_distance: l.hash_distance,
                    },
                },
                None => DuplicateReason::Chained,
            }
        };
        DuplicatePair {
            a,
            b,
            cosine,
            identical,
            reason,
        }
    };
    let mut labels = vec![-1i32; n];
    let mut result = Vec::with_capacity(groups.len());
    for (id, members) in groups.into_iter().enumerate() {
        for &i in &members {
            labels[i] = id as i32;
        }
        let pairs: Vec<DuplicatePair> = if members.len() <= ALL_PAIRS_LIMIT {
            let mut all = Vec::new();
            for (x, &a) in members.iter().enumerate() {
                for &b in &members[x + 1..] {
                    all.push(pair(a, b));
                }
            }
            all
        } else {
            let root = sets.find(members[0]);
            links
                .iter()
                .filter(|(a, _)| sets.find(*a) == root)
                .map(|&(a, b)| pair(a, b))
                .collect()
        };
        let weakest = pairs
            .iter()
            .min_by(|x, y| x.cosine.total_cmp(&y.cosine))
            .cloned()
            .expect("a group has at least one pair");
        let exact = members.iter().all(|&i| hashes[i] == hashes[members[0]]);
        result.push(DuplicateGroup {
            id,
            members,
            exact,
            weakest,
            pairs,
        });
    }
    (labels, result)
}

/// Disjoint sets over image indices (also [`super::copy_groups`]).
pub(crate) struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
        }
    }

    pub(crate) fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Joins the sets of a and b; false if they were already one.
    pub(crate) fn union(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        // The smaller index becomes the root, keeping results order-independent.
        let (keep, join) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[join] = keep;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neighbours::{KnnMethod, build};
    use crate::progress::{CancelToken, NoProgress};

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        crate::l2_normalize(&mut v);
        v
    }

    #[test]
    fn chains_are_grouped_and_the_weakest_pair_reported() {
        // a ≈ b ≈ c (a chain), d identical bytes to e, f alone.
        let rows = [
            unit(&[1.0, 0.00, 0.0]),
            unit(&[1.0, 0.20, 0.0]),
            unit(&[1.0, 0.40, 0.0]),
            unit(&[0.0, 0.0, 1.0]),
            unit(&[0.0, 0.0, 1.0]),
            unit(&[0.0, 1.0, -1.0]),
        ];
        let e = Embeddings::new(6, 3, rows.concat());
        let knn = build(&e, 3, KnnMethod::Exact, 0, &NoProgress, &CancelToken::new()).unwrap();
        let mut hashes: Vec<ContentHash> = (0..6).map(|i| ContentHash([i as u8; 32])).collect();
        hashes[4] = hashes[3];
        let none = PerceptualEvidence::none("test");
        let (labels, groups) = find_duplicates(&e, &knn, &hashes, &none, 0.98);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].members, vec![0, 1, 2]);
        assert!(!groups[0].exact);
        assert_eq!((groups[0].weakest.a, groups[0].weakest.b), (0, 2));
        assert!(
            groups[0].weakest.cosine < 0.98,
            "chained, so below the threshold"
        );
        assert_eq!(groups[1].members, vec![3, 4]);
        assert!(groups[1].exact && groups[1].weakest.identical);
        assert_eq!(labels, vec![0, 0, 0, 1, 1, -1]);
        assert_eq!(groups[0].weakest.reason, DuplicateReason::Chained);
        assert_eq!(groups[1].weakest.reason.to_string(), "same bytes");
        assert!(
            groups[0].pairs[0]
                .reason
                .to_string()
                .starts_with("cosine 0.9")
        );
    }

    #[test]
    fn perceptual_links_join_groups_and_say_why() {
        use crate::analyze::perceptual::{Gate, PerceptualLink};
        // Four unrelated directions: the cosine links nothing.
        let rows = [
            unit(&[1.0, 0.0, 0.0, 0.0]),
            unit(&[0.0, 1.0, 0.0, 0.0]),
            unit(&[0.0, 0.0, 1.0, 0.0]),
            unit(&[0.0, 0.0, 0.0, 1.0]),
        ];
        let e = Embeddings::new(4, 4, rows.concat());
        let knn = build(&e, 3, KnnMethod::Exact, 0, &NoProgress, &CancelToken::new()).unwrap();
        let hashes: Vec<ContentHash> = (0..4).map(|i| ContentHash([i as u8; 32])).collect();
        let evidence = PerceptualEvidence {
            gate: Gate {
                open: true,
                crowding: 0.01,
                crowded_images: 0,
                reason: String::new(),
            },
            links: vec![
                PerceptualLink {
                    a: 0,
                    b: 2,
                    hash_distance: 4,
                    aligned: None,
                },
                PerceptualLink {
                    a: 1,
                    b: 3,
                    hash_distance: 16,
                    aligned: Some(0.91),
                },
            ],
            candidates: 2,
        };
        let (labels, groups) = find_duplicates(&e, &knn, &hashes, &evidence, 0.98);
        assert_eq!(labels, vec![0, 1, 0, 1]);
        assert_eq!(groups[0].pairs[0].reason.to_string(), "hash distance 4");
        assert_eq!(
            groups[1].pairs[0].reason.to_string(),
            "aligned detail 0.91 (hash distance 16)"
        );
        // Without the evidence nothing is grouped.
        let none = PerceptualEvidence::none("test");
        let (_, groups) = find_duplicates(&e, &knn, &hashes, &none, 0.98);
        assert!(groups.is_empty());
    }
}
