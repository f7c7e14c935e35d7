//! Stage 6: what the map means: clusters and duplicate groups.

pub mod clusters;
pub mod duplicates;

pub use clusters::{ClusterParams, Clusters, find_clusters};
pub use duplicates::{DuplicateGroup, DuplicatePair, find_duplicates};
