//! Scripted runs (tests, README screenshots): a list of steps run one after
//! another once the window is up, through the normal input path (cursor,
//! button, key, wheel and drop messages, read by the real camera, picking,
//! selection and panel code), then the app exits.
//!
//! `--script "STEP; STEP; ..."` (hidden) takes these steps; `x,y` are
//! fractions of the 3D view (0,0 top left, 1,1 bottom right):
//!
//! - `wait`: until the analysis is shown, laid out, coloured, with its
//!   thumbnails, the camera still, exports and tag writes done.
//! - `zoom F`: scale the camera distance by F.
//! - `click x,y`, `double-click x,y`, `click-point I` (fly close to point I,
//!   then click it), `double-click-point I` (double-click it where it is).
//! - `drag [left|right|middle] [shift|ctrl|alt]... x,y x,y ...`: press at the
//!   first position, move through the others, release.
//! - `wheel N`: N notches at the centre of the view (positive zooms in).
//! - `key K`: press and release a letter key (or `escape`).
//! - `drop PATH`: drop a file or folder onto the window.
//! - `colour-by NAME` (`colour-by column:NAME` for a metadata column),
//!   `shape lasso|box`, `show SECTION[:TAB]` (open a panel section, e.g.
//!   `show issues:outliers`).
//! - `filter-column NAME RULE`: keep bright the images whose value in
//!   metadata column NAME passes RULE: `=A,B` (these values), `LOW..HIGH`
//!   (either end may be left out) or `~TEXT` (contains it); `filter-column
//!   off` removes the filter.
//! - `tag NAME`: tag the selection; `export-selection DIR`: CSV, JSON and
//!   path list of the selection into DIR; `export-tags DIR`; `relabel TAG
//!   LABEL DIR`.
//! - `print [projections]`: one line of JSON on stdout: the focused image,
//!   the camera, the selection, the tags, the colouring and filters (and
//!   where each point is on screen, and which points are drawn bright).
//! - `screenshot PNG`.
//!
//! The older flags map onto steps: `--zoom F` → `wait; zoom F`,
//! `--click-point I` → `click-point I`, `--print-selection` → `print`,
//! `--screenshot PNG` → `screenshot PNG`, each after a `wait`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use bevy::ecs::system::SystemParam;
use bevy::input::ButtonState;
use bevy::input::keyboard::{Key, KeyboardInput};
use bevy::input::mouse::{MouseButtonInput, MouseScrollUnit, MouseWheel};
use bevy::input::touch::TouchPhase;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::window::{CursorMoved, FileDragAndDrop, PrimaryWindow};
use serde_json::json;

use super::ViewOptions;
use super::camera::{HomeView, Orbit, OrbitGoal, ViewCamera};
use super::colour::{Look, PointFacts};
use super::columns::{ColumnFilter, ColumnRule};
use super::exports::{ExportJob, Exports};
use super::layout::Positions;
use super::loading::Dataset;
use super::panels::PanelUi;
use super::picking::Projector;
use super::points::Classes;
use super::selection::{DragShape, Selection, SelectionDrag};
use super::state::{ColorBy, Duplicates, ViewState};
use super::tags::TagBook;
use super::thumbnails::ThumbnailsReady;
use crate::choice::Choice;
use crate::output::selection::{SelectionExport, TagExport};

/// Frames to let a new state reach the screen (instance upload, egui layout).
const SETTLE_FRAMES: u32 = 3;
/// A scripted run that is still waiting after this long is stuck: it says so
/// and fails instead of hanging a test run (a guard, not a time limit).
const GIVE_UP_SECONDS: f64 = 900.0;
/// Camera distance from the point `click-point` clicks.
const CLICK_DISTANCE: f32 = 0.3;

/// One step of a script.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Wait,
    Zoom(f32),
    /// Bring point I close to the camera (nothing can stand in front of it).
    FlyTo(usize),
    ClickPoint {
        index: usize,
        double: bool,
    },
    Click {
        at: Vec2,
        double: bool,
    },
    Drag {
        button: MouseButton,
        keys: Vec<KeyCode>,
        path: Vec<Vec2>,
    },
    Wheel(f32),
    Key(KeyCode),
    Drop(PathBuf),
    ColorBy(ColorBy),
    ColorByColumn(String),
    FilterColumn(Option<ColumnFilter>),
    Shape(DragShape),
    Show(String),
    Tag(String),
    ExportSelection(PathBuf),
    ExportTags(PathBuf),
    Relabel {
        tag: String,
        label: String,
        folder: PathBuf,
    },
    Print {
        projections: bool,
    },
    Screenshot(PathBuf),
}

/// Reads a script: steps separated by `;` or new lines.
pub fn parse(script: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for text in script
        .split([';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let words: Vec<&str> = text.split_whitespace().collect();
        let rest = |from: usize| words[from.min(words.len())..].join(" ");
        let arg = |k: usize| {
            words
                .get(k)
                .copied()
                .ok_or_else(|| format!("`{text}`: missing argument"))
        };
        let number = |k: usize| -> Result<f32, String> {
            arg(k)?
                .parse::<f32>()
                .map_err(|_| format!("`{text}`: {} is not a number", words[k]))
        };
        let index = |k: usize| -> Result<usize, String> {
            arg(k)?
                .parse::<usize>()
                .map_err(|_| format!("`{text}`: {} is not a point index", words[k]))
        };
        let step = match words[0] {
            "wait" => Step::Wait,
            "zoom" => Step::Zoom(number(1)?),
            "click" | "double-click" => Step::Click {
                at: position(arg(1)?)?,
                double: words[0] == "double-click",
            },
            "click-point" => {
                let i = index(1)?;
                steps.extend([Step::FlyTo(i), Step::Wait]);
                Step::ClickPoint {
                    index: i,
                    double: false,
                }
            }
            "double-click-point" => Step::ClickPoint {
                index: index(1)?,
                double: true,
            },
            "drag" => parse_drag(&words[1..]).map_err(|e| format!("`{text}`: {e}"))?,
            "wheel" => Step::Wheel(number(1)?),
            "key" => Step::Key(key_code(arg(1)?).ok_or_else(|| format!("`{text}`: unknown key"))?),
            "drop" => Step::Drop(PathBuf::from(rest(1))),
            "colour-by" | "color-by" => match arg(1)?.strip_prefix("column:") {
                Some(column) => Step::ColorByColumn(column.to_owned()),
                None => Step::ColorBy(
                    ColorBy::from_name(arg(1)?)
                        .ok_or_else(|| format!("`{text}`: unknown colouring"))?,
                ),
            },
            "filter-column" => match arg(1)? {
                "off" => Step::FilterColumn(None),
                column => Step::FilterColumn(Some(ColumnFilter {
                    column: column.to_owned(),
                    rule: ColumnRule::parse(&rest(2)).map_err(|e| format!("`{text}`: {e}"))?,
                })),
            },
            "shape" => Step::Shape(match arg(1)? {
                "lasso" => DragShape::Lasso,
                "box" => DragShape::Box,
                other => return Err(format!("`{text}`: {other} is not lasso or box")),
            }),
            "show" => Step::Show(arg(1)?.to_owned()),
            "tag" => Step::Tag(rest(1)),
            "export-selection" => Step::ExportSelection(PathBuf::from(rest(1))),
            "export-tags" => Step::ExportTags(PathBuf::from(rest(1))),
            "relabel" => Step::Relabel {
                tag: arg(1)?.to_owned(),
                label: arg(2)?.to_owned(),
                folder: PathBuf::from(rest(3)),
            },
            "print" => Step::Print {
                projections: words.get(1) == Some(&"projections"),
            },
            "screenshot" => Step::Screenshot(PathBuf::from(rest(1))),
            other => return Err(format!("unknown script step `{other}`")),
        };
        if matches!(step, Step::Drop(ref p) | Step::Screenshot(ref p) if p.as_os_str().is_empty()) {
            return Err(format!("`{text}`: missing path"));
        }
        steps.push(step);
    }
    Ok(steps)
}

fn position(text: &str) -> Result<Vec2, String> {
    let (x, y) = text
        .split_once(',')
        .ok_or_else(|| format!("{text} is not x,y"))?;
    let parse = |v: &str| v.parse::<f32>().map_err(|_| format!("{text} is not x,y"));
    Ok(Vec2::new(parse(x)?, parse(y)?))
}

fn parse_drag(words: &[&str]) -> Result<Step, String> {
    let mut button = MouseButton::Left;
    let mut keys = Vec::new();
    let mut path = Vec::new();
    for &w in words {
        match w {
            "left" => button = MouseButton::Left,
            "right" => button = MouseButton::Right,
            "middle" => button = MouseButton::Middle,
            "shift" => keys.push(KeyCode::ShiftLeft),
            "ctrl" => keys.push(KeyCode::ControlLeft),
            "alt" => keys.push(KeyCode::AltLeft),
            _ => path.push(position(w)?),
        }
    }
    if path.len() < 2 {
        return Err("a drag needs at least two positions".into());
    }
    Ok(Step::Drag { button, keys, path })
}

fn key_code(name: &str) -> Option<KeyCode> {
    if name.eq_ignore_ascii_case("escape") {
        return Some(KeyCode::Escape);
    }
    const LETTERS: [KeyCode; 26] = [
        KeyCode::KeyA,
        KeyCode::KeyB,
        KeyCode::KeyC,
        KeyCode::KeyD,
        KeyCode::KeyE,
        KeyCode::KeyF,
        KeyCode::KeyG,
        KeyCode::KeyH,
        KeyCode::KeyI,
        KeyCode::KeyJ,
        KeyCode::KeyK,
        KeyCode::KeyL,
        KeyCode::KeyM,
        KeyCode::KeyN,
        KeyCode::KeyO,
        KeyCode::KeyP,
        KeyCode::KeyQ,
        KeyCode::KeyR,
        KeyCode::KeyS,
        KeyCode::KeyT,
        KeyCode::KeyU,
        KeyCode::KeyV,
        KeyCode::KeyW,
        KeyCode::KeyX,
        KeyCode::KeyY,
        KeyCode::KeyZ,
    ];
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => {
            Some(LETTERS[(c.to_ascii_lowercase() as u8 - b'a') as usize])
        }
        _ => None,
    }
}

/// The steps the command line asks for (none: no script).
pub fn steps_of(options: &ViewOptions) -> Vec<Step> {
    let mut steps = options.script.clone();
    let mut legacy = Vec::new();
    if let Some(zoom) = options.zoom {
        legacy.extend([Step::Wait, Step::Zoom(zoom)]);
    }
    if let Some(index) = options.click_point {
        legacy.extend([
            Step::Wait,
            Step::FlyTo(index),
            Step::Wait,
            Step::ClickPoint {
                index,
                double: false,
            },
        ]);
    }
    if options.print_selection {
        legacy.extend([Step::Wait, Step::Print { projections: false }]);
    }
    if let Some(png) = &options.screenshot {
        legacy.extend([Step::Wait, Step::Screenshot(png.clone())]);
    }
    if !steps.is_empty() && !matches!(steps.first(), Some(Step::Wait)) {
        steps.insert(0, Step::Wait);
    }
    steps.extend(legacy);
    steps
}

pub struct ScriptPlugin {
    steps: Vec<Step>,
}

impl From<&ViewOptions> for ScriptPlugin {
    fn from(options: &ViewOptions) -> Self {
        Self {
            steps: steps_of(options),
        }
    }
}

impl Plugin for ScriptPlugin {
    fn build(&self, app: &mut App) {
        if self.steps.is_empty() {
            return;
        }
        app.insert_resource(Script {
            steps: self.steps.iter().cloned().collect(),
            inputs: VecDeque::new(),
            settle: 0,
            capturing: false,
            exporting: None,
            done: false,
        })
        .add_systems(Last, run_script);
    }
}

/// Low-level input sent in one frame.
#[derive(Clone, Debug)]
enum Input {
    /// Logical window pixels.
    Cursor(Vec2),
    Key(KeyCode, bool),
    Button(MouseButton, bool),
    Wheel(f32),
    Drop(PathBuf),
}

#[derive(Resource)]
pub struct Script {
    steps: VecDeque<Step>,
    /// Input still to send, one batch a frame.
    inputs: VecDeque<Vec<Input>>,
    /// Frames to wait before the next step.
    settle: u32,
    /// A screenshot is being taken; the script goes on once it is saved.
    capturing: bool,
    /// Exports of the current step still to start.
    exporting: Option<VecDeque<ExportJob>>,
    done: bool,
}

/// What a script waits for and reports on.
#[derive(SystemParam)]
struct Scene<'w, 's> {
    dataset: Res<'w, Dataset>,
    positions: Res<'w, Positions>,
    thumbnails: Res<'w, ThumbnailsReady>,
    facts: Res<'w, PointFacts>,
    duplicates: Res<'w, Duplicates>,
    classes: Res<'w, Classes>,
    selection: Res<'w, Selection>,
    home: Res<'w, HomeView>,
    camera: Single<
        'w,
        's,
        (
            &'static Camera,
            &'static GlobalTransform,
            &'static Orbit,
            &'static mut OrbitGoal,
        ),
        With<ViewCamera>,
    >,
}

/// How a script acts on the app, besides input.
#[derive(SystemParam)]
struct Acts<'w> {
    state: ResMut<'w, ViewState>,
    drag: ResMut<'w, SelectionDrag>,
    tags: ResMut<'w, TagBook>,
    exports: ResMut<'w, Exports>,
    panel: ResMut<'w, PanelUi>,
}

/// The input messages a script writes.
#[derive(SystemParam)]
struct Writers<'w, 's> {
    window: Single<'w, 's, (Entity, &'static mut Window), With<PrimaryWindow>>,
    cursor: MessageWriter<'w, CursorMoved>,
    buttons: MessageWriter<'w, MouseButtonInput>,
    keys: MessageWriter<'w, KeyboardInput>,
    wheel: MessageWriter<'w, MouseWheel>,
    drops: MessageWriter<'w, FileDragAndDrop>,
}

impl Writers<'_, '_> {
    fn send(&mut self, input: Input) {
        let (window, w) = &mut *self.window;
        let window = *window;
        match input {
            Input::Cursor(position) => {
                w.set_cursor_position(Some(position));
                self.cursor.write(CursorMoved {
                    window,
                    position,
                    delta: None,
                });
            }
            Input::Key(key_code, pressed) => {
                let logical_key = match key_code {
                    KeyCode::ShiftLeft => Key::Shift,
                    KeyCode::ControlLeft => Key::Control,
                    KeyCode::AltLeft => Key::Alt,
                    KeyCode::Escape => Key::Escape,
                    other => Key::Character(
                        format!("{other:?}")
                            .trim_start_matches("Key")
                            .to_lowercase()
                            .into(),
                    ),
                };
                self.keys.write(KeyboardInput {
                    key_code,
                    logical_key,
                    state: state_of(pressed),
                    text: None,
                    repeat: false,
                    window,
                });
            }
            Input::Button(button, pressed) => {
                self.buttons.write(MouseButtonInput {
                    button,
                    state: state_of(pressed),
                    window,
                });
            }
            Input::Wheel(notches) => {
                self.wheel.write(MouseWheel {
                    unit: MouseScrollUnit::Line,
                    x: 0.0,
                    y: notches,
                    window,
                    phase: TouchPhase::Moved,
                });
            }
            Input::Drop(path_buf) => {
                self.drops
                    .write(FileDragAndDrop::DroppedFile { window, path_buf });
            }
        }
    }
}

fn state_of(pressed: bool) -> ButtonState {
    if pressed {
        ButtonState::Pressed
    } else {
        ButtonState::Released
    }
}

fn run_script(
    mut commands: Commands,
    mut script: ResMut<Script>,
    mut scene: Scene,
    mut acts: Acts,
    mut writers: Writers,
    mut exit: MessageWriter<AppExit>,
    time: Res<Time<Real>>,
) {
    if script.done {
        return;
    }
    if time.elapsed_secs_f64() > GIVE_UP_SECONDS {
        let message = format!(
            "the scripted run was still at {:?} after {GIVE_UP_SECONDS} s; giving up",
            script.steps.front()
        );
        fail(&mut script, &mut exit, message);
        return;
    }
    if let Some(batch) = script.inputs.pop_front() {
        for input in batch {
            writers.send(input);
        }
        if script.inputs.is_empty() {
            script.settle = SETTLE_FRAMES;
        }
        return;
    }
    if script.capturing {
        return;
    }
    if script.settle > 0 {
        script.settle -= 1;
        return;
    }
    let Some(step) = script.steps.front().cloned() else {
        script.done = true;
        exit.write(AppExit::Success);
        return;
    };
    match run_step(&step, &mut script, &mut scene, &mut acts, &writers) {
        Ok(true) => {
            script.steps.pop_front();
            if let Step::Screenshot(path) = step {
                script.capturing = true;
                commands.spawn(Screenshot::primary_window()).observe(
                    move |captured: On<ScreenshotCaptured>,
                          mut script: ResMut<Script>,
                          mut exit: MessageWriter<AppExit>| {
                        script.capturing = false;
                        if let Err(err) = save_png(&captured.image, &path) {
                            fail(&mut script, &mut exit, err);
                        }
                    },
                );
            }
        }
        Ok(false) => {}
        Err(err) => fail(&mut script, &mut exit, err),
    }
}

fn fail(script: &mut Script, exit: &mut MessageWriter<AppExit>, message: String) {
    eprintln!("embedscope: {message}");
    script.done = true;
    exit.write(AppExit::error());
}

/// Runs `step`; true when it is done, false to try again next frame.
fn run_step(
    step: &Step,
    script: &mut Script,
    scene: &mut Scene,
    acts: &mut Acts,
    writers: &Writers,
) -> Result<bool, String> {
    let window = &writers.window.1;
    let projector = {
        let (camera, transform, _, _) = &*scene.camera;
        Projector::new(camera, transform, window.size())
    };
    let in_view = |at: Vec2| projector.viewport.min + at * projector.viewport.size();
    match step {
        Step::Wait => {
            if let Some(error) = &scene.dataset.error {
                return Err(error.clone());
            }
            let ready = if scene.dataset.folder.is_none() {
                true // the welcome screen: nothing to wait for but its layout
            } else {
                scene.dataset.analysis.is_some()
                    && !scene.dataset.running()
                    && scene.positions.settled()
                    && scene.thumbnails.0
                    && !scene.facts.computing()
                    && scene.camera.2.close_to(&scene.camera.3.0)
                    && !acts.exports.busy()
                    && acts.tags.saved()
                    && (acts.tags.ready() || acts.tags.file.is_none())
            };
            if ready {
                script.settle = SETTLE_FRAMES;
            }
            Ok(ready)
        }
        Step::Zoom(factor) => {
            scene.camera.3.0.distance *= factor;
            Ok(true)
        }
        Step::FlyTo(index) => {
            let point = point(&scene.positions, *index)?;
            let (_, _, orbit, goal) = &mut *scene.camera;
            goal.0 = orbit.fly_to(point, CLICK_DISTANCE);
            Ok(true)
        }
        Step::ClickPoint { index, double } => {
            let point = point(&scene.positions, *index)?;
            let (screen, _) = projector
                .project(point)
                .ok_or_else(|| format!("point {index} is behind the camera"))?;
            script.inputs.extend(clicks(screen, *double));
            Ok(true)
        }
        Step::Click { at, double } => {
            script.inputs.extend(clicks(in_view(*at), *double));
            Ok(true)
        }
        Step::Drag { button, keys, path } => {
            let first = in_view(path[0]);
            let mut start = vec![Input::Cursor(first)];
            start.extend(keys.iter().map(|&k| Input::Key(k, true)));
            script.inputs.push_back(start);
            script.inputs.push_back(vec![Input::Button(*button, true)]);
            for &at in &path[1..] {
                script.inputs.push_back(vec![Input::Cursor(in_view(at))]);
            }
            script.inputs.push_back(vec![Input::Button(*button, false)]);
            script
                .inputs
                .push_back(keys.iter().map(|&k| Input::Key(k, false)).collect());
            Ok(true)
        }
        Step::Wheel(notches) => {
            script
                .inputs
                .push_back(vec![Input::Cursor(in_view(Vec2::splat(0.5)))]);
            script.inputs.push_back(vec![Input::Wheel(*notches)]);
            Ok(true)
        }
        Step::Key(key) => {
            script.inputs.push_back(vec![Input::Key(*key, true)]);
            script.inputs.push_back(vec![Input::Key(*key, false)]);
            Ok(true)
        }
        Step::Drop(path) => {
            script.inputs.push_back(vec![Input::Drop(path.clone())]);
            Ok(true)
        }
        // Colours and filters change the panel's text too: settle, so that a
        // screenshot right after shows the new glyphs rasterised.
        Step::ColorBy(colour) => {
            acts.state.color_by = *colour;
            script.settle = SETTLE_FRAMES;
            Ok(true)
        }
        Step::ColorByColumn(column) => {
            acts.state.color_by = ColorBy::Column;
            acts.state.color_column = Some(column.clone());
            script.settle = SETTLE_FRAMES;
            Ok(true)
        }
        Step::FilterColumn(filter) => {
            acts.state.column_filter = filter.clone();
            script.settle = SETTLE_FRAMES;
            Ok(true)
        }
        Step::Shape(shape) => {
            acts.drag.shape = *shape;
            Ok(true)
        }
        Step::Show(section) => {
            acts.panel.show(section)?;
            script.settle = SETTLE_FRAMES;
            Ok(true)
        }
        Step::Tag(name) => {
            let a = analysis(&scene.dataset)?;
            acts.tags
                .tag(name, &a, scene.selection.indices())
                .map_err(|e| format!("{e:#}"))?;
            Ok(true)
        }
        Step::ExportSelection(folder) => {
            let indices = scene.selection.indices().to_vec();
            export(script, acts, &scene.dataset, folder, || {
                SelectionExport::ALL
                    .iter()
                    .map(|&kind| ExportJob::Selection(kind, indices.clone()))
                    .collect()
            })
        }
        Step::ExportTags(folder) => {
            let tags = acts.tags.tags().clone();
            export(script, acts, &scene.dataset, folder, || {
                vec![ExportJob::Tags(TagExport::Csv, tags)]
            })
        }
        Step::Relabel { tag, label, folder } => {
            let kind = TagExport::Relabel {
                tag: tag.clone(),
                label: label.clone(),
            };
            let tags = acts.tags.tags().clone();
            export(script, acts, &scene.dataset, folder, || {
                vec![ExportJob::Tags(kind, tags)]
            })
        }
        Step::Print { projections } => {
            println!(
                "{}",
                state_json(
                    scene,
                    &acts.state,
                    &acts.drag,
                    &acts.tags,
                    &projector,
                    *projections
                )
            );
            Ok(true)
        }
        Step::Screenshot(_) => Ok(true),
    }
}

/// A click (or two) at `screen`: the cursor moves there first; each click's
/// press and release arrive in one frame, so a double-click takes two
/// frames whatever the frame time.
fn clicks(screen: Vec2, double: bool) -> Vec<Vec<Input>> {
    let click = vec![
        Input::Button(MouseButton::Left, true),
        Input::Button(MouseButton::Left, false),
    ];
    let mut inputs = vec![vec![Input::Cursor(screen)], click.clone()];
    if double {
        inputs.push(click);
    }
    inputs
}

fn point(positions: &Positions, index: usize) -> Result<Vec3, String> {
    positions.current.get(index).copied().ok_or_else(|| {
        format!(
            "point {index}: there are only {} points",
            positions.current.len()
        )
    })
}

fn analysis(dataset: &Dataset) -> Result<Arc<crate::pipeline::Analysis>, String> {
    dataset
        .analysis
        .clone()
        .ok_or_else(|| "no analysis is shown".to_owned())
}

/// Runs export jobs into `folder` one after another, a frame apart; done
/// when all are written, an error when one fails.
fn export(
    script: &mut Script,
    acts: &mut Acts,
    dataset: &Dataset,
    folder: &std::path::Path,
    jobs: impl FnOnce() -> Vec<ExportJob>,
) -> Result<bool, String> {
    let a = analysis(dataset)?;
    if acts.exports.busy() {
        return Ok(false);
    }
    let queue = match script.exporting.as_mut() {
        Some(queue) => {
            if let Some(Err(err)) = &acts.exports.last {
                script.exporting = None;
                return Err(format!("export failed: {err}"));
            }
            queue
        }
        None => {
            acts.exports.folder_text = folder.display().to_string();
            script.exporting.insert(jobs().into())
        }
    };
    match queue.pop_front() {
        Some(job) => {
            acts.exports.start(a, job);
            Ok(false)
        }
        None => {
            script.exporting = None;
            Ok(true)
        }
    }
}

fn orbit_json(orbit: &Orbit) -> serde_json::Value {
    json!({
        "target": orbit.target.to_array(),
        "yaw": orbit.yaw,
        "pitch": orbit.pitch,
        "distance": orbit.distance,
    })
}

/// The state a test checks, as one line of JSON.
fn state_json(
    scene: &Scene,
    state: &ViewState,
    drag: &SelectionDrag,
    tags: &TagBook,
    projector: &Projector,
    projections: bool,
) -> String {
    let dataset = &scene.dataset;
    let analysis = dataset.analysis.as_deref();
    let orbit = scene.camera.2;
    let focused = state
        .selected
        .zip(analysis)
        .and_then(|(i, a)| a.folder.images.get(i).map(|r| (i, r, a)));
    let mut value = match focused {
        Some((i, r, a)) => json!({
            "selected": i,
            "path": r.relative,
            "cluster": a.clusters.labels[i],
            "duplicate_group": a.duplicate_labels[i],
            "selected_position": scene.positions.current.get(i).map(|p| p.to_array()),
        }),
        None => json!({ "selected": null }),
    };
    let viewport = projector.viewport;
    let extra = json!({
        "folder": dataset.folder,
        "points": scene.positions.current.len(),
        "generation": dataset.generation,
        "camera": orbit_json(orbit),
        "home": orbit_json(&scene.home.0),
        "viewport": [viewport.min.x, viewport.min.y, viewport.max.x, viewport.max.y],
        "selection": scene.selection.indices(),
        "last_outline": drag.last_outline().map(|o| o.iter().map(|p| p.to_array()).collect::<Vec<_>>()),
        "tags": tags.names(),
        "tags_file": tags.file,
        "colour_by": state.color_by.name(),
        "colour_column": state.color_column,
        "column_filter": state.column_filter.as_ref().map(|f| format!("{} {:?}", f.column, f.rule)),
    });
    let object = value.as_object_mut().expect("an object");
    object.extend(extra.as_object().expect("an object").clone());
    if projections {
        let hidden = |i: usize| {
            analysis
                .and_then(|a| a.clusters.labels.get(i))
                .is_some_and(|c| state.hidden_clusters.contains(c))
        };
        let points: Vec<serde_json::Value> = scene
            .positions
            .current
            .iter()
            .enumerate()
            .map(|(i, p)| match projector.project(*p) {
                Some((s, _)) if !hidden(i) => json!([s.x, s.y]),
                _ => serde_json::Value::Null,
            })
            .collect();
        object.insert("projections".into(), points.into());
        // What each point is drawn as: its colour, and whether it is bright.
        let n = scene.positions.current.len();
        let look = Look::of_shown(
            state,
            &scene.dataset,
            &scene.duplicates,
            &scene.classes,
            scene.facts.for_count(n),
            n,
        );
        let bright = look.bright_points(n);
        let colours: Vec<[f32; 3]> = (0..n)
            .map(|i| {
                let [r, g, b, _] = look.of(i).1;
                [r, g, b]
            })
            .collect();
        object.insert("bright".into(), json!(bright));
        object.insert("colours".into(), json!(colours));
    }
    value.to_string()
}

fn save_png(image: &Image, path: &std::path::Path) -> Result<(), String> {
    image
        .clone()
        .try_into_dynamic()
        .map_err(|e| e.to_string())
        .and_then(|img| {
            img.to_rgb8()
                .save_with_format(path, image::ImageFormat::Png)
                .map_err(|e| e.to_string())
        })
        .map_err(|err| {
            format!(
                "could not save the screenshot to {}: {err}; check that its folder exists and is writable",
                path.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse_into_steps() {
        let steps = parse(
            "wait; drag left ctrl 0.1,0.2 0.5,0.2 0.3,0.6\n wheel -2; key R; \
             double-click 0.5,0.5; print projections; show issues:outliers; tag really 7",
        )
        .unwrap();
        assert_eq!(steps[0], Step::Wait);
        assert_eq!(
            steps[1],
            Step::Drag {
                button: MouseButton::Left,
                keys: vec![KeyCode::ControlLeft],
                path: vec![
                    Vec2::new(0.1, 0.2),
                    Vec2::new(0.5, 0.2),
                    Vec2::new(0.3, 0.6)
                ],
            }
        );
        assert_eq!(steps[2], Step::Wheel(-2.0));
        assert_eq!(steps[3], Step::Key(KeyCode::KeyR));
        assert_eq!(
            steps[4],
            Step::Click {
                at: Vec2::splat(0.5),
                double: true
            }
        );
        assert_eq!(steps[5], Step::Print { projections: true });
        assert_eq!(steps[6], Step::Show("issues:outliers".into()));
        assert_eq!(steps[7], Step::Tag("really 7".into()));
        // click-point flies there first.
        assert_eq!(
            parse("click-point 4").unwrap(),
            [
                Step::FlyTo(4),
                Step::Wait,
                Step::ClickPoint {
                    index: 4,
                    double: false
                }
            ]
        );
        for bad in [
            "jump",
            "drag 0.1,0.1",
            "wheel x",
            "click 1",
            "key F1",
            "drop",
            "shape star",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_old_flags_become_steps_after_a_wait() {
        let options = ViewOptions {
            click_point: Some(3),
            print_selection: true,
            screenshot: Some("a.png".into()),
            ..default()
        };
        let steps = steps_of(&options);
        assert_eq!(steps.first(), Some(&Step::Wait));
        assert!(steps.contains(&Step::Print { projections: false }));
        assert_eq!(steps.last(), Some(&Step::Screenshot("a.png".into())));
        assert!(steps_of(&ViewOptions::default()).is_empty());
    }
}
