//! The image last clicked: decoded at display size on a background
//! [`Worker`] (clicking through many images decodes only the last), with its
//! path, size, cluster, duplicate group, issues and nearest neighbours.

use std::path::PathBuf;

use bevy::prelude::*;
use bevy_egui::egui;

use super::widgets::{WARN, gallery, open_with_system};
use super::{Cx, Section, section};
use crate::decode::DecodeLimits;
use crate::pipeline::Analysis;
use crate::view::loading::Dataset;
use crate::view::state::ViewState;
use crate::view::tasks::{RequestId, Worker};

/// Longest side of the decoded image, pixels.
const SHOWN_SIZE: u32 = 512;
/// Tallest the image is drawn in the panel, logical pixels: the rest of
/// the panel must stay in reach.
const MAX_HEIGHT: f32 = 240.0;

#[derive(Resource)]
pub struct FocusImage {
    worker: Worker<(PathBuf, DecodeLimits), egui::ColorImage>,
    /// (analysis generation, image) shown or being decoded.
    key: Option<(u64, usize)>,
    waiting: Option<RequestId>,
    /// Pixels not yet turned into a texture (that needs the egui context).
    ready: Option<Result<egui::ColorImage, String>>,
    shown: Option<Result<egui::TextureHandle, String>>,
}

impl Default for FocusImage {
    fn default() -> Self {
        Self {
            worker: Worker::start(
                "focus-image",
                |(path, limits): (PathBuf, DecodeLimits), _| {
                    let bytes = crate::decode::read_file(&path, &limits)?;
                    let small = crate::decode::decode(&bytes, &limits)?
                        .thumbnail(SHOWN_SIZE, SHOWN_SIZE)
                        .to_rgba8();
                    Ok(egui::ColorImage::from_rgba_unmultiplied(
                        [small.width() as usize, small.height() as usize],
                        small.as_raw(),
                    ))
                },
            ),
            key: None,
            waiting: None,
            ready: None,
            shown: None,
        }
    }
}

pub fn load_focused_image(
    dataset: Res<Dataset>,
    state: Res<ViewState>,
    mut focus: ResMut<FocusImage>,
) {
    let key = dataset
        .analysis
        .as_ref()
        .zip(state.selected)
        .map(|(_, i)| (dataset.generation, i));
    if key != focus.key {
        focus.key = key;
        focus.shown = None;
        focus.ready = None;
        focus.waiting = None;
        if let (Some(a), Some(i)) = (&dataset.analysis, state.selected)
            && let Some(record) = a.folder.images.get(i)
        {
            let path = a.folder.root.join(&record.relative);
            focus.waiting = Some(focus.worker.request((path, a.options.limits)));
        }
    }
    for (id, outcome) in focus.worker.poll() {
        if focus.waiting == Some(id) {
            focus.waiting = None;
            focus.ready = Some(outcome.map_err(|e| e.to_string()));
        }
    }
}

pub(super) fn show(ui: &mut egui::Ui, cx: &mut Cx, a: &Analysis) {
    let requested = cx.ui.take_request(Section::Focus);
    section(ui, Section::Focus, "Image", true, requested, |ui| {
        body(ui, cx, a)
    });
}

fn body(ui: &mut egui::Ui, cx: &mut Cx, a: &Analysis) {
    let Some(i) = cx.view.selected.filter(|&i| i < a.folder.images.len()) else {
        ui.weak("Click a point to see its image.");
        return;
    };
    let focus = &mut *cx.jobs.focus;
    if let Some(ready) = focus.ready.take() {
        focus.shown = Some(ready.map(|img| {
            cx.ctx
                .load_texture("focused-image", img, egui::TextureOptions::LINEAR)
        }));
    }
    match &focus.shown {
        Some(Ok(texture)) => {
            let size = texture.size_vec2();
            let scale = (ui.available_width() / size.x)
                .min(MAX_HEIGHT / size.y)
                .min(4.0);
            ui.image((texture.id(), size * scale));
        }
        Some(Err(reason)) => {
            ui.add(
                egui::Label::new(
                    egui::RichText::new(format!("cannot show this image: {reason}")).color(WARN),
                )
                .wrap(),
            );
        }
        None => {
            ui.spinner();
        }
    }
    let record = &a.folder.images[i];
    let path = a.folder.root.join(&record.relative);
    ui.add(egui::Label::new(egui::RichText::new(&record.relative).monospace()).wrap());
    ui.label(format!("{} × {} pixels", record.width, record.height));
    let cluster = a.clusters.labels[i];
    let group = cx.duplicates.labels.get(i).copied().unwrap_or(-1);
    let none_or = |v: i32| {
        if v < 0 {
            "none".to_owned()
        } else {
            v.to_string()
        }
    };
    ui.label(format!(
        "cluster {} · duplicate group {}",
        none_or(cluster),
        none_or(group)
    ));
    curation(ui, a, i);
    ui.horizontal(|ui| {
        if ui.button("Open").clicked() {
            open_with_system(&path, false);
        }
        if ui.button("Show in folder").clicked() {
            open_with_system(&path, true);
        }
    });
    ui.label("Nearest neighbours (click to fly there):");
    let neighbours: Vec<(usize, f32)> = a
        .knn
        .neighbours(i)
        .take(12)
        .map(|(j, d)| (j, crate::neighbours::KnnGraph::cosine_of_distance(d)))
        .collect();
    let clicked = gallery(
        ui,
        "neighbours",
        &mut cx.jobs.thumbs,
        a,
        neighbours.len(),
        180.0,
        |k| (neighbours[k].0, format!("{:.3}", neighbours[k].1)),
    );
    if let Some(j) = clicked {
        cx.fly_to(j);
    }
}

/// The image's label, what its neighbours suggest, its scores and flags.
fn curation(ui: &mut egui::Ui, a: &Analysis, i: usize) {
    let c = &a.curation;
    let labels = c.labels.as_ref();
    if let Some(given) = labels.and_then(|l| l.name(i)) {
        let suggested = c
            .label_issues
            .as_ref()
            .and_then(|s| s.suggested[i].zip(s.score[i]))
            .and_then(|(s, score)| Some((labels?.names.get(s as usize)?, score)));
        match suggested {
            Some((name, score)) if name != given => {
                ui.colored_label(
                    WARN,
                    format!("label {given} · neighbours suggest {name} (score {score:.2})"),
                );
            }
            _ => {
                ui.label(format!("label {given}"));
            }
        }
    }
    if let Some(score) = c.outliers.get(i) {
        ui.label(format!("outlier score {score:.3}"));
    }
    let issues = crate::output::issues_of(a, i);
    if !issues.is_empty() {
        ui.colored_label(WARN, format!("flags: {}", issues.join(", ")));
    }
}
