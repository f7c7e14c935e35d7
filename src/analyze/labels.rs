//! Label issues: how likely each image's given label is wrong, judged by the
//! labels of its nearest neighbours in embedding space, and the label they
//! suggest instead.

use crate::neighbours::KnnGraph;

/// Per image: the suspicion score (higher = more likely mislabelled, in
/// [0, 1]) and the suggested label; `None` for images without a label.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelIssues {
    pub score: Vec<Option<f32>>,
    pub suggested: Vec<Option<u32>>,
}

/// Similarity-weighted vote of the labelled neighbours: the score is the
/// share of the vote that does not go to the given label.
pub fn label_issues(knn: &KnnGraph, given: &[Option<u32>], n_classes: usize) -> LabelIssues {
    let n = given.len();
    let mut score = vec![None; n];
    let mut suggested = vec![None; n];
    let mut votes = vec![0.0f32; n_classes];
    for i in 0..n {
        let Some(label) = given[i] else {
            continue;
        };
        votes.iter_mut().for_each(|v| *v = 0.0);
        let mut total = 0.0;
        for (j, distance) in knn.neighbours(i) {
            if let Some(l) = given[j] {
                let weight = KnnGraph::cosine_of_distance(distance).max(0.0) + 1e-3;
                votes[l as usize] += weight;
                total += weight;
            }
        }
        if total <= 0.0 {
            continue;
        }
        let best = (0..n_classes)
            .max_by(|&a, &b| votes[a].total_cmp(&votes[b]).then(b.cmp(&a)))
            .unwrap_or(label as usize);
        score[i] = Some(1.0 - votes[label as usize] / total);
        suggested[i] = Some(best as u32);
    }
    LabelIssues { score, suggested }
}
