//! Stage 6: what the map means: clusters, duplicate groups, and what may be
//! wrong with the dataset (label issues, outliers, image-quality flags).

pub mod clusters;
pub mod duplicates;
pub mod hdbscan;
pub mod labels;
pub mod outliers;
pub mod perceptual;

pub use clusters::{ClusterParams, Clusters, find_clusters};
pub use duplicates::{DuplicateGroup, DuplicatePair, DuplicateReason, find_duplicates};
pub use labels::{LabelIssues, label_issues};
pub use outliers::outlier_scores;
pub use perceptual::PerceptualEvidence;

use crate::scan::labels::Labels;

/// A label-issue score at or above this puts `label_issue` in the `issues`
/// column: the given label is more likely wrong than right.
pub const LABEL_ISSUE_FLAG: f32 = 0.5;

/// The share of images flagged `outlier`: the outlier score is a ranking, and
/// a reviewer looks at the top of it.
pub const OUTLIER_SHARE: f64 = 0.01;

/// Neighbours closer than this chord distance (cosine above 0.999) are copies
/// of an image: not evidence of how odd it is (outliers), but the strongest
/// evidence of what its label should be (labels).
pub const COPY_DISTANCE: f32 = 0.045;

/// Per image, the group of copies it belongs to (the smallest index in it), or
/// `None` for an image without a copy. Groups are joined through the graph's
/// copy edges (chord distance below [`COPY_DISTANCE`]), so a group larger than
/// a neighbour list is still one group.
pub fn copy_groups(knn: &crate::neighbours::KnnGraph) -> Vec<Option<usize>> {
    let n = knn.n;
    let mut sets = duplicates::UnionFind::new(n);
    let mut has_copy = vec![false; n];
    for i in 0..n {
        // Nearest first: the copies lead the list.
        for (j, _) in knn.neighbours(i).take_while(|&(_, d)| d < COPY_DISTANCE) {
            sets.union(i, j);
            has_copy[i] = true;
            has_copy[j] = true;
        }
    }
    (0..n).map(|i| has_copy[i].then(|| sets.find(i))).collect()
}

/// Marks the top `share` of `scores` (at least one image), less those tied
/// with the best image left out: none when all scores are equal.
pub fn top_share(scores: &[f32], share: f64) -> Vec<bool> {
    let n = scores.len();
    let mut flagged = vec![false; n];
    if n == 0 {
        return flagged;
    }
    let count = ((n as f64 * share).ceil() as usize).clamp(1, n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    // Images tied with the first one left out are left out too: which of
    // equal scores makes the cut would otherwise be decided by file order
    // (200 identical images would flag two of them).
    let cut = order.get(count).map(|&i| scores[i]);
    for &i in &order[..count] {
        if cut.is_some_and(|c| scores[i] <= c) {
            break;
        }
        flagged[i] = true;
    }
    flagged
}

/// What may be wrong with each image, for ranking and review.
#[derive(Clone, Debug, Default)]
pub struct Curation {
    /// The labels the images were given, when there are any.
    pub labels: Option<Labels>,
    /// Present when there are labels.
    pub label_issues: Option<LabelIssues>,
    /// Per image, higher = odder; empty for fewer than two images.
    pub outliers: Vec<f32>,
    /// Per image: among the odd ones out the report lists (the top
    /// [`OUTLIER_SHARE`] by score).
    pub outlier_flagged: Vec<bool>,
    /// Per image: image-quality flags (empty when none apply).
    pub flags: Vec<Vec<QualityFlag>>,
    /// What was skipped and why, for people.
    pub notes: Vec<String>,
}

/// A cheap image-quality problem found while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QualityFlag {
    Dark,
    Bright,
    Blurry,
    LowInformation,
    Tiny,
    OddAspectRatio,
}

impl QualityFlag {
    pub const ALL: [QualityFlag; 6] = [
        QualityFlag::Dark,
        QualityFlag::Bright,
        QualityFlag::Blurry,
        QualityFlag::LowInformation,
        QualityFlag::Tiny,
        QualityFlag::OddAspectRatio,
    ];

    /// The name in `points.csv`'s `issues` column and `report.json`.
    pub fn name(self) -> &'static str {
        match self {
            QualityFlag::Dark => "dark",
            QualityFlag::Bright => "bright",
            QualityFlag::Blurry => "blurry",
            QualityFlag::LowInformation => "low_information",
            QualityFlag::Tiny => "tiny",
            QualityFlag::OddAspectRatio => "odd_aspect_ratio",
        }
    }

    /// One line for people (thresholds in [`crate::decode::quality::QualityThresholds`]).
    pub fn help(self) -> &'static str {
        match self {
            QualityFlag::Dark => "very dark: its brightest 1% of pixels are below 25% grey",
            QualityFlag::Bright => "overexposed: even its darkest 5% of pixels are above 75% grey",
            QualityFlag::Blurry => {
                "blurry: its detail is far coarser than the folder's (under a fifth of the median sharpness)"
            }
            QualityFlag::LowInformation => {
                "nearly constant: it barely varies compared with how much it could at its brightness"
            }
            QualityFlag::Tiny => {
                "tiny: under 0.4 times the folder's median size, or under 8 pixels on a side"
            }
            QualityFlag::OddAspectRatio => {
                "odd aspect ratio: 2.9 times wider or narrower than the folder's median shape"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::top_share;

    #[test]
    fn top_share_leaves_ties_at_the_cut_out() {
        // 1 % of 200 is 2: the two highest.
        let mut scores: Vec<f32> = (0..200).map(|i| i as f32).collect();
        let flagged = top_share(&scores, 0.01);
        assert_eq!(flagged.iter().filter(|&&f| f).count(), 2);
        assert!(flagged[199] && flagged[198]);
        // The second and third tie: only the first is certain to be odder.
        scores[197] = 198.0;
        let flagged = top_share(&scores, 0.01);
        assert_eq!(flagged.iter().filter(|&&f| f).count(), 1);
        assert!(flagged[199]);
        // All equal (200 identical images): nothing stands out.
        assert!(!top_share(&[0.5; 200], 0.01).contains(&true));
        // A single image is flagged; none, nothing.
        assert_eq!(top_share(&[0.3], 0.01), vec![true]);
        assert!(top_share(&[], 0.01).is_empty());
    }
}
