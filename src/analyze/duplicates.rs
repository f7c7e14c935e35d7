//! Exact and near-duplicate groups.
//!
//! Exact duplicates share a content hash. Near-duplicates are kNN pairs whose
//! cosine similarity is at or above the threshold. Both kinds of link are merged
//! with union-find, so A≈B and B≈C make one group even if A and C are further
//! apart: each group reports its weakest pair to make such chaining visible.
//! Nothing here touches the files.

use serde::Serialize;

use crate::Embeddings;
use crate::decode::ContentHash;
use crate::neighbours::KnnGraph;

/// Groups up to this size list every pair; larger ones list the linking pairs.
const ALL_PAIRS_LIMIT: usize = 64;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DuplicatePair {
    pub a: usize,
    pub b: usize,
    pub cosine: f32,
    /// The two files have identical bytes.
    pub identical: bool,
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
pub fn find_duplicates(
    embeddings: &Embeddings,
    knn: &KnnGraph,
    hashes: &[ContentHash],
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

    let mut members_of: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        members_of.entry(sets.find(i)).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = members_of.into_values().filter(|m| m.len() > 1).collect();
    groups.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));

    let pair = |a: usize, b: usize| DuplicatePair {
        a,
        b,
        cosine: if hashes[a] == hashes[b] {
            1.0
        } else {
            embeddings.cosine(a, b).min(1.0)
        },
        identical: hashes[a] == hashes[b],
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

struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Joins the sets of a and b; false if they were already one.
    fn union(&mut self, a: usize, b: usize) -> bool {
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
        let (labels, groups) = find_duplicates(&e, &knn, &hashes, 0.98);
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
    }
}
