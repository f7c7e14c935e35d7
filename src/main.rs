//! The `embedscope` command line: parses arguments, calls the library, prints.
//! Each subcommand lives in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use embedscope::progress::{CancelToken, is_cancelled};

#[derive(Parser)]
#[command(
    name = "embedscope",
    version,
    about = "Turn a folder of images into a 3D map: embeddings, UMAP/t-SNE/PCA layout, clusters and duplicates.",
    long_about = "Turn a folder of images into a 3D map: embeddings, UMAP/t-SNE/PCA layout, clusters and duplicates.\n\n\
        `embedscope` alone opens the viewer's welcome screen; `embedscope FOLDER` opens the viewer on FOLDER.",
    // `embedscope analyze …` is the subcommand; any other first word is a folder.
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[cfg(feature = "viewer")]
    #[command(flatten)]
    view: cli::view::ViewArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Embed every image of FOLDER, lay them out in 3D, find clusters and duplicates.
    Analyze(cli::analyze::AnalyzeArgs),
    /// Time and score UMAP, t-SNE and PCA on a labelled folder (labels = sub-folder names).
    Bench(cli::bench::BenchArgs),
    /// Images/s of the CLIP image tower (see benches/run_clip.sh).
    #[cfg(feature = "clip")]
    BenchClip(cli::bench::ClipBenchArgs),
    /// Rank the images of FOLDER by how well they match a text (CLIP).
    #[cfg(feature = "clip")]
    Search(cli::analyze::SearchArgs),
    /// Manage CLIP weights.
    #[cfg(feature = "clip")]
    #[command(subcommand)]
    Model(cli::model::ModelCommand),
    /// Open the 3D viewer (on FOLDER, or on the welcome screen).
    #[cfg(feature = "viewer")]
    View(cli::view::ViewArgs),
    /// Add embedscope to the desktop's "Open with" menu for folders (freedesktop entry + icon).
    #[cfg(feature = "viewer")]
    InstallDesktop(cli::view::InstallDesktopArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cancel = CancelToken::new();
    {
        let cancel = cancel.clone();
        let mut presses = 0;
        let _ = ctrlc::set_handler(move || {
            presses += 1;
            if presses > 1 {
                std::process::exit(130);
            }
            eprintln!("\ncancelling after the current batch (press Ctrl-C again to quit at once)…");
            cancel.cancel();
        });
    }
    let result = match cli.command {
        Some(Command::Analyze(args)) => cli::analyze::run(args, &cancel),
        Some(Command::Bench(args)) => cli::bench::run(args, &cancel),
        #[cfg(feature = "clip")]
        Some(Command::BenchClip(args)) => cli::bench::run_clip(args, &cancel),
        #[cfg(feature = "clip")]
        Some(Command::Search(args)) => cli::analyze::run_search(args, &cancel),
        #[cfg(feature = "clip")]
        Some(Command::Model(command)) => cli::model::run(command, &cancel),
        #[cfg(feature = "viewer")]
        Some(Command::View(args)) => cli::view::run(args),
        #[cfg(feature = "viewer")]
        Some(Command::InstallDesktop(args)) => cli::view::run_install_desktop(args),
        #[cfg(feature = "viewer")]
        None => cli::view::run(cli.view),
        #[cfg(not(feature = "viewer"))]
        None => Err(anyhow::anyhow!(
            "this embedscope was built without the viewer (cargo feature `viewer`): \
             use `embedscope analyze FOLDER`, or see `embedscope --help`"
        )),
    };
    match result {
        Ok(code) => code,
        Err(err) if is_cancelled(&err) => {
            eprintln!("embedscope: cancelled; nothing was written");
            ExitCode::from(130)
        }
        Err(err) => {
            eprintln!("embedscope: {err:#}");
            ExitCode::FAILURE
        }
    }
}
