//! When the window draws. A desktop app, not a game: once nothing moves it
//! waits for input instead of drawing flat out. A map of 2,000 points left
//! alone on a software renderer (lavapipe) used 1.7 cores doing nothing; on
//! a laptop that is its battery, and on two cores it is the CPU that text
//! search and thumbnail loading need.
//!
//! Frames come when:
//! - there is input (winit wakes the loop; egui asks for its own repaints);
//! - something moves: the camera easing toward its goal, a layout's
//!   transition ([`keep_drawing`]);
//! - a background job ends: [`super::tasks`] wakes the loop, and one more
//!   frame follows, for results shown a frame after they arrive (styles,
//!   textures made at the end of the panel's frame);
//! - the pipeline runs: a few frames a second for its progress bars, which
//!   no job end announces ([`pace_frames`]).
//!
//! Scripted runs (tests, screenshots, benchmarks) draw continuously instead:
//! their hooks count frames.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::window::RequestRedraw;
use bevy::winit::{EventLoopProxyWrapper, UpdateMode, WinitSettings, WinitUserEvent};

use bevy_egui::egui::{self, Event};
use bevy_egui::{EguiContexts, EguiInput, EguiInputSet, EguiPreUpdateSet, EguiPrimaryContextPass};

use super::camera::{Orbit, OrbitGoal, ViewCamera};
use super::layout::Positions;
use super::loading::{Dataset, LoadingSystems};
use super::tasks;

/// Frames a second while the pipeline runs and only progress bars move
/// (input still redraws at once, so the map turns smoothly meanwhile).
const FRAMES_WHILE_RUNNING: f64 = 10.0;

/// The longest step an animation takes in a frame that follows a wait for
/// input: the wait is not time the animation should have been running, and
/// a step of the whole wait would jump the camera to its goal at once.
const STEP_AFTER_WAITING: f32 = 1.0 / 60.0;
/// The longest step otherwise (Bevy's own limit for `Time<Virtual>`): a
/// frame that took longer moves its animations no further than this.
const LONGEST_STEP: f32 = 0.25;

pub struct RedrawPlugin {
    /// Draw every frame (scripted runs) instead of waiting for input.
    pub continuous: bool,
}

impl Plugin for RedrawPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(if self.continuous {
            WinitSettings::continuous()
        } else {
            waiting_for_input()
        })
        .init_resource::<FrameStep>()
        .init_resource::<Wanted>()
        .add_systems(Startup, wake_on_job_end)
        .add_systems(First, measure_frame_step)
        .add_systems(Update, pace_frames.after(LoadingSystems))
        .add_systems(
            PreUpdate,
            drop_repeated_modifiers
                .in_set(EguiPreUpdateSet::ProcessInput)
                .after(EguiInputSet::WriteEguiEvents),
        )
        .add_systems(EguiPrimaryContextPass, steady_text_cursor)
        .add_systems(PostUpdate, keep_drawing);
    }
}

/// Draw on the window's own events (the cursor over it, keys, buttons, the
/// wheel), on a redraw request or a wake, and otherwise every 5 s while
/// focused, every minute when not. Not on device events: raw mouse motion
/// over other windows (which Bevy's `desktop_app` reacts to) is no reason to
/// draw, and nothing here reads it.
pub fn waiting_for_input() -> WinitSettings {
    WinitSettings {
        focused_mode: UpdateMode::reactive_low_power(Duration::from_secs(5)),
        unfocused_mode: UpdateMode::reactive_low_power(Duration::from_secs(60)),
    }
}

/// Seconds the animations advance this frame: the time since the last
/// frame, except after a wait for input (see [`STEP_AFTER_WAITING`]).
///
/// Measured here rather than read from `Time`: Bevy stamps a frame with the
/// time the previous one was presented, so the frame after a wait has a
/// normal delta and the one after it carries the whole wait.
#[derive(Resource, Default)]
pub struct FrameStep {
    pub seconds: f32,
    last: Option<Instant>,
}

/// What the last frame asked for, to tell a frame that follows drawing from
/// one that follows a wait.
#[derive(Resource, Default)]
struct Wanted {
    redraw: bool,
    jobs_ended: u64,
}

/// Lets background jobs wake the event loop (none without a window: the
/// headless tests).
fn wake_on_job_end(proxy: Option<Res<EventLoopProxyWrapper>>) {
    let Some(proxy) = proxy else {
        return;
    };
    let proxy = (**proxy).clone();
    tasks::wake_window_with(move || {
        // A closed event loop has nothing left to wake.
        let _ = proxy.send_event(WinitUserEvent::WakeUp);
    });
}

fn measure_frame_step(winit: Res<WinitSettings>, wanted: Res<Wanted>, mut step: ResMut<FrameStep>) {
    let now = Instant::now();
    let since = step.last.map_or(0.0, |last| (now - last).as_secs_f32());
    step.last = Some(now);
    let waited = winit.focused_mode != UpdateMode::Continuous && !wanted.redraw;
    step.seconds = since.min(if waited {
        STEP_AFTER_WAITING
    } else {
        LONGEST_STEP
    });
}

/// While the pipeline runs, draw a few frames a second: its progress reaches
/// the panel through a mutex, which wakes nothing. Only a few, scripted runs
/// included: on a software renderer every frame costs CPU the pipeline
/// needs (reopening 100,000 cached images beside a window drawing flat out
/// took 18 s on two cores, against 6.5 s from the command line).
fn pace_frames(
    dataset: Res<Dataset>,
    mut winit: ResMut<WinitSettings>,
    mut usual: Local<Option<WinitSettings>>,
) {
    let usual = usual.get_or_insert_with(|| winit.clone());
    let paced = UpdateMode::reactive(Duration::from_secs_f64(1.0 / FRAMES_WHILE_RUNNING));
    let wanted = if dataset.running() {
        WinitSettings {
            focused_mode: paced,
            unfocused_mode: paced,
        }
    } else {
        usual.clone()
    };
    if winit.focused_mode != wanted.focused_mode || winit.unfocused_mode != wanted.unfocused_mode {
        *winit = wanted;
    }
}

/// bevy_egui (0.42) tells egui the keyboard modifiers every frame, changed
/// or not, and egui answers any input event by asking for another frame: the
/// window would never stop drawing. egui keeps the modifiers it was last
/// told (until the window's focus changes, when it forgets them), so an
/// unchanged one can go.
fn drop_repeated_modifiers(
    mut inputs: Query<(Entity, &mut EguiInput)>,
    mut told: Local<HashMap<Entity, egui::Modifiers>>,
) {
    for (context, mut input) in &mut inputs {
        let mut last = told.get(&context).copied();
        input.0.events.retain(|event| match event {
            Event::WindowFocused(_) => {
                last = None;
                true
            }
            Event::ModifiersChanged(now) if last == Some(*now) => false,
            Event::ModifiersChanged(now) => {
                last = Some(*now);
                true
            }
            _ => true,
        });
        match last {
            Some(last) => told.insert(context, last),
            None => told.remove(&context),
        };
    }
}

/// A text cursor that does not blink. A blinking one asks egui for a frame
/// every half second, and bevy_egui (0.42) draws any repaint asked for
/// later at once: with the cursor in a text field the window drew flat out
/// (1.75 cores on lavapipe) instead of waiting.
fn steady_text_cursor(mut contexts: EguiContexts, mut done: Local<bool>) -> Result {
    if !*done {
        contexts
            .ctx_mut()?
            .all_styles_mut(|style| style.visuals.text_cursor.blink = false);
        *done = true;
    }
    Ok(())
}

/// Asks for the next frame while something moves, and for one frame after
/// a background job ended.
fn keep_drawing(
    positions: Res<Positions>,
    camera: Option<Single<(&Orbit, &OrbitGoal), With<ViewCamera>>>,
    mut wanted: ResMut<Wanted>,
    mut redraw: MessageWriter<RequestRedraw>,
) {
    let easing = camera.is_some_and(|c| *c.0 != c.1.0);
    let ended = tasks::jobs_ended();
    let job_ended = ended != wanted.jobs_ended;
    wanted.jobs_ended = ended;
    wanted.redraw = easing || !positions.settled() || job_ended;
    if wanted.redraw {
        redraw.write(RequestRedraw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .add_message::<RequestRedraw>()
            .init_resource::<Positions>()
            .init_resource::<Dataset>()
            .add_plugins(RedrawPlugin { continuous: false });
        app.update();
        app
    }

    /// Redraw requests of one frame, retried until no background job (of
    /// another test running alongside) ended during it.
    fn redraws_asked(app: &mut App) -> usize {
        loop {
            let seen = app.world().resource::<Wanted>().jobs_ended;
            app.world_mut()
                .resource_mut::<Messages<RequestRedraw>>()
                .clear();
            app.update();
            if tasks::jobs_ended() == seen {
                return app.world().resource::<Messages<RequestRedraw>>().len();
            }
        }
    }

    #[test]
    fn an_idle_window_asks_for_no_frames() {
        let mut app = app();
        assert_eq!(redraws_asked(&mut app), 0);
        assert_eq!(
            app.world().resource::<WinitSettings>().focused_mode,
            waiting_for_input().focused_mode
        );
    }

    #[test]
    fn a_moving_camera_asks_for_frames_until_it_arrives() {
        let mut app = app();
        let home = Orbit::default();
        let goal = Orbit {
            distance: home.distance * 2.0,
            ..home
        };
        let camera = app
            .world_mut()
            .spawn((home, OrbitGoal(goal), ViewCamera))
            .id();
        assert_eq!(redraws_asked(&mut app), 1);
        app.world_mut().entity_mut(camera).insert(goal);
        assert_eq!(redraws_asked(&mut app), 0);
    }

    #[test]
    fn a_job_that_ends_wakes_the_window_and_gets_one_more_frame() {
        let mut app = app();
        let woken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = woken.clone();
        tasks::wake_window_with(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        let seen = app.world().resource::<Wanted>().jobs_ended;
        let mut task = tasks::Task::spawn("test", |_| Ok(()));
        let started = std::time::Instant::now();
        // The wake comes once the result is there to poll.
        while !woken.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                started.elapsed().as_secs() < 30,
                "the window was never woken"
            );
            std::thread::yield_now();
        }
        assert_eq!(task.poll(), Some(Ok(())));
        assert!(tasks::jobs_ended() > seen);
        app.world_mut()
            .resource_mut::<Messages<RequestRedraw>>()
            .clear();
        app.update();
        assert_eq!(app.world().resource::<Messages<RequestRedraw>>().len(), 1);
        assert_eq!(redraws_asked(&mut app), 0);
    }

    #[test]
    fn egui_is_told_the_modifiers_only_when_they_change() {
        let mut app = App::new();
        app.add_systems(Update, drop_repeated_modifiers);
        let context = app.world_mut().spawn(EguiInput::default()).id();
        let mut frame = |events: Vec<Event>| {
            app.world_mut()
                .get_mut::<EguiInput>(context)
                .unwrap()
                .0
                .events = events;
            app.update();
            app.world()
                .get::<EguiInput>(context)
                .unwrap()
                .0
                .events
                .clone()
        };
        let none = Event::ModifiersChanged(egui::Modifiers::NONE);
        let shift = Event::ModifiersChanged(egui::Modifiers::SHIFT);
        assert_eq!(frame(vec![none.clone()]), vec![none.clone()]);
        // Told again, unchanged: nothing for egui to react to.
        assert_eq!(frame(vec![none.clone()]), vec![]);
        assert_eq!(frame(vec![shift.clone()]), vec![shift.clone()]);
        assert_eq!(frame(vec![shift.clone(), none.clone()]), vec![none.clone()]);
        // egui forgets the modifiers when the focus changes: tell it again.
        let focus = Event::WindowFocused(true);
        assert_eq!(
            frame(vec![focus.clone(), none.clone()]),
            vec![focus, none.clone()]
        );
        assert_eq!(frame(vec![none]), vec![]);
    }
}
