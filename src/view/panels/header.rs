//! The top of the panel: opening another folder (dialog or typed path), the
//! folder shown, progress by stage with Cancel, and why a run stopped, with
//! Retry.

use bevy_egui::egui;

use super::widgets::WARN;
use bevy::prelude::MessageWriter;

use super::Cx;
use crate::progress::Stage;
use crate::view::loading::{Dataset, OpenFolder, StageProgress};
use crate::view::welcome::path_field;

pub(super) fn show(ui: &mut egui::Ui, cx: &mut Cx) {
    ui.horizontal(|ui| {
        ui.heading("embedscope");
        let dialog = &mut cx.jobs.dialog;
        if ui
            .add_enabled(!dialog.is_open(), egui::Button::new("Open folder…"))
            .clicked()
        {
            dialog.ask();
        }
    });
    if let Some(problem) = &cx.jobs.dialog.problem {
        ui.add(egui::Label::new(egui::RichText::new(problem).color(WARN)).wrap());
    }
    let typed_problem = cx.jobs.path.problem.is_some();
    egui::CollapsingHeader::new("Open a path…")
        .id_salt("open-path")
        .open((typed_problem || cx.jobs.dialog.problem.is_some()).then_some(true))
        .show(ui, |ui| {
            path_field(ui, &mut cx.jobs.path, cx.open);
        });
    if let Some(folder) = &cx.dataset.folder {
        ui.add(
            egui::Label::new(egui::RichText::new(folder.display().to_string()).monospace())
                .truncate(),
        )
        .on_hover_text(folder.display().to_string());
    }
    ui.separator();
    progress(ui, cx.dataset, cx.open, &mut cx.ui.was_running);
}

/// The text of one stage's bar.
fn stage_text(s: &StageProgress) -> (f32, String, bool) {
    match (&s.finished, s.total) {
        (Some((seconds, summary)), _) => (1.0, format!("{summary} ({seconds:.1}s)"), false),
        (None, Some(total)) if s.started && total > 0 => (
            s.done as f32 / total as f32,
            format!("{} / {total}", s.done),
            false,
        ),
        (None, _) if s.started => (
            0.0,
            if s.done > 0 {
                s.done.to_string()
            } else {
                "working…".to_owned()
            },
            true,
        ),
        _ => (0.0, "waiting".to_owned(), false),
    }
}

/// Progress by stage: open while a run works, folded away when it ends
/// (the user can open it again).
fn progress(
    ui: &mut egui::Ui,
    dataset: &Dataset,
    open: &mut MessageWriter<OpenFolder>,
    was_running: &mut bool,
) {
    let running = dataset.running();
    let done = dataset.analysis.is_some() && !running;
    let force = match (running, *was_running) {
        (true, _) => Some(true),
        (false, true) => Some(dataset.error.is_some()),
        (false, false) => None,
    };
    *was_running = running;
    egui::CollapsingHeader::new("Progress")
        .id_salt("progress")
        .default_open(true)
        .open(force)
        .show(ui, |ui| {
            for stage in Stage::ALL {
                let (fraction, text, animate) = stage_text(dataset.stage(stage));
                ui.label(stage.label());
                // The bar's own text would be cut at its edge: the full text
                // goes on a wrapped line under a thin bar.
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .animate(animate)
                        .desired_height(4.0)
                        .desired_width(ui.available_width()),
                );
                ui.add(egui::Label::new(egui::RichText::new(text).small()).wrap());
            }
            if dataset.running() && ui.button("Cancel").clicked() {
                dataset.cancel();
            }
            if done {
                ui.weak("Done.");
            }
        });
    if let Some(error) = &dataset.error {
        ui.add(egui::Label::new(egui::RichText::new(error).color(WARN)).wrap());
        if let Some(folder) = &dataset.folder
            && ui
                .add_enabled(!dataset.running(), egui::Button::new("Retry"))
                .clicked()
        {
            open.write(OpenFolder(folder.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_texts_say_how_far_a_stage_got() {
        let waiting = StageProgress::default();
        assert_eq!(stage_text(&waiting).1, "waiting");
        let counting = StageProgress {
            started: true,
            total: Some(200),
            done: 50,
            finished: None,
        };
        assert_eq!(stage_text(&counting), (0.25, "50 / 200".into(), false));
        let finished = StageProgress {
            finished: Some((1.25, "2000 images".into())),
            ..counting
        };
        assert_eq!(stage_text(&finished).1, "2000 images (1.2s)");
    }
}
