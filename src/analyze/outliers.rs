//! Outliers: how unlike the rest of the dataset each image is.

use crate::neighbours::KnnGraph;

/// Mean distance to the nearest neighbours (higher = odder).
pub fn outlier_scores(knn: &KnnGraph) -> Vec<f32> {
    (0..knn.n)
        .map(|i| {
            let (sum, count) = knn
                .neighbours(i)
                .fold((0.0f32, 0usize), |(s, c), (_, d)| (s + d, c + 1));
            if count == 0 { 0.0 } else { sum / count as f32 }
        })
        .collect()
}
