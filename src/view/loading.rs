//! Runs the library pipeline on a worker thread and turns its progress events
//! into a [`Dataset`] the other plugins read. Nothing here blocks the frame
//! loop: the worker only pushes into a mutex that one system drains per frame.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bevy::prelude::*;

use crate::pipeline::{self, Analysis, AnalyzeOptions};
use crate::progress::{CancelToken, ProgressEvent, Stage, is_cancelled};
use crate::reduce::Point3;

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
    pub stages: [StageProgress; 6],
    pub warnings: Vec<String>,
    /// The PCA preview, before the final layout exists.
    pub preview: Option<Arc<Vec<Point3>>>,
    pub analysis: Option<Arc<Analysis>>,
    /// Why the last run stopped without a result, in words for the user.
    pub error: Option<String>,
    worker: Option<Worker>,
}

impl Dataset {
    /// A finished analysis, shown without running the pipeline (benchmarks).
    pub fn shown(folder: PathBuf, analysis: Arc<Analysis>) -> Self {
        Self {
            folder: Some(folder),
            analysis: Some(analysis),
            ..default()
        }
    }

    pub fn running(&self) -> bool {
        self.worker.is_some()
    }

    pub fn stage(&self, stage: Stage) -> &StageProgress {
        &self.stages[stage as usize]
    }

    /// Stops the running analysis at its next batch boundary.
    pub fn cancel(&self) {
        if let Some(worker) = &self.worker {
            worker.cancel.cancel();
        }
    }
}

struct Worker {
    cancel: CancelToken,
    inbox: Arc<Mutex<Inbox>>,
}

#[derive(Default)]
struct Inbox {
    events: Vec<ProgressEvent>,
    result: Option<Result<Analysis, String>>,
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
    let folder = folder_of(&folder);
    for mut window in &mut windows {
        window.title = super::window_title(Some(&folder));
    }
    let keep = dataset.folder.as_deref() == Some(folder.as_path());
    // A re-run of the same folder keeps the old result on screen until the
    // new one is ready; a new folder starts blank.
    let previous = if keep { dataset.analysis.take() } else { None };
    *dataset = Dataset {
        folder: Some(folder.clone()),
        analysis: previous,
        ..default()
    };
    super::welcome::remember_recent(&folder);
    dataset.worker = Some(spawn_worker(folder, settings.0.clone()));
}

/// A dropped or chosen file stands for the folder that holds it.
pub fn folder_of(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

fn spawn_worker(folder: PathBuf, options: AnalyzeOptions) -> Worker {
    let cancel = CancelToken::new();
    let inbox = Arc::new(Mutex::new(Inbox::default()));
    let (thread_cancel, thread_inbox) = (cancel.clone(), inbox.clone());
    std::thread::Builder::new()
        .name("embedscope-pipeline".into())
        .spawn(move || {
            let sink = |event: ProgressEvent| thread_inbox.lock().unwrap().events.push(event);
            let result = pipeline::analyze(&folder, &options, &sink, &thread_cancel)
                .map_err(|err| describe_failure(&err, &folder));
            thread_inbox.lock().unwrap().result = Some(result);
        })
        .expect("spawning the pipeline thread");
    Worker { cancel, inbox }
}

fn describe_failure(err: &anyhow::Error, folder: &Path) -> String {
    if is_cancelled(err) {
        "Cancelled. Open the folder again (or press Re-run) to start over.".to_owned()
    } else {
        format!("Could not analyse {}: {err:#}", folder.display())
    }
}

fn drain_worker_events(mut dataset: ResMut<Dataset>) {
    let Some(worker) = &dataset.worker else {
        return;
    };
    let (events, result) = {
        let mut inbox = worker.inbox.lock().unwrap();
        (std::mem::take(&mut inbox.events), inbox.result.take())
    };
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
            ProgressEvent::LayoutPreview(points) => dataset.preview = Some(points),
        }
    }
    match result {
        Some(Ok(analysis)) => {
            dataset.analysis = Some(Arc::new(analysis));
            dataset.preview = None;
            dataset.worker = None;
        }
        Some(Err(message)) => {
            dataset.error = Some(message);
            dataset.worker = None;
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_stands_for_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.png");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(folder_of(&file), dir.path());
        assert_eq!(folder_of(dir.path()), dir.path());
    }
}
