//! How points look: what the colours show (with a legend), which points stay
//! bright (issue filters, the filename filter), point size, thumbnails, the
//! home view, and the controls.

use bevy_egui::egui;

use super::widgets::{colour_bar, swatch};
use super::{Cx, Section, section};
use crate::choice::Choice;
use crate::pipeline::Analysis;
use crate::view::colour::{Facts, NO_VALUE, palette};
use crate::view::columns::{
    ColumnFacts, ColumnFilter, ColumnRule, ColumnValues, MAX_NAMED_CATEGORIES, NO_VALUE_NAME,
};
use crate::view::state::{ColorBy, IssueFilter, ViewState};

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
    let facts = cx.facts;
    let has_labels = a.curation.labels.is_some();
    let selected = match (view.color_by, &view.color_column) {
        (ColorBy::Column, Some(name)) => format!("column: {name}"),
        (choice, _) => choice.title().to_owned(),
    };
    ui.horizontal(|ui| {
        ui.label("Colour by");
        egui::ComboBox::from_id_salt("colour-by")
            .selected_text(selected)
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
                column_choices(ui, view, facts);
            });
    });
    legend(ui, cx, a);
}

/// The source's metadata columns in the colour menu (free text greyed out).
fn column_choices(ui: &mut egui::Ui, view: &mut ViewState, facts: Option<&Facts>) {
    let Some(facts) = facts.filter(|f| !f.columns.is_empty()) else {
        return;
    };
    ui.separator();
    for column in &facts.columns {
        let on = view.color_by == ColorBy::Column
            && view.color_column.as_deref() == Some(column.name.as_str());
        ui.add_enabled_ui(column.colours(), |ui| {
            let clicked = ui
                .selectable_label(on, format!("column: {}", column.name))
                .on_hover_text(describe(column))
                .on_disabled_hover_text(format!(
                    "{}: too many values to colour by; filter on it below",
                    describe(column)
                ))
                .clicked();
            if clicked {
                view.color_by = ColorBy::Column;
                view.color_column = Some(column.name.clone());
            }
        });
    }
}

/// One line on what a column holds.
fn describe(column: &ColumnFacts) -> String {
    let nulls = match column.nulls {
        0 => String::new(),
        n => format!(", {n} without a value"),
    };
    match &column.values {
        ColumnValues::Categories { names, .. } => {
            format!(
                "{} ({}): {} values{nulls}",
                column.name,
                column.source_kind,
                names.len()
            )
        }
        ColumnValues::Numbers { range, .. } => format!(
            "{} ({}): numbers from {} to {}{nulls}",
            column.name,
            column.source_kind,
            number(range.0),
            number(range.1)
        ),
        ColumnValues::Text { .. } => format!(
            "{} (text): over {MAX_NAMED_CATEGORIES} distinct values{nulls}",
            column.name
        ),
    }
}

/// A number short enough for a legend.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if x.abs() >= 1e5 || (x != 0.0 && x.abs() < 1e-3) {
        format!("{x:.3e}")
    } else {
        format!("{x:.3}")
    }
}

/// The legend of a metadata column.
fn column_legend(ui: &mut egui::Ui, facts: Option<&Facts>, name: Option<&str>) {
    let Some(name) = name else {
        return;
    };
    let Some(facts) = facts else {
        ui.label("…");
        return;
    };
    let Some(column) = facts.column(name) else {
        ui.label(format!("This source has no column {name}."));
        return;
    };
    match &column.values {
        ColumnValues::Categories { names, counts, .. } => {
            ui.horizontal_wrapped(|ui| {
                for (id, (value, count)) in
                    names.iter().zip(counts).enumerate().take(LEGEND_ENTRIES)
                {
                    swatch(ui, palette(id as i32));
                    ui.label(format!("{value} ({count})"));
                }
                if names.len() > LEGEND_ENTRIES {
                    ui.label(format!("… {} more", names.len() - LEGEND_ENTRIES));
                }
            });
        }
        ColumnValues::Numbers {
            colour_range,
            range,
            ..
        } => {
            ui.label(format!(
                "{name}: from {} to {}; the colours span the 1st to the 99th percentile:",
                number(range.0),
                number(range.1)
            ));
            colour_bar(ui, &number(colour_range.0), &number(colour_range.1));
        }
        ColumnValues::Text { .. } => {
            ui.label(format!(
                "{}: too many values to colour by.",
                describe(column)
            ));
        }
    }
    if column.nulls > 0 {
        ui.horizontal(|ui| {
            swatch(ui, NO_VALUE);
            ui.label(format!("no value ({})", column.nulls));
        });
    }
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
        ColorBy::Column => column_legend(ui, facts, cx.view.color_column.as_deref()),
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
    file_name_hits(ui, cx, a);
    column_filter(ui, cx);
}

/// How many images the filename filter matches.
fn file_name_hits(ui: &mut egui::Ui, cx: &mut Cx, a: &Analysis) {
    let needle = cx.view.filter.trim().to_lowercase();
    if needle.is_empty() {
        return;
    }
    // Counted when the text changes, over the paths lower-cased once.
    let generation = cx.dataset.generation;
    let hits = match (&cx.ui.filter_hits, cx.facts) {
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

/// Keep bright only the images whose value in a metadata column passes: ticked
/// categories, a range of numbers, or a piece of text.
fn column_filter(ui: &mut egui::Ui, cx: &mut Cx) {
    let Some(facts) = cx.facts.filter(|f| !f.columns.is_empty()) else {
        return;
    };
    let view = &mut *cx.view;
    ui.horizontal(|ui| {
        ui.label("Column");
        let selected = view
            .column_filter
            .as_ref()
            .map_or("no filter", |f| f.column.as_str())
            .to_owned();
        egui::ComboBox::from_id_salt("column-filter")
            .selected_text(selected)
            .show_ui(ui, |ui| {
                if ui
                    .selectable_label(view.column_filter.is_none(), "no filter")
                    .clicked()
                {
                    view.column_filter = None;
                }
                for column in &facts.columns {
                    let on = view
                        .column_filter
                        .as_ref()
                        .is_some_and(|f| f.column == column.name);
                    let clicked = ui
                        .selectable_label(on, &column.name)
                        .on_hover_text(describe(column))
                        .clicked();
                    if clicked && !on {
                        view.column_filter = Some(ColumnFilter {
                            column: column.name.clone(),
                            rule: column.everything(),
                        });
                    }
                }
            })
            .response
            .on_hover_text("Filter on a column of the source: the other images dim");
    });
    let Some(filter) = view.column_filter.as_mut() else {
        return;
    };
    let Some(column) = facts.column(&filter.column) else {
        ui.label(format!("This source has no column {}.", filter.column));
        return;
    };
    if column.matcher(&filter.rule).is_none() {
        // The rule was made for another kind of column (a script, a re-run).
        filter.rule = column.everything();
    }
    rule_editor(ui, column, &mut filter.rule);
    // Counted when the filter changes.
    let generation = cx.dataset.generation;
    let hits = match &cx.ui.column_hits {
        Some((g, f, hits)) if *g == generation && f == filter => *hits,
        _ => {
            let hits = column
                .matcher(&filter.rule)
                .map_or(0, |m| (0..column.len()).filter(|&i| m.passes(i)).count());
            cx.ui.column_hits = Some((generation, filter.clone(), hits));
            hits
        }
    };
    ui.label(format!("{hits} of {} images pass", column.len()));
}

fn rule_editor(ui: &mut egui::Ui, column: &ColumnFacts, rule: &mut ColumnRule) {
    match (&column.values, rule) {
        (ColumnValues::Categories { names, counts, .. }, ColumnRule::OneOf(chosen)) => {
            ui.horizontal(|ui| {
                if ui.small_button("all").clicked() {
                    chosen.extend(names.iter().cloned());
                    chosen.insert(NO_VALUE_NAME.to_owned());
                }
                if ui.small_button("none").clicked() {
                    chosen.clear();
                }
            });
            // One row per value, then "(no value)" if there are nulls; only
            // the rows in view are laid out (a column may have 1,000 values).
            let rows = names.len() + usize::from(column.nulls > 0);
            let row = |k: usize| match names.get(k) {
                Some(name) => (k as i32, name.as_str(), counts[k]),
                None => (-1, NO_VALUE_NAME, column.nulls),
            };
            let row_height = ui.spacing().interact_size.y;
            egui::ScrollArea::vertical()
                .id_salt("column-values")
                .max_height(160.0)
                .show_rows(ui, row_height, rows, |ui, shown| {
                    for (id, name, count) in shown.map(row) {
                        let mut on = chosen.contains(name);
                        ui.horizontal(|ui| {
                            swatch(ui, palette(id));
                            if ui.checkbox(&mut on, format!("{name} ({count})")).changed() {
                                if on {
                                    chosen.insert(name.to_owned());
                                } else {
                                    chosen.remove(name);
                                }
                            }
                        });
                    }
                });
        }
        (ColumnValues::Numbers { range, .. }, ColumnRule::Between { low, high }) => {
            let speed = ((range.1 - range.0) / 500.0).max(1e-9);
            ui.horizontal(|ui| {
                ui.label("from");
                ui.add(egui::DragValue::new(low).speed(speed));
                ui.label("to");
                ui.add(egui::DragValue::new(high).speed(speed));
            });
        }
        (ColumnValues::Text { .. }, ColumnRule::Contains(needle)) => {
            ui.add(
                egui::TextEdit::singleline(needle)
                    .hint_text("part of the text")
                    .desired_width(ui.available_width()),
            );
        }
        (_, rule) => {
            // A range or a substring over categories (from a script).
            ui.horizontal(|ui| {
                ui.label(match &*rule {
                    ColumnRule::Between { low, high } => {
                        format!("values from {} to {}", number(*low), number(*high))
                    }
                    ColumnRule::Contains(needle) => format!("values containing {needle:?}"),
                    ColumnRule::OneOf(chosen) => format!("{} values", chosen.len()),
                });
                if ui.small_button("pick values").clicked() {
                    *rule = column.everything();
                }
            });
        }
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
