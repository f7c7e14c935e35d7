//! `embedscope [FOLDER]`, `embedscope view` and `install-desktop`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use embedscope::pipeline::AnalyzeOptions;
use embedscope::reduce::ReducerKind;
use embedscope::view;

use super::args::{EmbeddingArgs, SourceArgs, choice};

#[derive(Args)]
pub struct ViewArgs {
    /// The dataset: a folder of images, a Parquet file or folder of parts,
    /// clip-retrieval's output folder, or a `.npy` (read only: nothing is
    /// ever written into it).
    #[arg(value_name = "SOURCE")]
    folder: Option<PathBuf>,
    #[command(flatten)]
    embedding: EmbeddingArgs,
    #[command(flatten)]
    source: SourceArgs,
    /// How vectors become a 3D layout.
    #[arg(long, value_parser = choice::<ReducerKind>(), default_value = "umap")]
    reducer: ReducerKind,
    /// Make no thumbnails (none made or stored): points only.
    #[arg(long)]
    no_thumbnails: bool,
    /// What the points' colours show.
    #[arg(long, value_parser = choice::<view::state::ColorBy>(), default_value = "cluster")]
    color_by: view::state::ColorBy,
    /// Colour points by this metadata column of a Parquet source (categories
    /// get a colour each, numbers a colour map).
    #[arg(long, value_name = "NAME")]
    color_column: Option<String>,
    /// Script hook: scale the camera distance once the map is shown.
    #[arg(long, value_name = "F", hide = true)]
    zoom: Option<f32>,
    /// Save a PNG of the window once the map is shown, then exit.
    #[arg(long, value_name = "PNG")]
    screenshot: Option<PathBuf>,
    /// Test hook: click the on-screen position of this point once the map is shown.
    #[arg(long, value_name = "INDEX", hide = true)]
    click_point: Option<usize>,
    /// Test hook: print the selection as JSON before exiting.
    #[arg(long, hide = true)]
    print_selection: bool,
    /// Script hook: steps of scripted input and checks, `;`-separated (see
    /// src/view/script.rs), e.g. "drag left ctrl 0.2,0.2 0.8,0.2 0.5,0.8; print".
    #[arg(long, value_name = "STEPS", hide = true, value_parser = parse_script)]
    script: Option<ScriptSteps>,
    /// Benchmark: show N synthetic points (no folder) and print frame times.
    #[arg(long, value_name = "N", conflicts_with = "folder")]
    bench_points: Option<usize>,
    /// Benchmark: frames to time.
    #[arg(long, default_value_t = 30, requires = "bench_points")]
    bench_frames: usize,
    /// Benchmark: without thumbnail billboards.
    #[arg(long, requires = "bench_points")]
    bench_no_thumbnails: bool,
}

pub fn run(args: ViewArgs) -> anyhow::Result<ExitCode> {
    let (embedder, clip) = args.embedding.resolve()?;
    let mut analyze = AnalyzeOptions {
        embedder,
        clip,
        reducer: args.reducer,
        ..AnalyzeOptions::default()
    };
    args.source.apply(&mut analyze);
    let options = view::ViewOptions {
        folder: args.folder,
        analyze,
        screenshot: args.screenshot,
        click_point: args.click_point,
        print_selection: args.print_selection,
        no_thumbnails: args.no_thumbnails,
        zoom: args.zoom,
        color_by: args.color_by,
        color_column: args.color_column,
        bench: args.bench_points.map(|points| view::bench::BenchOptions {
            points,
            frames: args.bench_frames,
            thumbnails: !args.bench_no_thumbnails,
        }),
        script: args.script.map(|s| s.0).unwrap_or_default(),
    };
    view::run(options)
}

/// The steps of `--script` (a newtype, so clap takes one value, not many).
#[derive(Clone)]
struct ScriptSteps(Vec<view::script::Step>);

fn parse_script(text: &str) -> Result<ScriptSteps, String> {
    view::script::parse(text).map(ScriptSteps)
}

#[derive(Args)]
pub struct InstallDesktopArgs {
    /// Data folder to install into [default: $XDG_DATA_HOME, else ~/.local/share].
    #[arg(long, value_name = "DIR")]
    data_home: Option<PathBuf>,
}

pub fn run_install_desktop(args: InstallDesktopArgs) -> anyhow::Result<ExitCode> {
    let data_home = match args.data_home {
        Some(dir) => dir,
        None => view::welcome::default_data_home()?,
    };
    let exe = std::env::current_exe()?;
    let written = view::welcome::install_desktop_entry(&data_home, &exe)?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    println!(
        "embedscope is now in the \"Open with\" menu of folders (log out and in if it does not show yet)"
    );
    Ok(ExitCode::SUCCESS)
}
