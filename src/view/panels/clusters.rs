//! Clusters: show or hide each, highlight one (the camera flies to it), a
//! few of its images.

use bevy::prelude::*;
use bevy_egui::egui;

use super::widgets::{swatch, thumb_button};
use super::{Cx, Section, section};
use crate::pipeline::Analysis;
use crate::view::colour::palette;
use crate::view::layout::Positions;

/// Sample images shown per cluster.
const SAMPLES: usize = 6;

pub(super) fn show(ui: &mut egui::Ui, cx: &mut Cx, a: &Analysis) {
    let requested = cx.ui.take_request(Section::Clusters);
    let title = format!("Clusters ({})", a.clusters.members.len());
    section(ui, Section::Clusters, title, false, requested, |ui| {
        body(ui, cx, a)
    });
}

fn body(ui: &mut egui::Ui, cx: &mut Cx, a: &Analysis) {
    let members = &a.clusters.members;
    if members.is_empty() {
        ui.weak("No clusters: too few images, or none dense enough.");
        return;
    }
    if cx.view.highlighted_cluster.is_some() && ui.button("Clear highlight").clicked() {
        cx.view.highlighted_cluster = None;
    }
    let row_height = super::widgets::THUMB + 36.0;
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt("cluster-list")
        .max_height(420.0)
        .auto_shrink([false, true])
        .show_rows(ui, row_height, members.len(), |ui, rows| {
            for id in rows {
                ui.vertical(|ui| {
                    ui.set_min_height(row_height);
                    cluster_row(ui, cx, a, id, &mut clicked);
                });
            }
        });
    if let Some(i) = clicked {
        cx.fly_to(i);
    }
}

fn cluster_row(
    ui: &mut egui::Ui,
    cx: &mut Cx,
    a: &Analysis,
    id: usize,
    clicked: &mut Option<usize>,
) {
    let members = &a.clusters.members[id];
    let id32 = id as i32;
    ui.horizontal(|ui| {
        let mut shown = !cx.view.hidden_clusters.contains(&id32);
        if ui
            .checkbox(&mut shown, "")
            .on_hover_text("show / hide")
            .changed()
        {
            if shown {
                cx.view.hidden_clusters.remove(&id32);
            } else {
                cx.view.hidden_clusters.insert(id32);
            }
        }
        swatch(ui, palette(id32));
        let highlighted = cx.view.highlighted_cluster == Some(id32);
        if ui
            .selectable_label(
                highlighted,
                format!("cluster {id} · {} images", members.len()),
            )
            .clicked()
        {
            cx.view.highlighted_cluster = Some(id32);
            if let Some((centre, radius)) = extent(members, cx.positions) {
                let distance = (radius * 3.5).max(1.0);
                cx.goal.0 = cx.orbit.fly_to(centre, distance);
                cx.goal.0.distance = distance;
            }
        }
    });
    ui.horizontal(|ui| {
        let step = (members.len() / SAMPLES).max(1);
        for &m in members.iter().step_by(step).take(SAMPLES) {
            if thumb_button(ui, &mut cx.jobs.thumbs, a, m, "").clicked() {
                *clicked = Some(m);
            }
        }
    });
}

/// Centre and RMS radius of some points, as drawn now.
fn extent(members: &[usize], positions: &Positions) -> Option<(Vec3, f32)> {
    let points: Vec<Vec3> = members
        .iter()
        .filter_map(|&m| positions.current.get(m).copied())
        .collect();
    if points.is_empty() {
        return None;
    }
    let centre = points.iter().copied().sum::<Vec3>() / points.len() as f32;
    let radius = (points
        .iter()
        .map(|p| p.distance_squared(centre))
        .sum::<f32>()
        / points.len() as f32)
        .sqrt();
    Some((centre, radius))
}
