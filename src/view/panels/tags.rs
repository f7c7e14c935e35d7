//! Tags: named selections kept in the results folder. Each can be selected
//! again, grown or shrunk by the current selection, deleted, and exported,
//! including as a labels file that relabels its images ("these 40 are
//! really 7s") for `--labels FILE.csv`.

use std::sync::Arc;

use bevy_egui::egui;

use super::widgets::{WARN, export_folder};
use super::{Cx, Section, section};
use crate::output::selection::TagExport;
use crate::pipeline::Analysis;
use crate::view::exports::ExportJob;
use crate::view::selection::SelectionOp;

pub(super) fn show(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>) {
    let requested = cx.ui.take_request(Section::Tags);
    let title = format!("Tags ({})", cx.tags.names().len());
    section(ui, Section::Tags, title, false, requested, |ui| {
        body(ui, cx, a)
    });
}

/// What a click in the tag list asks for.
enum Action {
    Select(String),
    Add(String),
    Remove(String),
    Delete(String),
}

fn body(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>) {
    if let Some(file) = &cx.tags.file {
        ui.add(
            egui::Label::new(egui::RichText::new(format!("kept in {}", file.display())).small())
                .truncate(),
        )
        .on_hover_text(file.display().to_string());
    }
    if !cx.tags.ready() && cx.tags.file.is_some() {
        ui.spinner();
        return;
    }
    if let Some(problem) = &cx.tags.problem {
        ui.add(egui::Label::new(egui::RichText::new(problem).color(WARN)).wrap());
    }
    if cx.tags.names().is_empty() {
        ui.weak("No tags yet: select images (Ctrl + drag) and tag them in the Selection section.");
        return;
    }
    let has_selection = !cx.selection.is_empty();
    let mut action = None;
    egui::Grid::new("tag-list")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            for (name, count) in cx.tags.names() {
                ui.label(format!("{name} ({count})"));
                ui.horizontal(|ui| {
                    if ui.small_button("select").clicked() {
                        action = Some(Action::Select(name.clone()));
                    }
                    if ui
                        .add_enabled(has_selection, egui::Button::new("+ selection").small())
                        .clicked()
                    {
                        action = Some(Action::Add(name.clone()));
                    }
                    if ui
                        .add_enabled(has_selection, egui::Button::new("− selection").small())
                        .clicked()
                    {
                        action = Some(Action::Remove(name.clone()));
                    }
                    if ui.small_button("delete").clicked() {
                        action = Some(Action::Delete(name.clone()));
                    }
                });
                ui.end_row();
            }
        });
    match action {
        Some(Action::Select(name)) => {
            if let Some(facts) = cx.facts {
                let images = cx.tags.images_with(&name, a, facts);
                cx.selection.apply(SelectionOp::Replace, images);
            }
        }
        Some(Action::Add(name)) => {
            if let Err(err) = cx.tags.tag(&name, a, cx.selection.indices()) {
                cx.tags.problem = Some(format!("{err:#}"));
            }
        }
        Some(Action::Remove(name)) => cx.tags.untag(&name, a, cx.selection.indices()),
        Some(Action::Delete(name)) => cx.tags.delete(&name),
        None => {}
    }
    ui.separator();
    exports(ui, cx, a);
}

fn exports(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>) {
    let busy = cx.exports.busy();
    if ui
        .add_enabled(!busy, egui::Button::new("Export all tags (path,tag CSV)"))
        .clicked()
    {
        cx.exports.start(
            a.clone(),
            ExportJob::Tags(TagExport::Csv, cx.tags.tags().clone()),
        );
    }
    ui.label("Relabel: a labels file for --labels, the tag's images given a new label");
    let (tag, label) = &mut cx.ui.relabel;
    ui.horizontal(|ui| {
        egui::ComboBox::from_id_salt("relabel-tag")
            .selected_text(if tag.is_empty() {
                "tag…"
            } else {
                tag.as_str()
            })
            .show_ui(ui, |ui| {
                for (name, _) in cx.tags.names() {
                    ui.selectable_value(tag, name.clone(), name);
                }
            });
        ui.label("->");
        ui.add(
            egui::TextEdit::singleline(label)
                .hint_text("7")
                .desired_width(60.0),
        );
        let ready = !tag.is_empty() && !label.trim().is_empty() && !busy;
        if ui
            .add_enabled(ready, egui::Button::new("Export"))
            .on_hover_text("Every labelled image with its label, the tag's images with this one")
            .clicked()
        {
            let kind = TagExport::Relabel {
                tag: tag.clone(),
                label: label.clone(),
            };
            cx.exports
                .start(a.clone(), ExportJob::Tags(kind, cx.tags.tags().clone()));
        }
    });
    export_folder(ui, cx.exports, a);
}
