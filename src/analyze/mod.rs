//! Stage 6: what the map means: clusters, duplicate groups, and what may be
//! wrong with the dataset (label issues, outliers, image-quality flags).

pub mod clusters;
pub mod duplicates;
pub mod labels;
pub mod outliers;

pub use clusters::{ClusterParams, Clusters, find_clusters};
pub use duplicates::{DuplicateGroup, DuplicatePair, find_duplicates};
pub use labels::{LabelIssues, label_issues};
pub use outliers::outlier_scores;

use crate::scan::labels::Labels;

/// What may be wrong with each image, for ranking and review.
#[derive(Clone, Debug, Default)]
pub struct Curation {
    /// The labels the images were given, when there are any.
    pub labels: Option<Labels>,
    /// Present when there are labels.
    pub label_issues: Option<LabelIssues>,
    /// Per image, higher = odder; empty for fewer than two images.
    pub outliers: Vec<f32>,
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
}
