//! The viewer: a Bevy window that runs the library pipeline in the background
//! and shows its result as an orbitable 3D point cloud with egui panels.
//!
//! One plugin per concern, in the order the data flows:
//! [`loading`] (background pipeline + progress) → [`layout`] (positions shown,
//! animated from the PCA preview to the final layout) → [`colour`] (what
//! each point's colour shows, per-image facts) → [`points`] (instanced
//! splats) and [`thumbnails`] (billboards) → [`camera`] (orbit) → [`picking`]
//! (hover, click) and [`selection`] (box and lasso) → [`tags`] (named
//! selections, kept in the results folder) and [`exports`] → [`panels`]
//! (egui) → [`welcome`] (no folder yet, drag-and-drop) → [`script`] (the
//! scripted input the tests and README screenshots drive). Background work
//! goes through [`tasks`]; [`redraw`] decides when the window draws. The
//! viewer reads pipeline results and never computes them.

pub mod bench;
pub mod camera;
pub mod colour;
pub mod columns;
pub mod exports;
pub mod layout;
pub mod loading;
pub mod overlay;
pub mod panels;
pub mod picking;
pub mod points;
pub mod redraw;
pub mod script;
pub mod selection;
pub mod spatial;
pub mod state;
pub mod tags;
pub mod tasks;
pub mod thumbnails;
pub mod welcome;

use std::path::PathBuf;
use std::process::ExitCode;

use bevy::log::LogPlugin;
use bevy::prelude::*;
use bevy::render::RenderPlugin;
use bevy::render::settings::{Backends, RenderCreation, WgpuSettings};
use bevy::window::WindowResolution;

use crate::pipeline::AnalyzeOptions;

/// What the command line asked the viewer to do.
#[derive(Clone, Debug, Default)]
pub struct ViewOptions {
    /// Open this folder at once; `None`: the welcome screen.
    pub folder: Option<PathBuf>,
    pub analyze: AnalyzeOptions,
    /// Save a PNG once the layout and thumbnails are ready, then exit.
    pub screenshot: Option<PathBuf>,
    /// Test hook: click the projected position of this point once ready.
    pub click_point: Option<usize>,
    /// Test hook: print the selection as JSON on stdout before exiting.
    pub print_selection: bool,
    /// Script hook: scale the camera distance by this once the map is shown.
    pub zoom: Option<f32>,
    /// Start colouring points by this.
    pub color_by: state::ColorBy,
    /// Start colouring points by this metadata column (a Parquet source's).
    pub color_column: Option<String>,
    /// Make no thumbnails (none made or stored): points only.
    pub no_thumbnails: bool,
    /// Show a synthetic map instead of a folder and print frame times.
    pub bench: Option<bench::BenchOptions>,
    /// Scripted input and checks (`--script`, see [`script`]).
    pub script: Vec<script::Step>,
}

/// What the terminal shows unless `RUST_LOG` says otherwise: the app's own
/// messages, and only warnings from the libraries (Bevy, wgpu, UMAP, …).
/// `RUST_LOG` directives are added on top (e.g. `RUST_LOG=info`).
const LOG_FILTER: &str = "embedscope=info,wgpu=error,naga=warn";

/// Opens the window and runs until it is closed (or the script exits it).
pub fn run(mut options: ViewOptions) -> anyhow::Result<ExitCode> {
    // The billboards and the panel show thumbnails made while decoding.
    if !options.no_thumbnails {
        options.analyze.thumbnail_size = Some(thumbnails::THUMBNAIL_SIZE);
    }
    if let Some(folder) = options.folder.take() {
        anyhow::ensure!(
            folder.exists(),
            "{} does not exist: give the folder that holds your images",
            folder.display()
        );
        options.folder = Some(loading::source_of(&folder));
    }
    // Vulkan/Metal/DX12 first: the GL backend panics choosing a present mode
    // under Xvfb (bevyengine/bevy#24756). WGPU_BACKEND still overrides.
    let backends = Some(Backends::from_env().unwrap_or(Backends::PRIMARY));
    let scripted = !script::steps_of(&options).is_empty() || options.bench.is_some();
    let mut app = App::new();
    app.add_plugins(
        DefaultPlugins
            .set(WindowPlugin {
                primary_window: Some(Window {
                    title: window_title(options.folder.as_deref()),
                    resolution: WindowResolution::new(1280, 800),
                    ..default()
                }),
                ..default()
            })
            .set(LogPlugin {
                level: bevy::log::Level::WARN,
                filter: LOG_FILTER.into(),
                ..default()
            })
            .set(RenderPlugin {
                render_creation: RenderCreation::Automatic(Box::new(WgpuSettings {
                    backends,
                    ..default()
                })),
                // A scripted run must not shoot before the splat pipeline is
                // compiled; interactive runs compile in the background.
                synchronous_pipeline_compilation: scripted,
                ..default()
            }),
    )
    .insert_resource(ClearColor(Color::srgb(0.07, 0.075, 0.09)))
    .add_plugins(bevy_egui::EguiPlugin::default())
    // The panel gets its own camera (see camera.rs), not the 3D one.
    .insert_resource(bevy_egui::EguiGlobalSettings {
        auto_create_primary_context: false,
        ..default()
    })
    .add_plugins((
        state::StatePlugin {
            color_by: options.color_by,
            color_column: options.color_column.clone(),
        },
        loading::LoadingPlugin {
            folder: options.folder.clone(),
            options: options.analyze.clone(),
        },
        layout::LayoutPlugin,
        colour::ColourPlugin,
        points::PointsPlugin,
        thumbnails::ThumbnailsPlugin,
        camera::CameraPlugin,
        picking::PickingPlugin,
        selection::SelectionPlugin,
        tags::TagsPlugin,
        exports::ExportsPlugin,
        panels::PanelsPlugin,
        welcome::WelcomePlugin,
    ))
    // Draw on input and while something moves; every frame when scripted.
    .add_plugins(redraw::RedrawPlugin {
        continuous: scripted,
    })
    .add_plugins(script::ScriptPlugin::from(&options));
    if let Some(bench) = options.bench {
        app.add_plugins(bench::BenchPlugin(bench));
    }
    let exit = app.run();
    Ok(match exit {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(code) => ExitCode::from(code.get()),
    })
}

pub(crate) fn window_title(folder: Option<&std::path::Path>) -> String {
    match folder {
        Some(folder) => format!("embedscope — {}", folder.display()),
        None => "embedscope".to_owned(),
    }
}
