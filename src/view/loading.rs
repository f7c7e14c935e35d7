//! Runs the library pipeline on a background [`Task`] and turns its progress
//! events into a [`Dataset`] the other plugins read. Nothing here blocks the
//! frame loop: the task only pushes into a mutex that one system drains per
//! frame. A failed or crashed run leaves its error in [`Dataset::error`]
//! (the panel shows it with Retry) and nothing running, so a re-run is
//! always possible.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bevy::prelude::*;

use super::tasks::{Task, TaskError};
use crate::geometry::Point3;
use crate::pipeline::{self, Analysis, AnalyzeOptions};
use crate::progress::{ProgressEvent, Stage};

pub struct LoadingPlugin {
    pub folder: Option<PathBuf>,
    pub options: AnalyzeOptions,
}

impl Plugin for LoadingPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(Settings(self.options.clone()))
            .init_resource::<Dataset>()
            .add_message::<OpenFolder>()
            .add_systems(
                Update,
                (start_requested_runs, drain_worker_events)
                    .chain()
                    .in_set(LoadingSystems),
            );
        if let Some(folder) = &self.folder {
            app.world_mut().write_message(OpenFolder(folder.clone()));
        }
    }
}

/// Systems that update [`Dataset`]; readers run after them.
#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub struct LoadingSystems;

/// Ask for `folder` to be analysed (replacing whatever is open).
#[derive(Message, Clone, Debug)]
pub struct OpenFolder(pub PathBuf);

/// The options the next run uses; the layout panel edits them.
#[derive(Resource, Clone, Debug)]
pub struct Settings(pub AnalyzeOptions);

/// Progress of one stage, for its bar.
#[derive(Clone, Debug, Default)]
pub struct StageProgress {
    pub started: bool,
    pub total: Option<u64>,
    pub done: u64,
    /// Seconds and summary once finished.
    pub finished: Option<(f64, String)>,
}

/// The folder being shown and how far its analysis got.
#[derive(Resource, Default)]
pub struct Dataset {
    pub folder: Option<PathBuf>,
    pub stages: [StageProgress; Stage::ALL.len()],
    pub warnings: Vec<String>,
    /// The PCA preview, before the final layout exists.
    pub preview: Option<Arc<Vec<Point3>>>,
    pub analysis: Option<Arc<Analysis>>,
    /// Counts the analyses shown: readers compare it with the one they last
    /// saw to notice a new result (or a new folder, or none).
    pub generation: u64,
    /// Counts the layouts shown (a preview, a result, none): what the
    /// positions follow.
    pub layout_generation: u64,
    /// Why the last run stopped without a result, in words for the user.
    pub error: Option<String>,
    run: Option<Run>,
}

impl Dataset {
    /// A finished analysis, shown without running the pipeline (benchmarks).
    pub fn shown(folder: PathBuf, analysis: Arc<Analysis>) -> Self {
        Self {
            folder: Some(folder),
            analysis: Some(analysis),
            generation: 1,
            layout_generation: 1,
            ..default()
        }
    }

    pub fn running(&self) -> bool {
        self.run.is_some()
    }

    pub fn stage(&self, stage: Stage) -> &StageProgress {
        &self.stages[stage as usize]
    }

    /// Stops the running analysis at its next batch boundary.
    pub fn cancel(&self) {
        if let Some(run) = &self.run {
            run.task.cancel();
        }
    }

    /// Shows `analysis` (or nothing) as a new generation.
    fn replace_analysis(&mut self, analysis: Option<Arc<Analysis>>) {
        self.analysis = analysis;
        self.generation += 1;
        self.layout_generation += 1;
    }

    fn replace_preview(&mut self, preview: Option<Arc<Vec<Point3>>>) {
        self.preview = preview;
        self.layout_generation += 1;
    }

    /// The layout to draw: the preview while a run has one, else the result's.
    pub fn shown_layout(&self) -> Option<&[Point3]> {
        match (&self.preview, &self.analysis) {
            (Some(preview), _) => Some(preview.as_slice()),
            (None, Some(analysis)) => Some(&analysis.layout.points),
            (None, None) => None,
        }
    }
}

/// A pipeline run in the background and the events it has sent.
struct Run {
    task: Task<Analysis>,
    events: Arc<Mutex<Vec<ProgressEvent>>>,
}

fn start_requested_runs(
    mut requests: MessageReader<OpenFolder>,
    mut dataset: ResMut<Dataset>,
    settings: Res<Settings>,
    mut windows: Query<&mut Window>,
) {
    let Some(OpenFolder(folder)) = requests.read().last().cloned() else {
        return;
    };
    dataset.cancel();
    let folder = source_of(&folder);
    for mut window in &mut windows {
        window.title = super::window_title(Some(&folder));
    }
    let keep = dataset.folder.as_deref() == Some(folder.as_path());
    // A re-run of the same folder keeps the old result on screen until the
    // new one is ready; a new folder starts blank.
    let previous = if keep { dataset.analysis.take() } else { None };
    let generation = dataset.generation + if keep { 0 } else { 1 };
    let layout_generation = dataset.layout_generation + 1;
    *dataset = Dataset {
        folder: Some(folder.clone()),
        analysis: previous,
        generation,
        layout_generation,
        ..default()
    };
    super::welcome::remember_recent(&folder);
    dataset.run = Some(start_run(folder, settings.0.clone()));
}

/// What a dropped, typed or chosen path opens: a folder, or embeddings
/// computed elsewhere (a Parquet file or folder, clip-retrieval output, a
/// `.npy`) as themselves; an image file stands for the folder that holds it.
pub fn source_of(path: &Path) -> PathBuf {
    use crate::source::{SourceKind, detect};
    match detect(path) {
        SourceKind::Parquet | SourceKind::Npy | SourceKind::ClipRetrieval => path.to_path_buf(),
        _ if path.is_dir() => path.to_path_buf(),
        _ => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    }
}

fn start_run(folder: PathBuf, options: AnalyzeOptions) -> Run {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = events.clone();
    let task = Task::spawn("pipeline", move |cancel| {
        let sink = |event: ProgressEvent| {
            sink_events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(event)
        };
        pipeline::analyze(&folder, &options, &sink, cancel)
    });
    Run { task, events }
}

fn describe_failure(err: &TaskError, folder: Option<&Path>) -> String {
    let folder = folder.map_or(String::new(), |f| f.display().to_string());
    match err {
        TaskError::Cancelled => {
            "Cancelled. Open the folder again (or press Re-run) to start over.".to_owned()
        }
        TaskError::Failed(message) => format!("Could not analyse {folder}: {message}"),
        TaskError::Crashed(_) => format!("Could not analyse {folder}: {err}"),
    }
}

fn drain_worker_events(mut dataset: ResMut<Dataset>) {
    // Polled without marking the dataset changed: every reader (the point
    // instances among them) would otherwise redo its work each frame.
    let quiet = dataset.bypass_change_detection();
    let Some(run) = quiet.run.as_mut() else {
        return;
    };
    let events = std::mem::take(&mut *run.events.lock().unwrap_or_else(|p| p.into_inner()));
    let result = run.task.poll();
    if events.is_empty() && result.is_none() {
        return;
    }
    for event in events {
        match event {
            ProgressEvent::Started { stage, total } => {
                let s = &mut dataset.stages[stage as usize];
                s.started = true;
                s.total = total.or(s.total);
            }
            ProgressEvent::Advanced { stage, done } => {
                dataset.stages[stage as usize].done = done;
            }
            ProgressEvent::Finished {
                stage,
                seconds,
                summary,
            } => {
                let s = &mut dataset.stages[stage as usize];
                s.started = true;
                s.finished = Some((seconds, summary));
            }
            ProgressEvent::Warning(text) => dataset.warnings.push(text),
            ProgressEvent::LayoutPreview(points) => dataset.replace_preview(Some(points)),
        }
    }
    match result {
        Some(Ok(analysis)) => {
            dataset.preview = None;
            dataset.replace_analysis(Some(Arc::new(analysis)));
            dataset.run = None;
        }
        Some(Err(err)) => {
            dataset.error = Some(describe_failure(&err, dataset.folder.as_deref()));
            // The preview of a failed run has nothing behind it.
            dataset.replace_preview(None);
            dataset.run = None;
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crashed_run_says_so_and_can_be_retried() {
        let message = describe_failure(
            &TaskError::Crashed("attempt to subtract with overflow".into()),
            Some(Path::new("/data")),
        );
        assert!(
            message.contains("/data") && message.contains("retry"),
            "{message}"
        );
        let cancelled = describe_failure(&TaskError::Cancelled, None);
        assert!(cancelled.contains("Re-run"));
    }

    #[test]
    fn a_file_stands_for_its_folder_and_parquet_for_itself() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.png");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(source_of(&file), dir.path());
        assert_eq!(source_of(dir.path()), dir.path());
        let parquet = dir.path().join("embeddings.PARQUET");
        std::fs::write(&parquet, b"PAR1").unwrap();
        assert_eq!(source_of(&parquet), parquet);
    }
}
