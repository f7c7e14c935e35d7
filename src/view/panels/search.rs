//! CLIP text search: the query is embedded by CLIP's text tower on a
//! background [`Worker`] that loads the tower once (about a second) and keeps
//! it for the next queries (milliseconds each); the best matches are listed
//! and the other points dim.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use bevy::prelude::*;
use bevy_egui::egui;

use super::widgets::{WARN, gallery};
use super::{Cx, Section, section};
use crate::embed::{ClipOptions, DeviceChoice};
use crate::pipeline::Analysis;
use crate::view::loading::Dataset;
use crate::view::state::ViewState;
use crate::view::tasks::{RequestId, Worker};

/// Images ranked by a text query, best first.
const TEXT_MATCHES: usize = 50;

struct Query {
    analysis: Arc<Analysis>,
    clip: ClipOptions,
    text: String,
}

/// Which model a loaded text tower is: queries with other options load anew.
type ModelKey = (Option<PathBuf>, DeviceChoice);

#[cfg(feature = "clip")]
type Ranker = crate::search::TextRanker;
#[cfg(not(feature = "clip"))]
type Ranker = ();

/// Ranks `query`, loading the text tower only when none (or another) is
/// loaded.
fn rank(
    loaded: &mut Option<(ModelKey, Ranker)>,
    query: Query,
) -> anyhow::Result<Vec<(usize, f32)>> {
    #[cfg(feature = "clip")]
    {
        let key = (query.clip.model.clone(), query.clip.device);
        if loaded.as_ref().is_none_or(|(k, _)| *k != key) {
            *loaded = None; // free the old tower before loading another
            *loaded = Some((key, crate::search::TextRanker::load(&query.clip)?));
        }
        let (_, ranker) = loaded.as_ref().expect("loaded above");
        ranker.rank(&query.analysis.folder, &query.text, TEXT_MATCHES)
    }
    #[cfg(not(feature = "clip"))]
    {
        let _ = (loaded, query);
        anyhow::bail!("this embedscope was built without CLIP (the `clip` feature)")
    }
}

#[derive(Resource)]
pub struct TextSearch {
    worker: Worker<Query, Vec<(usize, f32)>>,
    /// The analysis the results belong to.
    generation: u64,
    query: String,
    waiting: Option<RequestId>,
    message: Option<String>,
    results: Vec<(usize, f32)>,
    matches: Option<Arc<HashSet<usize>>>,
}

impl Default for TextSearch {
    fn default() -> Self {
        let mut loaded: Option<(ModelKey, Ranker)> = None;
        Self {
            worker: Worker::start("text-search", move |query, _| rank(&mut loaded, query)),
            generation: 0,
            query: String::new(),
            waiting: None,
            message: None,
            results: Vec::new(),
            matches: None,
        }
    }
}

pub fn receive_matches(
    dataset: Res<Dataset>,
    mut search: ResMut<TextSearch>,
    mut state: ResMut<ViewState>,
) {
    if search.generation != dataset.generation {
        // A new map: old results point at other images.
        search.generation = dataset.generation;
        search.results.clear();
        search.matches = None;
        search.message = None;
        search.waiting = None;
    }
    for (id, outcome) in search.worker.poll() {
        if search.waiting != Some(id) {
            continue; // asked for a map no longer shown
        }
        search.waiting = None;
        match outcome {
            Ok(results) => {
                search.matches = Some(Arc::new(results.iter().map(|r| r.0).collect()));
                search.results = results;
            }
            Err(err) => search.message = Some(err.to_string()),
        }
    }
    if state.text_matches != search.matches {
        state.text_matches = search.matches.clone();
    }
}

pub(super) fn show(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>) {
    let requested = cx.ui.take_request(Section::Search);
    let clip = a.folder.embedder_id.starts_with("clip-");
    section(ui, Section::Search, "Text search", clip, requested, |ui| {
        body(ui, cx, a, clip);
    });
}

fn body(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>, clip: bool) {
    let search = &mut *cx.jobs.search;
    if !clip {
        ui.add(
            egui::Label::new(
                "Text search needs the CLIP embedder: `embedscope model fetch`, then choose \
                 CLIP under Layout settings and Re-run.",
            )
            .wrap(),
        );
        return;
    }
    let busy = search.waiting.is_some();
    let mut find = false;
    ui.horizontal(|ui| {
        let edit = ui.add_enabled(
            !busy,
            egui::TextEdit::singleline(&mut search.query)
                .hint_text("a photo of a dog")
                .desired_width(ui.available_width() - 50.0),
        );
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let button = ui.add_enabled(
            !busy && !search.query.trim().is_empty(),
            egui::Button::new("Find"),
        );
        find = (button.clicked() || enter) && !search.query.trim().is_empty();
    });
    if find && !busy {
        search.message = None;
        search.waiting = Some(search.worker.request(Query {
            analysis: a.clone(),
            clip: a.options.clip.clone(),
            text: search.query.trim().to_owned(),
        }));
    }
    if busy {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("embedding the text (the first query loads the model)…");
        });
    }
    if let Some(message) = &search.message {
        ui.add(egui::Label::new(egui::RichText::new(message).color(WARN)).wrap());
    }
    if search.results.is_empty() {
        return;
    }
    ui.label(format!(
        "best {} matches bright; click one to fly to it",
        search.results.len()
    ));
    let results = &search.results;
    let clicked = gallery(
        ui,
        "text-matches",
        &mut cx.jobs.thumbs,
        a,
        results.len(),
        220.0,
        |k| (results[k].0, format!("{:.3}", results[k].1)),
    );
    if ui.button("Clear text search").clicked() {
        search.results.clear();
        search.matches = None;
    }
    if let Some(i) = clicked {
        cx.fly_to(i);
    }
}
