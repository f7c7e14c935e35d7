//! The Issues panel: one tab per analysis (label issues, outliers, image
//! quality, duplicates), each a ranked gallery of thumbnails with scores,
//! virtualised so 100k+ images scroll as lightly as 20. A click focuses the
//! image and flies the camera to it. The duplicate threshold regroups on a
//! background task, so the slider never freezes the panel.

use std::sync::Arc;

use bevy::prelude::*;
use bevy_egui::egui;

use super::widgets::{THUMB, WARN, export_folder, gallery, thumb_button};
use super::{Cx, Section, section};
use crate::analyze::{LABEL_ISSUE_FLAG, OUTLIER_SHARE, QualityFlag};
use crate::output::duplicates::ExportKind;
use crate::pipeline::Analysis;
use crate::view::colour::{Facts, issue_bits, quality_bit};
use crate::view::exports::ExportJob;
use crate::view::loading::Dataset;
use crate::view::selection::SelectionOp;
use crate::view::state::{Duplicates, IssueFilter};
use crate::view::tasks::Task;

/// Height of a gallery in a tab, logical pixels.
const GALLERY_HEIGHT: f32 = 300.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IssueTab {
    #[default]
    LabelIssues,
    Outliers,
    Quality,
    Duplicates,
}

impl IssueTab {
    const ALL: [IssueTab; 4] = [
        IssueTab::LabelIssues,
        IssueTab::Outliers,
        IssueTab::Quality,
        IssueTab::Duplicates,
    ];

    fn title(self) -> &'static str {
        match self {
            IssueTab::LabelIssues => "Label issues",
            IssueTab::Outliers => "Outliers",
            IssueTab::Quality => "Quality",
            IssueTab::Duplicates => "Duplicates",
        }
    }

    /// The tab a script names: `label-issues`, `outliers`, `quality`,
    /// `duplicates`.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "label-issues" => Some(IssueTab::LabelIssues),
            "outliers" => Some(IssueTab::Outliers),
            "quality" => Some(IssueTab::Quality),
            "duplicates" => Some(IssueTab::Duplicates),
            _ => None,
        }
    }
}

/// Duplicate groups being recomputed at a new threshold.
#[derive(Resource, Default)]
pub struct Regroup {
    running: Option<(u64, Task<Duplicates>)>,
    /// The threshold asked for last (the slider shows it meanwhile).
    wanted: Option<f32>,
}

impl Regroup {
    fn start(&mut self, a: &Arc<Analysis>, generation: u64, threshold: f32) {
        let a = a.clone();
        self.wanted = Some(threshold);
        // The library walks the kNN graph's stored distances: no dot products,
        // but at 1M images still a moment.
        self.running = Some((
            generation,
            Task::spawn("regroup", move |_| {
                let hashes: Vec<_> = a.folder.images.iter().map(|r| r.hash).collect();
                let (labels, groups) = crate::analyze::find_duplicates(
                    &a.folder.embeddings,
                    &a.knn,
                    &hashes,
                    &a.perceptual,
                    threshold,
                );
                Ok(Duplicates {
                    threshold,
                    labels,
                    groups,
                })
            }),
        ));
    }
}

pub fn finish_regrouping(
    dataset: Res<Dataset>,
    mut regroup: ResMut<Regroup>,
    mut duplicates: ResMut<Duplicates>,
) {
    let Some((generation, task)) = regroup.running.as_mut() else {
        return;
    };
    if *generation != dataset.generation {
        // Another analysis came: its groups came with it.
        *regroup = Regroup::default();
        return;
    }
    let Some(outcome) = task.poll() else {
        return;
    };
    let wanted = regroup.wanted;
    regroup.running = None;
    match outcome {
        Ok(regrouped) => {
            if wanted == Some(regrouped.threshold) {
                regroup.wanted = None;
            }
            *duplicates = regrouped;
        }
        Err(err) => warn!("duplicates could not be regrouped: {err}"),
    }
}

pub(super) fn show(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>) {
    let requested = cx.ui.take_request(Section::Issues);
    section(ui, Section::Issues, "Issues", false, requested, |ui| {
        ui.horizontal_wrapped(|ui| {
            for tab in IssueTab::ALL {
                ui.selectable_value(&mut cx.ui.issues_tab, tab, tab.title());
            }
        });
        ui.separator();
        let Some(facts) = cx.facts else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("ranking…");
            });
            return;
        };
        match cx.ui.issues_tab {
            IssueTab::LabelIssues => label_issues(ui, cx, a, facts),
            IssueTab::Outliers => outliers(ui, cx, a, facts),
            IssueTab::Quality => quality(ui, cx, a, facts),
            IssueTab::Duplicates => duplicates(ui, cx, a, facts),
        }
    });
}

fn note(ui: &mut egui::Ui, text: &str) {
    ui.add(egui::Label::new(egui::RichText::new(text).small()).wrap());
}

/// "Show only these" (a filter) and "Select these" (a selection) for the
/// images flagged by one analysis.
fn act_on_flagged(ui: &mut egui::Ui, cx: &mut Cx, facts: &Facts, filter: IssueFilter) {
    ui.horizontal(|ui| {
        let only = cx.view.issue_filter == Some(filter);
        if ui.selectable_label(only, "Show only these").clicked() {
            cx.view.issue_filter = if only { None } else { Some(filter) };
        }
        if ui.button("Select these").clicked() {
            let duplicates = &cx.duplicates.labels;
            let hits = (0..facts.len())
                .filter(|&i| facts.passes(filter, i, duplicates.get(i).copied().unwrap_or(-1)))
                .collect();
            cx.selection.apply(SelectionOp::Replace, hits);
        }
    });
}

fn label_issues(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>, facts: &Facts) {
    let Some(labels) = a.curation.labels.as_ref() else {
        let why = a.folder.labels.note.as_deref().unwrap_or(
            "no labels: put images in class folders (FOLDER/<label>/...) or pass --labels FILE.csv",
        );
        note(ui, &format!("Skipped: {why}"));
        return;
    };
    let flagged = facts
        .issues
        .iter()
        .filter(|&&b| b & issue_bits::LABEL_ISSUE != 0)
        .count();
    note(
        ui,
        &format!(
            "{flagged} flagged (score ≥ {LABEL_ISSUE_FLAG}) of {} labelled ({}). The score is the \
             probability that the given label is wrong, from how much closer another label's \
             images are; caption: given -> suggested, score.",
            facts.label_issue_rank.len(),
            labels.origin
        ),
    );
    act_on_flagged(ui, cx, facts, IssueFilter::LabelIssue);
    let rank = &facts.label_issue_rank;
    let names = &labels.names;
    let name = |l: i32| names.get(l as usize).map_or("?", |n| n.as_str());
    let clicked = gallery(
        ui,
        "label-issue-gallery",
        &mut cx.jobs.thumbs,
        a,
        rank.len(),
        GALLERY_HEIGHT,
        |k| {
            let i = rank[k] as usize;
            (
                i,
                format!(
                    "{}->{} {:.2}",
                    name(facts.given[i]),
                    name(facts.suggested[i]),
                    facts.label_issue[i]
                ),
            )
        },
    );
    if let Some(i) = clicked {
        cx.fly_to(i);
    }
}

fn outliers(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>, facts: &Facts) {
    let rank = &facts.outlier_rank;
    if rank.is_empty() {
        note(ui, "Skipped: outliers need at least two images.");
        return;
    }
    let flagged = facts
        .issues
        .iter()
        .filter(|&&b| b & issue_bits::OUTLIER != 0)
        .count();
    note(
        ui,
        &format!(
            "Every image by how unlike its neighbourhood it is, oddest first; the top {:.0}% \
             ({flagged}) are flagged.",
            OUTLIER_SHARE * 100.0
        ),
    );
    act_on_flagged(ui, cx, facts, IssueFilter::Outlier);
    let clicked = gallery(
        ui,
        "outlier-gallery",
        &mut cx.jobs.thumbs,
        a,
        rank.len(),
        GALLERY_HEIGHT,
        |k| {
            let i = rank[k] as usize;
            (i, format!("{:.3}", facts.outlier[i]))
        },
    );
    if let Some(i) = clicked {
        cx.fly_to(i);
    }
}

fn quality(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>, facts: &Facts) {
    let count = |flag: Option<QualityFlag>| {
        let bits = flag.map_or(issue_bits::ANY_QUALITY, quality_bit);
        facts
            .quality_rank
            .iter()
            .filter(|&&i| facts.issues[i as usize] & bits != 0)
            .count()
    };
    if facts.quality_rank.is_empty() {
        note(
            ui,
            "No image is dark, overexposed, blurry, nearly blank, tiny or oddly shaped.",
        );
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.selectable_value(
            &mut cx.ui.quality_flag,
            None,
            format!("all ({})", count(None)),
        );
        for flag in QualityFlag::ALL {
            let n = count(Some(flag));
            if n > 0 {
                ui.selectable_value(
                    &mut cx.ui.quality_flag,
                    Some(flag),
                    format!("{} ({n})", flag.name()),
                );
            }
        }
    });
    let flag = cx.ui.quality_flag;
    act_on_flagged(ui, cx, facts, IssueFilter::Quality(flag));
    let bits = flag.map_or(issue_bits::ANY_QUALITY, quality_bit);
    let listed: Vec<u32> = facts
        .quality_rank
        .iter()
        .copied()
        .filter(|&i| facts.issues[i as usize] & bits != 0)
        .collect();
    let clicked = gallery(
        ui,
        "quality-gallery",
        &mut cx.jobs.thumbs,
        a,
        listed.len(),
        GALLERY_HEIGHT,
        |k| {
            let i = listed[k] as usize;
            let flags: Vec<&str> = a.curation.flags[i].iter().map(|f| f.name()).collect();
            (i, flags.join(", "))
        },
    );
    if let Some(i) = clicked {
        cx.fly_to(i);
    }
}

fn duplicates(ui: &mut egui::Ui, cx: &mut Cx, a: &Arc<Analysis>, facts: &Facts) {
    let regroup = &mut *cx.jobs.regroup;
    let mut threshold = regroup.wanted.unwrap_or(cx.duplicates.threshold);
    let slider = ui.add(egui::Slider::new(&mut threshold, 0.80..=1.0).text("cosine ≥"));
    if slider.changed() && Some(threshold) != regroup.wanted {
        regroup.start(a, cx.dataset.generation, threshold);
    }
    if regroup.running.is_some() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("regrouping…");
        });
    }
    let groups = &cx.duplicates.groups;
    let in_groups: usize = groups.iter().map(|g| g.members.len()).sum();
    note(
        ui,
        &format!(
            "{} groups, {in_groups} images. Only each image's nearest neighbours are compared. \
             embedscope never deletes or moves a file: export a list and decide.",
            groups.len()
        ),
    );
    act_on_flagged(ui, cx, facts, IssueFilter::Duplicate);
    ui.horizontal_wrapped(|ui| {
        ui.label("Export");
        for (label, kind, hover) in [
            ("CSV", ExportKind::Csv, "Every member of every group"),
            ("JSON", ExportKind::Json, "Every group with its paths"),
            (
                "keep-one list",
                ExportKind::Others,
                "Every member of every group except the one to keep (most pixels, then shortest path)",
            ),
        ] {
            let enabled = !cx.exports.busy() && !cx.duplicates.groups.is_empty();
            if ui
                .add_enabled(enabled, egui::Button::new(label))
                .on_hover_text(hover)
                .clicked()
            {
                cx.exports.start(
                    a.clone(),
                    ExportJob::Duplicates {
                        kind,
                        groups: cx.duplicates.groups.clone(),
                        threshold: cx.duplicates.threshold,
                    },
                );
            }
        }
    });
    export_folder(ui, cx.exports, a);
    let groups = &cx.duplicates.groups;
    let row_height = THUMB + 28.0;
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt("duplicate-groups")
        .max_height(GALLERY_HEIGHT)
        .auto_shrink([false, true])
        .show_rows(ui, row_height, groups.len(), |ui, rows| {
            for g in &groups[rows] {
                ui.vertical(|ui| {
                    ui.set_min_height(row_height);
                    ui.label(
                        egui::RichText::new(format!(
                            "group {} · {} images · cosine ≥ {:.3}{}",
                            g.id,
                            g.members.len(),
                            g.weakest.cosine,
                            if g.exact { " · exact copies" } else { "" }
                        ))
                        .small(),
                    );
                    ui.horizontal(|ui| {
                        for &m in g.members.iter().take(8) {
                            if thumb_button(ui, &mut cx.jobs.thumbs, a, m, "").clicked() {
                                clicked = Some(m);
                            }
                        }
                        if g.members.len() > 8 {
                            ui.colored_label(WARN, format!("+{}", g.members.len() - 8));
                        }
                    });
                });
            }
        });
    if let Some(i) = clicked {
        cx.fly_to(i);
    }
}
