//! The box/lasso selection: how to make one, its gallery, exports (CSV,
//! JSON, a list of paths) and naming it as a tag.

use std::sync::Arc;

use bevy_egui::egui;

use super::widgets::{WARN, export_folder, gallery};
use super::{Cx, Section, section};
use crate::output::selection::SelectionExport;
use crate::pipeline::Analysis;
use crate::view::exports::ExportJob;
use crate::view::selection::{DragShape, SelectionOp};

pub(super) fn show(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>) {
    let requested = cx.ui.take_request(Section::Selection);
    let title = format!("Selection ({})", cx.selection.len());
    section(ui, Section::Selection, title, true, requested, |ui| {
        body(ui, cx, a)
    });
}

fn body(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>) {
    ui.horizontal(|ui| {
        ui.label("Shape (B)");
        ui.selectable_value(&mut cx.drag.shape, DragShape::Lasso, "lasso");
        ui.selectable_value(&mut cx.drag.shape, DragShape::Box, "box");
    });
    ui.add(
        egui::Label::new(
            egui::RichText::new(
                "Ctrl (⌘) + drag selects, Shift + drag adds, Alt + drag takes away.",
            )
            .small(),
        )
        .wrap(),
    );
    // Selections from what is shown, without drawing.
    ui.horizontal_wrapped(|ui| {
        if let Some(facts) = cx.facts {
            let bright = ui.button("Select the bright points").on_hover_text(
                "Every image that passes the filters (issue, file name, text search)",
            );
            if bright.clicked() {
                let look = crate::view::colour::Look::of_shown(
                    &*cx.view,
                    cx.dataset,
                    cx.duplicates,
                    cx.classes,
                    Some(facts),
                    facts.len(),
                );
                cx.selection
                    .apply(SelectionOp::Replace, look.bright_points(facts.len()));
            }
        }
        if ui
            .add_enabled(!cx.selection.is_empty(), egui::Button::new("Clear"))
            .clicked()
        {
            cx.selection.clear();
        }
    });
    let count = cx.selection.len();
    if count == 0 {
        ui.weak("Nothing selected.");
        return;
    }
    let indices = cx.selection.indices();
    let clicked = gallery(
        ui,
        "selection-gallery",
        &mut cx.jobs.thumbs,
        a,
        count,
        260.0,
        |k| {
            let i = indices[k];
            (
                i,
                super::widgets::short_name(&a.folder.images[i].relative).to_owned(),
            )
        },
    );
    if let Some(i) = clicked {
        cx.fly_to(i);
    }
    ui.horizontal(|ui| {
        ui.label("Export");
        for (label, kind) in [
            ("CSV", SelectionExport::Csv),
            ("JSON", SelectionExport::Json),
            ("paths", SelectionExport::Paths),
        ] {
            let button = ui
                .add_enabled(!cx.exports.busy(), egui::Button::new(label))
                .on_hover_text(format!("Write {}", kind.file_name()));
            if button.clicked() {
                let job = ExportJob::Selection(kind, cx.selection.indices().to_vec());
                cx.exports.start(a.clone(), job);
            }
        }
    });
    export_folder(ui, cx.exports, a);
    ui.horizontal(|ui| {
        ui.label("Tag as");
        let edit = ui.add(
            egui::TextEdit::singleline(&mut cx.ui.tag_name)
                .hint_text("really sevens")
                .desired_width(ui.available_width() - 50.0),
        );
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let button = ui.add_enabled(cx.tags.ready(), egui::Button::new("Tag"));
        if button.clicked() || enter {
            match cx.tags.tag(&cx.ui.tag_name, a, cx.selection.indices()) {
                Ok(()) => cx.tags.problem = None,
                Err(err) => cx.tags.problem = Some(format!("{err:#}")),
            }
        }
    });
    if let Some(problem) = &cx.tags.problem {
        ui.add(egui::Label::new(egui::RichText::new(problem).color(WARN)).wrap());
    }
}
