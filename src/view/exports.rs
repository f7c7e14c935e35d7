//! Files the viewer writes on request: selections, tags, duplicate groups.
//! One export at a time, on a background [`Task`]; the file goes into the
//! export folder (the dataset's results folder unless the user typed
//! another), never into the dataset: the library's writers refuse that.
//! No file dialog is needed, so exports work on desktops without a portal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bevy::prelude::*;

use super::tasks::Task;
use crate::analyze::DuplicateGroup;
use crate::output::duplicates::ExportKind;
use crate::output::selection::{SelectionExport, TagExport, Tags};
use crate::pipeline::Analysis;

pub struct ExportsPlugin;

impl Plugin for ExportsPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Exports>()
            .add_systems(Update, finish_exports);
    }
}

/// What to write.
pub enum ExportJob {
    Selection(SelectionExport, Vec<usize>),
    Tags(TagExport, Tags),
    Duplicates {
        kind: ExportKind,
        groups: Vec<DuplicateGroup>,
        threshold: f32,
    },
}

impl ExportJob {
    fn file_name(&self) -> String {
        match self {
            ExportJob::Selection(kind, _) => kind.file_name().to_owned(),
            ExportJob::Tags(kind, _) => kind.file_name(),
            ExportJob::Duplicates { kind, .. } => match kind {
                ExportKind::Csv => "duplicates.csv",
                ExportKind::Json => "duplicates.json",
                ExportKind::Others => "duplicates-to-review.txt",
            }
            .to_owned(),
        }
    }

    /// Writes the file into `folder`; returns its path.
    fn write(self, analysis: &Analysis, folder: &Path) -> anyhow::Result<PathBuf> {
        let path = folder.join(self.file_name());
        match self {
            ExportJob::Selection(kind, indices) => {
                crate::output::selection::export_selection(kind, &path, analysis, &indices)?
            }
            ExportJob::Tags(kind, tags) => {
                crate::output::selection::export_tags(&kind, &path, &tags, analysis)?
            }
            ExportJob::Duplicates {
                kind,
                groups,
                threshold,
            } => {
                let root = &analysis.folder.root;
                crate::output::check_output_dir(folder, root)?;
                std::fs::create_dir_all(folder)?;
                crate::output::duplicates::export(
                    kind,
                    &path,
                    root,
                    &groups,
                    &analysis.folder.images,
                    threshold,
                )?
            }
        }
        Ok(path)
    }
}

/// The export running, where exports go, and how the last one ended.
#[derive(Resource, Default)]
pub struct Exports {
    running: Option<Task<PathBuf>>,
    /// The folder typed in the panel; empty: the results folder.
    pub folder_text: String,
    /// The last export's file, or why it failed.
    pub last: Option<Result<PathBuf, String>>,
}

impl Exports {
    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// Where exports of `analysis` go.
    pub fn folder(&self, analysis: &Analysis) -> anyhow::Result<PathBuf> {
        let typed = self.folder_text.trim();
        if typed.is_empty() {
            crate::output::default_output_dir(&analysis.folder.root)
        } else {
            Ok(PathBuf::from(typed))
        }
    }

    /// Starts writing `job` (an export already running is replaced).
    pub fn start(&mut self, analysis: Arc<Analysis>, job: ExportJob) {
        self.last = None;
        match self.folder(&analysis) {
            Ok(folder) => {
                self.running = Some(Task::spawn("export", move |_| {
                    job.write(&analysis, &folder)
                }));
            }
            Err(err) => self.last = Some(Err(format!("{err:#}"))),
        }
    }
}

fn finish_exports(mut exports: ResMut<Exports>) {
    let Some(outcome) = exports.running.as_mut().and_then(|t| t.poll()) else {
        return;
    };
    exports.running = None;
    exports.last = Some(outcome.map_err(|e| e.to_string()));
}
