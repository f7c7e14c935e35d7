//! Layout settings: reducer and its knobs, the embedder, Re-run. Whether
//! CLIP's weights are installed is looked up when the section opens and
//! every few seconds while it stays open, not every frame (it walks
//! folders).

use std::path::PathBuf;

use bevy::prelude::*;
use bevy_egui::egui;

use super::{Cx, Section, section};
use crate::embed::EmbedderKind;
use crate::reduce::ReducerKind;
use crate::view::loading::OpenFolder;

/// Seconds between two looks for CLIP's weights while the section is open.
const MODEL_REFRESH_SECONDS: f64 = 5.0;

/// The last answer to "where are CLIP's weights?".
#[derive(Resource, Default)]
pub struct ModelLookup {
    answer: Option<Result<PathBuf, String>>,
    /// When it was looked up (seconds), and the frame the section was last
    /// drawn in.
    looked_at: f64,
    drawn_in: Option<u64>,
}

impl ModelLookup {
    /// The answer, looked up again when the section (re)opens or the last
    /// look is old.
    fn answer(
        &mut self,
        clip: &crate::embed::ClipOptions,
        now: f64,
        frame: u64,
    ) -> &Result<PathBuf, String> {
        // A section not drawn in the previous frame has just been opened.
        let reopened = self.drawn_in.is_none_or(|f| f + 1 != frame);
        self.drawn_in = Some(frame);
        if self.answer.is_none() || reopened || now - self.looked_at > MODEL_REFRESH_SECONDS {
            self.looked_at = now;
            self.answer = Some(clip.find_model().map_err(|e| format!("{e:#}")));
        }
        self.answer.as_ref().expect("looked up above")
    }
}

pub(super) fn show(ui: &mut egui::Ui, cx: &mut Cx) {
    let requested = cx.ui.take_request(Section::Layout);
    section(
        ui,
        Section::Layout,
        "Layout settings",
        false,
        requested,
        |ui| body(ui, cx),
    );
}

fn body(ui: &mut egui::Ui, cx: &mut Cx) {
    let o = &mut cx.settings.0;
    ui.horizontal(|ui| {
        ui.label("Method");
        ui.selectable_value(&mut o.reducer, ReducerKind::Umap, "UMAP");
        ui.selectable_value(&mut o.reducer, ReducerKind::Tsne, "t-SNE");
        ui.selectable_value(&mut o.reducer, ReducerKind::Pca, "PCA");
    });
    match o.reducer {
        ReducerKind::Umap => {
            ui.add(egui::Slider::new(&mut o.reduce.umap.n_neighbors, 2..=100).text("neighbours"));
            ui.add(egui::Slider::new(&mut o.reduce.umap.min_dist, 0.0..=1.0).text("min distance"));
        }
        ReducerKind::Tsne => {
            ui.add(
                egui::Slider::new(&mut o.reduce.tsne.perplexity, 2.0..=100.0).text("perplexity"),
            );
        }
        ReducerKind::Pca => {}
    }
    let answer = cx
        .jobs
        .models
        .answer(&o.clip, cx.now, cx.ctx.cumulative_frame_nr());
    ui.horizontal(|ui| {
        ui.label("Embedder");
        ui.selectable_value(&mut o.embedder, EmbedderKind::Pixels, "pixels");
        match answer {
            Ok(dir) => {
                ui.selectable_value(&mut o.embedder, EmbedderKind::Clip, "CLIP")
                    .on_hover_text(format!("weights in {}", dir.display()));
            }
            Err(err) => {
                ui.add_enabled(false, egui::Button::new("CLIP"))
                    .on_disabled_hover_text(err);
            }
        }
    });
    ui.add(
        egui::Label::new(
            egui::RichText::new(
                "Embeddings come from the cache when they were computed before: only the layout \
                 is redone.",
            )
            .small(),
        )
        .wrap(),
    );
    if ui
        .add_enabled(!cx.dataset.running(), egui::Button::new("Re-run"))
        .clicked()
        && let Some(folder) = cx.dataset.folder.clone()
    {
        cx.open.write(OpenFolder(folder));
    }
}
