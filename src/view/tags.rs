//! Named selections ("tags") of the dataset shown: read from `tags.json` in
//! the dataset's results folder when an analysis arrives, written back there
//! in the background after each change. Tags are keyed by relative path, so
//! they outlive a re-run and come back when the folder is reopened; they are
//! never written into the dataset.

use std::path::PathBuf;
use std::sync::Arc;

use bevy::prelude::*;

use super::colour::Facts;
use super::loading::Dataset;
use super::tasks::Task;
use crate::output::selection::{Tags, clean_tag_name, read_tags, tags_file, write_tags};
use crate::pipeline::Analysis;

pub struct TagsPlugin;

impl Plugin for TagsPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<TagBook>().add_systems(
            Update,
            (follow_analysis, save_changes)
                .chain()
                .after(super::loading::LoadingSystems),
        );
    }
}

/// The tags of the dataset shown.
#[derive(Resource, Default)]
pub struct TagBook {
    /// The dataset folder they belong to.
    folder: Option<PathBuf>,
    /// `tags.json` in its results folder.
    pub file: Option<PathBuf>,
    tags: Tags,
    /// Tag names and image counts, kept in step with `tags`.
    names: Vec<(String, usize)>,
    loading: Option<Task<Tags>>,
    saving: Option<Task<()>>,
    /// Saves of folders no longer shown, left to finish.
    finishing: Vec<Task<()>>,
    /// Changed since the last save started.
    dirty: bool,
    /// Why the tags could not be read or written.
    pub problem: Option<String>,
}

impl TagBook {
    pub fn tags(&self) -> &Tags {
        &self.tags
    }

    pub fn names(&self) -> &[(String, usize)] {
        &self.names
    }

    /// False while the file is read (a change then would be lost).
    pub fn ready(&self) -> bool {
        self.loading.is_none() && self.file.is_some()
    }

    /// True while nothing waits to be written.
    pub fn saved(&self) -> bool {
        !self.dirty && self.saving.is_none() && self.finishing.is_empty()
    }

    /// Puts the tag `name` on images `indices` of `analysis`.
    pub fn tag(
        &mut self,
        name: &str,
        analysis: &Analysis,
        indices: &[usize],
    ) -> anyhow::Result<()> {
        anyhow::ensure!(self.ready(), "the tags are still being read");
        let name = clean_tag_name(name)?;
        let images = &analysis.folder.images;
        self.tags.add(
            &name,
            indices
                .iter()
                .filter_map(|&i| images.get(i))
                .map(|r| r.relative.as_str()),
        );
        self.changed();
        Ok(())
    }

    /// Takes the tag `name` off images `indices`.
    pub fn untag(&mut self, name: &str, analysis: &Analysis, indices: &[usize]) {
        let images = &analysis.folder.images;
        self.tags.remove(
            name,
            indices
                .iter()
                .filter_map(|&i| images.get(i))
                .map(|r| r.relative.as_str()),
        );
        self.changed();
    }

    pub fn delete(&mut self, name: &str) {
        self.tags.delete(name);
        self.changed();
    }

    /// The images of `analysis` carrying `name` (tagged files no longer in
    /// the dataset are left out).
    pub fn images_with(&self, name: &str, analysis: &Analysis, facts: &Facts) -> Vec<usize> {
        self.tags
            .paths_with(name)
            .into_iter()
            .filter_map(|p| facts.index_of(analysis, p))
            .collect()
    }

    fn changed(&mut self) {
        self.names = self.tags.names();
        self.dirty = true;
    }
}

/// A new folder brings its own tags, read in the background.
fn follow_analysis(dataset: Res<Dataset>, mut book: ResMut<TagBook>) {
    if dataset.is_changed() {
        let folder = dataset
            .analysis
            .as_ref()
            .map(|a: &Arc<Analysis>| a.folder.root.clone());
        if folder != book.folder {
            start_reading(&mut book, folder);
        }
    }
    let Some(outcome) = book.loading.as_mut().and_then(|t| t.poll()) else {
        return;
    };
    book.loading = None;
    match outcome {
        Ok(tags) => {
            book.tags = tags;
            book.names = book.tags.names();
        }
        Err(err) => {
            // Without the file's tags, saving would overwrite them.
            book.problem = Some(format!("{err}; tags are off for this folder"));
            book.file = None;
        }
    }
}

fn start_reading(book: &mut TagBook, folder: Option<PathBuf>) {
    // The previous folder's last changes are written before they go.
    let mut finishing = std::mem::take(&mut book.finishing);
    finishing.extend(book.saving.take());
    if book.dirty
        && let (Some(file), Some(root)) = (book.file.clone(), book.folder.clone())
    {
        let tags = std::mem::take(&mut book.tags);
        finishing.push(Task::spawn("tags", move |_| {
            write_tags(&file, &tags, &root)
        }));
    }
    *book = TagBook {
        folder: folder.clone(),
        finishing,
        ..default()
    };
    let Some(folder) = folder else {
        return;
    };
    match crate::output::default_output_dir(&folder) {
        Ok(results) => {
            let file = tags_file(&results);
            book.file = Some(file.clone());
            book.loading = Some(Task::spawn("tags", move |_| read_tags(&file)));
        }
        Err(err) => book.problem = Some(format!("{err:#}")),
    }
}

/// Writes the tags after a change, one write at a time.
fn save_changes(mut book: ResMut<TagBook>) {
    book.finishing.retain_mut(|task| match task.poll() {
        None => true,
        Some(outcome) => {
            if let Err(err) = outcome {
                warn!("the tags of the previous folder were not saved: {err}");
            }
            false
        }
    });
    if let Some(outcome) = book.saving.as_mut().and_then(|t| t.poll()) {
        book.saving = None;
        if let Err(err) = outcome {
            book.problem = Some(format!("tags not saved: {err}"));
        }
    }
    if !book.dirty || book.saving.is_some() {
        return;
    }
    let (Some(file), Some(root)) = (book.file.clone(), book.folder.clone()) else {
        return;
    };
    book.dirty = false;
    book.problem = None;
    let tags = book.tags.clone();
    book.saving = Some(Task::spawn("tags", move |_| {
        write_tags(&file, &tags, &root)
    }));
}
