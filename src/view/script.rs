//! Hooks for scripted runs (tests, README screenshots): `--screenshot PNG`
//! saves the window once the analysis is shown and exits; `--click-point N`
//! first clicks the on-screen position of point N through the normal input
//! path (cursor move, press, release messages, read by the real picking code),
//! and `--print-selection` prints the resulting selection as JSON.

use std::path::PathBuf;

use bevy::input::ButtonState;
use bevy::input::mouse::MouseButtonInput;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::window::{CursorMoved, PrimaryWindow};

use super::ViewOptions;
use super::camera::{Orbit, OrbitGoal, ViewCamera};
use super::layout::Positions;
use super::loading::Dataset;
use super::picking::Projector;
use super::state::ViewState;
use super::thumbnails::ThumbnailsReady;

/// Frames to let a new state reach the screen (instance upload, egui layout).
const SETTLE_FRAMES: u32 = 3;
/// A scripted run that is still waiting after this long is stuck: it says so
/// and fails instead of hanging a test run (a guard, not a time limit).
const GIVE_UP_SECONDS: f64 = 900.0;
/// Camera distance from the point `--click-point` clicks.
const CLICK_DISTANCE: f32 = 0.3;

pub struct ScriptPlugin {
    screenshot: Option<PathBuf>,
    click_point: Option<usize>,
    print_selection: bool,
    zoom: Option<f32>,
}

impl From<&ViewOptions> for ScriptPlugin {
    fn from(options: &ViewOptions) -> Self {
        Self {
            screenshot: options.screenshot.clone(),
            click_point: options.click_point,
            print_selection: options.print_selection,
            zoom: options.zoom,
        }
    }
}

impl Plugin for ScriptPlugin {
    fn build(&self, app: &mut App) {
        if self.screenshot.is_none() && self.click_point.is_none() && !self.print_selection {
            return;
        }
        app.insert_resource(Script {
            screenshot: self.screenshot.clone(),
            click_point: self.click_point,
            print_selection: self.print_selection,
            zoom: self.zoom,
            step: Step::WaitForAnalysis,
        })
        .add_systems(Last, run_script);
    }
}

#[derive(Resource)]
struct Script {
    screenshot: Option<PathBuf>,
    click_point: Option<usize>,
    print_selection: bool,
    /// Scale the home distance by this once the map is shown (README shots).
    zoom: Option<f32>,
    step: Step,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    WaitForAnalysis,
    Settle(u32),
    Press(Vec2),
    Release(Vec2),
    AfterClick(u32),
    Shoot,
    WaitForCapture,
}

#[allow(clippy::too_many_arguments)]
fn run_script(
    mut commands: Commands,
    mut script: ResMut<Script>,
    dataset: Res<Dataset>,
    positions: Res<Positions>,
    thumbnails: Res<ThumbnailsReady>,
    state: Res<ViewState>,
    mut window: Single<(Entity, &mut Window), With<PrimaryWindow>>,
    mut camera: Single<(&Camera, &GlobalTransform, &Orbit, &mut OrbitGoal), With<ViewCamera>>,
    mut cursor_moves: MessageWriter<CursorMoved>,
    mut buttons: MessageWriter<MouseButtonInput>,
    mut exit: MessageWriter<AppExit>,
    time: Res<Time<Real>>,
) {
    if time.elapsed_secs_f64() > GIVE_UP_SECONDS && script.step != Step::WaitForCapture {
        eprintln!(
            "embedscope: the scripted run was still at {:?} after {GIVE_UP_SECONDS} s; giving up",
            script.step
        );
        exit.write(AppExit::error());
        script.step = Step::WaitForCapture;
        return;
    }
    let (window_entity, window) = &mut *window;
    let (cam, transform, orbit, goal) = &mut *camera;
    script.step = match script.step {
        Step::WaitForAnalysis => {
            if let Some(error) = &dataset.error {
                eprintln!("embedscope: {error}");
                exit.write(AppExit::error());
                Step::WaitForCapture
            } else if dataset.folder.is_none() {
                // The welcome screen: nothing to wait for but its layout.
                script.click_point = None;
                Step::Settle(SETTLE_FRAMES)
            } else if dataset.analysis.is_some()
                && !dataset.running()
                && positions.settled()
                && thumbnails.0
                && orbit.close_to(&goal.0)
            {
                if let Some(zoom) = script.zoom.take() {
                    goal.0.distance *= zoom;
                    Step::WaitForAnalysis
                } else {
                    Step::Settle(SETTLE_FRAMES)
                }
            } else {
                Step::WaitForAnalysis
            }
        }
        Step::Settle(n) if n > 0 => Step::Settle(n - 1),
        Step::Settle(_) => match script.click_point {
            Some(index) => {
                let Some(&point) = positions.current.get(index) else {
                    eprintln!(
                        "embedscope: --click-point {index}: there are only {} points",
                        positions.current.len()
                    );
                    exit.write(AppExit::error());
                    return;
                };
                // First bring the point close to the camera, so no other point
                // can stand in front of it (the front-most point would rightly
                // win the click); then click where the camera projects it.
                if goal.0.target != point {
                    goal.0 = orbit.fly_to(point, CLICK_DISTANCE);
                    script.step = Step::WaitForAnalysis;
                    return;
                }
                let projector = Projector::new(cam, transform, window.size());
                let Some((screen, _)) = projector.project(point) else {
                    eprintln!("embedscope: --click-point {index}: the point is behind the camera");
                    exit.write(AppExit::error());
                    return;
                };
                window.set_cursor_position(Some(screen));
                cursor_moves.write(CursorMoved {
                    window: *window_entity,
                    position: screen,
                    delta: None,
                });
                Step::Press(screen)
            }
            None => Step::Shoot,
        },
        Step::Press(at) => {
            buttons.write(MouseButtonInput {
                button: MouseButton::Left,
                state: ButtonState::Pressed,
                window: *window_entity,
            });
            Step::Release(at)
        }
        Step::Release(_) => {
            buttons.write(MouseButtonInput {
                button: MouseButton::Left,
                state: ButtonState::Released,
                window: *window_entity,
            });
            script.click_point = None;
            Step::AfterClick(SETTLE_FRAMES)
        }
        Step::AfterClick(n) if n > 0 => Step::AfterClick(n - 1),
        Step::AfterClick(_) => Step::Shoot,
        Step::Shoot => {
            if script.print_selection {
                println!("{}", selection_json(&dataset, &state));
            }
            match &script.screenshot {
                Some(path) => {
                    let path = path.clone();
                    commands.spawn(Screenshot::primary_window()).observe(
                        move |captured: On<ScreenshotCaptured>,
                              mut exit: MessageWriter<AppExit>| {
                            exit.write(save_png(&captured.image, &path));
                        },
                    );
                }
                None => {
                    exit.write(AppExit::Success);
                }
            }
            Step::WaitForCapture
        }
        Step::WaitForCapture => Step::WaitForCapture,
    };
}

fn save_png(image: &Image, path: &std::path::Path) -> AppExit {
    let saved = image
        .clone()
        .try_into_dynamic()
        .map_err(|e| e.to_string())
        .and_then(|img| {
            img.to_rgb8()
                .save_with_format(path, image::ImageFormat::Png)
                .map_err(|e| e.to_string())
        });
    match saved {
        Ok(()) => AppExit::Success,
        Err(err) => {
            eprintln!(
                "embedscope: could not save the screenshot to {}: {err}; check that its folder exists and is writable",
                path.display()
            );
            AppExit::error()
        }
    }
}

/// The selected image as one line of JSON (`null` fields when nothing is).
fn selection_json(dataset: &Dataset, state: &ViewState) -> String {
    let analysis = dataset.analysis.as_deref();
    let record = state
        .selected
        .zip(analysis)
        .and_then(|(i, a)| a.folder.images.get(i).map(|r| (i, r, a)));
    let value = match record {
        Some((i, r, a)) => serde_json::json!({
            "selected": i,
            "path": r.relative,
            "cluster": a.clusters.labels[i],
            "duplicate_group": a.duplicate_labels[i],
        }),
        None => serde_json::json!({ "selected": null }),
    };
    value.to_string()
}
