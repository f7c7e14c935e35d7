//! Progress reporting and cancellation shared by every stage.
//!
//! Stages report through a [`ProgressSink`] (the CLI draws bars, the viewer will
//! draw its own) and check a [`CancelToken`] between batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// The pipeline stages, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Scan,
    Embed,
    Neighbours,
    Layout,
    Clusters,
    Duplicates,
    /// Label issues, outliers and quality flags.
    Issues,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Scan,
        Stage::Embed,
        Stage::Neighbours,
        Stage::Layout,
        Stage::Clusters,
        Stage::Duplicates,
        Stage::Issues,
    ];

    /// The key used in `report.json` timings.
    pub fn key(self) -> &'static str {
        match self {
            Stage::Scan => "scan",
            Stage::Embed => "embed",
            Stage::Neighbours => "neighbours",
            Stage::Layout => "layout",
            Stage::Clusters => "clusters",
            Stage::Duplicates => "duplicates",
            Stage::Issues => "issues",
        }
    }

    /// What a person reads next to the progress bar.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Scan => "scan",
            Stage::Embed => "decode+embed",
            Stage::Neighbours => "neighbours",
            Stage::Layout => "layout",
            Stage::Clusters => "clusters",
            Stage::Duplicates => "duplicates",
            Stage::Issues => "issues",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProgressEvent {
    /// A stage began; `total` is the amount of work when known.
    Started { stage: Stage, total: Option<u64> },
    /// `done` units of the stage's work are finished (absolute, not a delta).
    Advanced { stage: Stage, done: u64 },
    /// A stage ended after `seconds`, with a one-line summary.
    Finished {
        stage: Stage,
        seconds: f64,
        summary: String,
    },
    /// Something the user should know about that does not stop the run.
    Warning(String),
    /// A first 3D layout (the PCA that seeds UMAP and t-SNE), sent before the
    /// slow optimisation starts, so a viewer can show points at once.
    LayoutPreview(std::sync::Arc<Vec<crate::geometry::Point3>>),
}

/// Receives progress events; may be called from worker threads.
pub trait ProgressSink: Send + Sync {
    fn event(&self, event: ProgressEvent);
}

impl<F: Fn(ProgressEvent) + Send + Sync> ProgressSink for F {
    fn event(&self, event: ProgressEvent) {
        self(event)
    }
}

/// A sink that drops everything (tests, benchmarks).
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _: ProgressEvent) {}
}

/// The error a stage returns when it stopped because the user cancelled.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// Shared flag: set it from anywhere (Ctrl-C handler, a Cancel button) and the
/// running stage stops at its next batch boundary.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once cancelled; stages call this between batches.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Returns true when `err` (or its cause chain) is a cancellation.
pub fn is_cancelled(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<Cancelled>())
}
