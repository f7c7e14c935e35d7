//! Stage 5: reduce the embeddings to 3D.
//!
//! UMAP (graph from `umap-rs`, seeded optimiser here), Barnes–Hut t-SNE
//! (written here with scikit-learn's schedule) and PCA. All three are
//! deterministic for a given seed. Inputs too small for a method fall back to
//! PCA, and the report says so.

pub mod pca;
pub mod tsne;
pub mod umap;

use serde::Serialize;

use crate::Embeddings;
use crate::choice::Choice;
use crate::geometry::Point3;
use crate::neighbours::KnnGraph;
use crate::progress::{CancelToken, ProgressSink};

/// Called once per optimisation epoch: every `every` epochs, reports progress
/// and stops if the user cancelled.
pub(crate) fn epoch_checkpoint(
    epoch: usize,
    every: usize,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<(), crate::progress::Cancelled> {
    if epoch.is_multiple_of(every) {
        cancel.check()?;
        progress.event(crate::progress::ProgressEvent::Advanced {
            stage: crate::progress::Stage::Layout,
            done: epoch as u64,
        });
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReducerKind {
    Umap,
    Tsne,
    Pca,
}

impl Choice for ReducerKind {
    const ALL: &'static [Self] = &[ReducerKind::Umap, ReducerKind::Tsne, ReducerKind::Pca];

    fn name(self) -> &'static str {
        match self {
            ReducerKind::Umap => "umap",
            ReducerKind::Tsne => "tsne",
            ReducerKind::Pca => "pca",
        }
    }

    fn help(self) -> &'static str {
        match self {
            ReducerKind::Umap => "UMAP: local neighbourhoods and global shape, fast",
            ReducerKind::Tsne => "t-SNE (Barnes–Hut): tight local clusters, slower",
            ReducerKind::Pca => "PCA: the three directions of largest variance, instant",
        }
    }
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct ReduceParams {
    pub umap: umap::UmapParams,
    pub tsne: tsne::TsneParams,
}

impl ReduceParams {
    /// How many neighbours the kNN graph must hold for `kind`.
    pub fn neighbours_needed(&self, kind: ReducerKind) -> usize {
        match kind {
            // UMAP counts the point itself among its neighbours, as umap-learn does.
            ReducerKind::Umap => self.umap.n_neighbors.saturating_sub(1).max(1),
            ReducerKind::Tsne => (3.0 * self.tsne.perplexity).ceil() as usize,
            ReducerKind::Pca => 0,
        }
    }
}

/// A 3D layout and how it was made.
#[derive(Clone, Debug, Serialize)]
pub struct Layout {
    #[serde(skip)]
    pub points: Vec<Point3>,
    /// The method asked for.
    pub requested: ReducerKind,
    /// The method that ran (PCA when the input was too small for the other).
    pub used: ReducerKind,
    /// Why `used` differs from `requested`, if it does.
    pub note: Option<String>,
}

/// Hands the PCA initialisation to the progress sink: it costs one copy and
/// lets a viewer draw points while the optimiser runs.
fn preview(init: &[Point3], progress: &dyn ProgressSink) {
    progress.event(crate::progress::ProgressEvent::LayoutPreview(
        std::sync::Arc::new(init.to_vec()),
    ));
}

/// Runs `kind` on `embeddings`, with `knn` holding at least
/// [`ReduceParams::neighbours_needed`] neighbours per point.
pub fn reduce(
    kind: ReducerKind,
    embeddings: &Embeddings,
    knn: &KnnGraph,
    params: &ReduceParams,
    seed: u64,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<Layout> {
    let n = embeddings.n;
    let pca_layout = |note: Option<String>| -> anyhow::Result<Layout> {
        Ok(Layout {
            points: pca::project(embeddings, seed)?,
            requested: kind,
            used: ReducerKind::Pca,
            note,
        })
    };
    match kind {
        ReducerKind::Pca => pca_layout(None),
        ReducerKind::Umap if n < umap::MIN_POINTS => pca_layout(Some(format!(
            "UMAP needs at least {} images; {n} laid out with PCA",
            umap::MIN_POINTS
        ))),
        ReducerKind::Tsne if n < tsne::MIN_POINTS => pca_layout(Some(format!(
            "t-SNE needs at least {} images; {n} laid out with PCA",
            tsne::MIN_POINTS
        ))),
        ReducerKind::Umap => {
            let init = pca::project(embeddings, seed)?;
            preview(&init, progress);
            let points = umap::umap(embeddings, knn, &init, &params.umap, seed, progress, cancel)?;
            Ok(Layout {
                points,
                requested: kind,
                used: kind,
                note: None,
            })
        }
        ReducerKind::Tsne => {
            let init = pca::project(embeddings, seed)?;
            preview(&init, progress);
            let (points, note) = tsne::tsne(knn, &init, &params.tsne, progress, cancel)?;
            Ok(Layout {
                points,
                requested: kind,
                used: kind,
                note,
            })
        }
    }
}
