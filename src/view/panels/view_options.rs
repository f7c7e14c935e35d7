//! How points look: what the colours show (with a legend), which points stay
//! bright (issue filters, the filename filter), point size, thumbnails, the
//! home view, and the controls.

use bevy_egui::egui;

use super::widgets::{colour_bar, swatch};
use super::{Cx, Section, section};
use crate::choice::Choice;
use crate::pipeline::Analysis;
use crate::view::colour::{NO_VALUE, palette};
use crate::view::state::{ColorBy, IssueFilter};

/// Legend entries listed before "… more".
const LEGEND_ENTRIES: usize = 24;

pub(super) fn show(ui: &mut egui::Ui, cx: &mut Cx, a: &Analysis) {
    let requested = cx.ui.take_request(Section::View);
    section(ui, Section::View, "View", true, requested, |ui| {
        colouring(ui, cx, a);
        filters(ui, cx, a);
        display(ui, cx, a);
        controls(ui);
    });
}

fn colouring(ui: &mut egui::Ui, cx: &mut Cx, a: &Analysis) {
    let view = &mut *cx.view;
    let has_labels = a.curation.labels.is_some();
    ui.horizontal(|ui| {
        ui.label("Colour by");
        egui::ComboBox::from_id_salt("colour-by")
            .selected_text(view.color_by.title())
            .show_ui(ui, |ui| {
                for &choice in ColorBy::ALL {
                    let needs_labels = matches!(
                        choice,
                        ColorBy::Label | ColorBy::LabelIssue | ColorBy::Suggested
                    );
                    let enabled = has_labels || !needs_labels;
                    ui.add_enabled_ui(enabled, |ui| {
                        ui.selectable_value(&mut view.color_by, choice, choice.title())
                            .on_hover_text(choice.help())
                            .on_disabled_hover_text(
                                "needs labels: class folders or --labels FILE.csv",
                            );
                    });
                }
            });
    });
    legend(ui, cx, a);
}

fn legend(ui: &mut egui::Ui, cx: &mut Cx, a: &Analysis) {
    let facts = cx.facts;
    let names = a
        .curation
        .labels
        .as_ref()
        .map(|l| l.names.as_slice())
        .unwrap_or(&[]);
    match cx.view.color_by {
        ColorBy::Cluster => {
            ui.horizontal_wrapped(|ui| {
                for (id, members) in a.clusters.members.iter().enumerate().take(LEGEND_ENTRIES) {
                    swatch(ui, palette(id as i32));
                    ui.label(format!("{id} ({})", members.len()));
                }
                if a.clusters.members.len() > LEGEND_ENTRIES {
                    ui.label(format!(
                        "… {} more",
                        a.clusters.members.len() - LEGEND_ENTRIES
                    ));
                }
                swatch(ui, palette(-1));
                ui.label(format!("none ({})", a.clusters.noise()));
            });
        }
        ColorBy::Folder => {
            ui.horizontal_wrapped(|ui| {
                for (id, name) in cx.classes.names.iter().enumerate().take(LEGEND_ENTRIES * 2) {
                    swatch(ui, palette(id as i32));
                    ui.label(name);
                }
            });
        }
        ColorBy::Duplicates => {
            let in_groups = cx.duplicates.labels.iter().filter(|l| **l >= 0).count();
            ui.horizontal_wrapped(|ui| {
                swatch(ui, bevy::prelude::Color::srgb(1.0, 0.3, 0.25));
                ui.label(format!("in a duplicate group ({in_groups})"));
                swatch(ui, bevy::prelude::Color::srgb(0.35, 0.37, 0.42));
                ui.label("unique");
            });
        }
        ColorBy::Label | ColorBy::Suggested => {
            if cx.view.color_by == ColorBy::Suggested {
                let differs =
                    facts.map(|f| (0..f.len()).filter(|&i| f.suggests_another(i)).count());
                ui.add(
                    egui::Label::new(format!(
                        "Bright: images whose label is more likely wrong than right ({}), in the \
                         colour of the suggested label. Dim: the given label holds.",
                        differs.map_or("…".to_owned(), |d| d.to_string())
                    ))
                    .wrap(),
                );
            }
            ui.horizontal_wrapped(|ui| {
                for (id, name) in names.iter().enumerate().take(LEGEND_ENTRIES * 2) {
                    swatch(ui, palette(id as i32));
                    ui.label(name);
                }
                swatch(ui, NO_VALUE);
                ui.label("no label");
            });
        }
        ColorBy::LabelIssue => {
            ui.label(
                "How likely the given label is wrong (how much closer another label's images are):",
            );
            colour_bar(ui, "0", "1");
            ui.horizontal(|ui| {
                swatch(ui, NO_VALUE);
                ui.label("no label");
            });
        }
        ColorBy::Outlier => {
            let (lo, hi) = facts.map_or((0.0, 1.0), |f| f.outlier_range);
            ui.label("How unlike the rest an image is (higher = odder):");
            colour_bar(ui, &format!("{lo:.3}"), &format!("{hi:.3}"));
        }
    }
}

fn filters(ui: &mut egui::Ui, cx: &mut Cx, a: &Analysis) {
    let facts = cx.facts;
    let duplicates = &cx.duplicates.labels;
    let view = &mut *cx.view;
    ui.horizontal(|ui| {
        ui.label("Show");
        let selected = view
            .issue_filter
            .map_or_else(|| "all images".to_owned(), IssueFilter::title);
        egui::ComboBox::from_id_salt("issue-filter")
            .selected_text(selected)
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut view.issue_filter, None, "all images");
                for filter in IssueFilter::all() {
                    let count = facts.map(|f| f.count(filter, duplicates));
                    let text = match count {
                        Some(c) => format!("{} ({c})", filter.title()),
                        None => filter.title(),
                    };
                    ui.selectable_value(&mut view.issue_filter, Some(filter), text);
                }
            })
            .response
            .on_hover_text("The other images dim");
    });
    ui.horizontal(|ui| {
        ui.label("File name");
        ui.add(
            egui::TextEdit::singleline(&mut view.filter)
                .hint_text("part of a path")
                .desired_width(ui.available_width()),
        );
    });
    let needle = view.filter.trim().to_lowercase();
    if needle.is_empty() {
        return;
    }
    // Counted when the text changes, over the paths lower-cased once.
    let generation = cx.dataset.generation;
    let hits = match (&cx.ui.filter_hits, facts) {
        (Some((g, text, hits)), _) if *g == generation && *text == needle => Some(*hits),
        (_, Some(f)) => {
            let hits = (0..f.len())
                .filter(|&i| f.path_lower(i).contains(&needle))
                .count();
            cx.ui.filter_hits = Some((generation, needle, hits));
            Some(hits)
        }
        _ => None,
    };
    if let Some(hits) = hits {
        ui.label(format!("{hits} of {} images match", a.folder.images.len()));
    }
}

fn display(ui: &mut egui::Ui, cx: &mut Cx, a: &Analysis) {
    let view = &mut *cx.view;
    ui.add(
        egui::Slider::new(&mut view.splat_size, 0.005..=0.2)
            .logarithmic(true)
            .text("point size"),
    );
    ui.horizontal(|ui| {
        ui.checkbox(&mut view.show_thumbnails, "thumbnails")
            .on_hover_text("Images instead of dots where they are big enough to see");
        if ui.button("Reset view (R)").clicked() {
            cx.goal.0 = cx.home.0;
        }
    });
    ui.add(
        egui::Label::new(
            egui::RichText::new(format!(
                "{} images · {} · laid out with {}",
                a.folder.images.len(),
                a.folder.embedder_description,
                a.layout.used.name()
            ))
            .small(),
        )
        .wrap(),
    );
}

fn controls(ui: &mut egui::Ui) {
    egui::CollapsingHeader::new("Controls")
        .id_salt("controls")
        .show(ui, |ui| {
            egui::Grid::new("controls-grid")
                .num_columns(2)
                .show(ui, |ui| {
                    for (input, what) in [
                        ("drag", "turn"),
                        ("right / middle drag", "pan"),
                        ("wheel", "zoom toward the cursor"),
                        ("click", "show an image"),
                        ("double-click", "fly to it"),
                        ("R", "reset the view"),
                        ("Ctrl (⌘) + drag", "select (new selection)"),
                        ("Shift + drag", "add to the selection"),
                        ("Alt + drag", "take from the selection"),
                        ("B", "selection shape: lasso / box"),
                    ] {
                        ui.label(egui::RichText::new(input).strong());
                        ui.label(what);
                        ui.end_row();
                    }
                });
        });
}
