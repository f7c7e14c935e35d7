//! The `embedscope` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Args, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use embedscope::analyze::ClusterParams;
use embedscope::embed::{ClipOptions, DeviceChoice, EmbedderKind};
use embedscope::neighbours::KnnMethod;
use embedscope::pipeline::{AnalyzeOptions, CacheMode};
use embedscope::progress::{CancelToken, ProgressEvent, ProgressSink, Stage, is_cancelled};
use embedscope::reduce::ReducerKind;
use embedscope::{bench, output, view};

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
    #[command(flatten)]
    view: ViewArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Embed every image of FOLDER, lay them out in 3D, find clusters and duplicates.
    Analyze(AnalyzeArgs),
    /// Time and score UMAP, t-SNE and PCA on a labelled folder (labels = sub-folder names).
    Bench(bench::BenchArgs),
    /// Images/s of the CLIP image tower (see benches/run_clip.sh).
    BenchClip(bench::ClipBenchArgs),
    /// Rank the images of FOLDER by how well they match a text (CLIP).
    Search(SearchArgs),
    /// Manage CLIP weights.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Open the 3D viewer (on FOLDER, or on the welcome screen).
    View(ViewArgs),
    /// Add embedscope to the desktop's "Open with" menu for folders (freedesktop entry + icon).
    InstallDesktop(InstallDesktopArgs),
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Download openai/clip-vit-base-patch32 from the Hugging Face Hub into the
    /// user's cache (HF_ENDPOINT selects a mirror).
    Fetch(FetchArgs),
}

#[derive(Args)]
struct FetchArgs {
    /// Where to put the model folder [default: models/clip-vit-base-patch32 in the user's cache dir].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The embedder and CLIP's knobs, shared by `analyze` and `view`.
#[derive(Args)]
struct EmbeddingArgs {
    /// How images become vectors [default: clip when its weights are installed
    /// or given with --model, else pixels].
    #[arg(long, value_enum)]
    embedder: Option<EmbedderKind>,
    #[command(flatten)]
    clip: ClipArgs,
}

impl EmbeddingArgs {
    /// The embedder to use, and CLIP's options.
    fn resolve(&self) -> anyhow::Result<(EmbedderKind, ClipOptions)> {
        let clip = self.clip.options()?;
        let kind = self
            .embedder
            .unwrap_or_else(|| EmbedderKind::default_for(&clip));
        Ok((kind, clip))
    }
}

/// CLIP's knobs, shared by `analyze`, `view` and `search`.
#[derive(Args, Clone)]
struct ClipArgs {
    /// A Hugging Face CLIP folder (config.json, model.safetensors, tokenizer.json)
    /// [default: the one `embedscope model fetch` installs].
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Where CLIP runs: a hardware GPU if there is one (auto), wgpu (gpu), or the CPU.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Images per CLIP forward pass [default: 64 on a GPU, 16 on the CPU].
    #[arg(long, value_name = "N")]
    batch: Option<usize>,
}

impl ClipArgs {
    fn options(&self) -> anyhow::Result<ClipOptions> {
        if let Some(batch) = self.batch {
            anyhow::ensure!(batch >= 1, "--batch must be at least 1");
        }
        Ok(ClipOptions {
            model: self.model.clone(),
            device: self.device,
            batch: self.batch,
        })
    }
}

#[derive(Args)]
struct SearchArgs {
    /// The dataset folder (read only).
    folder: PathBuf,
    /// What to look for, e.g. "a photo of a cat".
    query: String,
    /// How many images to list.
    #[arg(short, default_value_t = 20)]
    k: usize,
    #[command(flatten)]
    clip: ClipArgs,
    /// Do not draw progress bars.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct ViewArgs {
    /// The dataset folder (read only: nothing is ever written into it).
    folder: Option<PathBuf>,
    #[command(flatten)]
    embedding: EmbeddingArgs,
    /// How vectors become a 3D layout.
    #[arg(long, value_enum, default_value_t = ReducerKind::Umap)]
    reducer: ReducerKind,
    /// Make no thumbnails (saves 16 KB of memory per image): points only.
    #[arg(long)]
    no_thumbnails: bool,
    /// Colour the points by cluster, by folder (class) or by duplicate status.
    #[arg(long, value_enum, default_value = "cluster")]
    color_by: view::state::ColorBy,
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

#[derive(Args)]
struct InstallDesktopArgs {
    /// Data folder to install into [default: $XDG_DATA_HOME, else ~/.local/share].
    #[arg(long, value_name = "DIR")]
    data_home: Option<PathBuf>,
}

#[derive(Args)]
struct AnalyzeArgs {
    /// The dataset folder (read only: nothing is ever written into it).
    folder: PathBuf,
    #[command(flatten)]
    embedding: EmbeddingArgs,
    /// How vectors become a 3D layout.
    #[arg(long, value_enum, default_value_t = ReducerKind::Umap)]
    reducer: ReducerKind,
    /// Output folder [default: a folder in the user's cache dir, printed at the end].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Cosine similarity at or above which two images are near-duplicates
    /// [default: the embedder's measured value, 0.98 for pixels].
    #[arg(long, value_name = "F")]
    dup_threshold: Option<f32>,
    /// Seed for every random choice: the same seed gives the same layout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Nearest-neighbour search.
    #[arg(long, value_enum, default_value_t = KnnMethod::Auto)]
    knn: KnnMethod,
    /// UMAP neighbourhood size.
    #[arg(long, default_value_t = 15)]
    neighbors: usize,
    /// UMAP minimum distance between points.
    #[arg(long, default_value_t = 0.1)]
    min_dist: f32,
    /// t-SNE perplexity.
    #[arg(long, default_value_t = 30.0)]
    perplexity: f32,
    /// Smallest cluster [default: 1% of the images, between 5 and 100].
    #[arg(long)]
    min_cluster_size: Option<usize>,
    /// Embedding cache database [default: cache.sqlite in the user's cache dir].
    #[arg(long, conflicts_with = "no_cache")]
    cache: Option<PathBuf>,
    /// Do not read or write the embedding cache.
    #[arg(long)]
    no_cache: bool,
    /// Do not draw progress bars.
    #[arg(long, short)]
    quiet: bool,
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
        Some(Command::Analyze(args)) => run_analyze(args, &cancel),
        Some(Command::Bench(args)) => bench::run(&args, &cancel),
        Some(Command::BenchClip(args)) => bench::run_clip(&args, &cancel),
        Some(Command::Search(args)) => run_search(args, &cancel),
        Some(Command::Model(ModelCommand::Fetch(args))) => run_fetch(args, &cancel),
        Some(Command::View(args)) => run_view(args),
        Some(Command::InstallDesktop(args)) => run_install_desktop(args),
        None => run_view(cli.view),
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

fn run_analyze(args: AnalyzeArgs, cancel: &CancelToken) -> anyhow::Result<ExitCode> {
    validate(&args)?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None => output::default_output_dir(&args.folder)?,
    };
    // Refuse a bad --out before spending time on the analysis.
    if args.folder.is_dir() {
        output::check_output_dir(&out, &args.folder)?;
    }
    let (embedder, clip) = args.embedding.resolve()?;
    let mut options = AnalyzeOptions {
        embedder,
        clip,
        reducer: args.reducer,
        knn: args.knn,
        duplicate_threshold: args.dup_threshold,
        clusters: ClusterParams {
            min_cluster_size: args.min_cluster_size,
            min_samples: None,
        },
        seed: args.seed,
        cache: if args.no_cache {
            CacheMode::Off
        } else if let Some(path) = &args.cache {
            CacheMode::At(path.clone())
        } else {
            CacheMode::Default
        },
        ..AnalyzeOptions::default()
    };
    options.reduce.umap.n_neighbors = args.neighbors;
    options.reduce.umap.min_dist = args.min_dist;
    options.reduce.tsne.perplexity = args.perplexity;

    let bars = Bars::new(args.quiet);
    let analysis = embedscope::analyze(&args.folder, &options, &bars, cancel)?;
    bars.clear();
    output::write_outputs(&analysis, &out)?;
    print_summary(&analysis, &out);
    if analysis.folder.images.is_empty() {
        eprintln!(
            "embedscope: no images found in {} ({} files skipped, reasons in report.json)",
            args.folder.display(),
            analysis.folder.skipped.len()
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_search(args: SearchArgs, cancel: &CancelToken) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.k >= 1, "-k must be at least 1");
    let options = AnalyzeOptions {
        embedder: EmbedderKind::Clip,
        clip: args.clip.options()?,
        ..AnalyzeOptions::default()
    };
    let bars = Bars::new(args.quiet);
    let hits = embedscope::search::search_folder(
        &args.folder,
        &args.query,
        args.k,
        &options,
        &bars,
        cancel,
    )?;
    bars.clear();
    if hits.matches.is_empty() {
        eprintln!("embedscope: no images found in {}", args.folder.display());
        return Ok(ExitCode::from(2));
    }
    for hit in &hits.matches {
        println!(
            "{:.4}  {}",
            hit.score,
            args.folder.join(&hit.relative).display()
        );
    }
    if hits.query_truncated {
        eprintln!("note: the query is longer than CLIP's 77 tokens and was cut");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_fetch(args: FetchArgs, cancel: &CancelToken) -> anyhow::Result<ExitCode> {
    use embedscope::embed::clip::fetch;
    let dir = match args.dir {
        Some(dir) => dir,
        None => fetch::default_model_dir()?,
    };
    let source = fetch::ModelSource::default_clip();
    let endpoint = fetch::hub_endpoint();
    eprintln!(
        "downloading {} (revision {}) from {endpoint} into {}",
        source.repo,
        &source.revision[..12],
        dir.display()
    );
    let multi = MultiProgress::new();
    let bars: Mutex<Vec<(String, ProgressBar)>> = Mutex::new(Vec::new());
    fetch::fetch_model(
        &source,
        &endpoint,
        &dir,
        &|name, done, total| {
            let mut bars = bars.lock().unwrap();
            let bar = match bars.iter().find(|(n, _)| n == name) {
                Some((_, bar)) => bar.clone(),
                None => {
                    let bar = multi.add(ProgressBar::new(total.unwrap_or(0)));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>26} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                        )
                        .unwrap()
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(name.to_string());
                    bars.push((name.to_string(), bar.clone()));
                    bar
                }
            };
            bar.set_position(done);
            if Some(done) == total {
                bar.finish();
            }
        },
        cancel,
    )?;
    println!("CLIP weights ready in {}", dir.display());
    println!("`embedscope analyze FOLDER` now uses CLIP by default.");
    Ok(ExitCode::SUCCESS)
}

fn run_view(args: ViewArgs) -> anyhow::Result<ExitCode> {
    let (embedder, clip) = args.embedding.resolve()?;
    let options = view::ViewOptions {
        folder: args.folder,
        analyze: AnalyzeOptions {
            embedder,
            clip,
            reducer: args.reducer,
            ..AnalyzeOptions::default()
        },
        screenshot: args.screenshot,
        click_point: args.click_point,
        print_selection: args.print_selection,
        no_thumbnails: args.no_thumbnails,
        zoom: args.zoom,
        color_by: args.color_by,
        bench: args.bench_points.map(|points| view::bench::BenchOptions {
            points,
            frames: args.bench_frames,
            thumbnails: !args.bench_no_thumbnails,
        }),
    };
    view::run(options)
}

fn run_install_desktop(args: InstallDesktopArgs) -> anyhow::Result<ExitCode> {
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

fn validate(args: &AnalyzeArgs) -> anyhow::Result<()> {
    if let Some(t) = args.dup_threshold {
        anyhow::ensure!(
            (-1.0..=1.0).contains(&t),
            "--dup-threshold is a cosine similarity: give a value between -1 and 1 (e.g. 0.97)"
        );
    }
    anyhow::ensure!(args.neighbors >= 2, "--neighbors must be at least 2");
    anyhow::ensure!(
        args.min_dist >= 0.0 && args.min_dist <= 1.0,
        "--min-dist must be between 0 and 1 (UMAP's spread is 1)"
    );
    anyhow::ensure!(args.perplexity >= 1.0, "--perplexity must be at least 1");
    if let Some(m) = args.min_cluster_size {
        anyhow::ensure!(m >= 2, "--min-cluster-size must be at least 2");
    }
    Ok(())
}

fn print_summary(analysis: &embedscope::Analysis, out: &std::path::Path) {
    let f = &analysis.folder;
    println!("embedder         {}", f.embedder_description);
    println!("images read      {}", f.images.len());
    if f.cache.hits > 0 {
        println!(
            "  from cache     {} (embedded this run: {})",
            f.cache.hits, f.cache.misses
        );
    }
    println!("images skipped   {}", f.skipped.len());
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for s in &f.skipped {
        *reasons.entry(reason_kind(&s.reason)).or_default() += 1;
    }
    for (reason, count) in &reasons {
        println!("  {count:>6}  {reason}");
    }
    for w in f.warnings.iter().take(10) {
        println!("warning: {w}");
    }
    if f.warnings.len() > 10 {
        println!(
            "warning: … and {} more (see report.json)",
            f.warnings.len() - 10
        );
    }
    if let Some(note) = &analysis.layout.note {
        println!("note: {note}");
    }
    println!(
        "clusters         {} ({} images in none)",
        analysis.clusters.members.len(),
        analysis.clusters.noise()
    );
    println!(
        "duplicate groups {} ({} exact copies, cosine ≥ {})",
        analysis.duplicates.len(),
        analysis.duplicates.iter().filter(|g| g.exact).count(),
        analysis.duplicate_threshold
    );
    let times: Vec<String> = Stage::ALL
        .iter()
        .map(|s| {
            format!(
                "{} {:.2}s",
                s.key(),
                analysis.timings.get(s.key()).unwrap_or(&0.0)
            )
        })
        .collect();
    println!("time             {}", times.join(", "));
    println!("output           {}", out.display());
}

/// The first words of a skip reason, to count similar reasons together.
fn reason_kind(reason: &str) -> String {
    reason
        .split([':', '('])
        .next()
        .unwrap_or(reason)
        .trim()
        .to_owned()
}

/// One indicatif bar per stage.
struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<Vec<(Stage, ProgressBar)>>,
}

impl Bars {
    fn new(quiet: bool) -> Self {
        Self {
            multi: (!quiet).then(MultiProgress::new),
            bars: Mutex::new(Vec::new()),
        }
    }

    fn clear(&self) {
        for (_, bar) in self.bars.lock().unwrap().iter() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }

    fn bar(&self, stage: Stage, total: Option<u64>) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let mut bars = self.bars.lock().unwrap();
        if let Some((_, bar)) = bars.iter().find(|(s, _)| *s == stage) {
            // A stage can learn its size late (the layout knows its epochs only
            // once the method starts): the spinner becomes a bar.
            if let Some(total) = total {
                bar.set_length(total);
                bar.set_style(Self::bar_style());
            }
            return Some(bar.clone());
        }
        let bar = match total {
            Some(total) => multi
                .add(ProgressBar::new(total))
                .with_style(Self::bar_style()),
            None => multi.add(ProgressBar::new_spinner()).with_style(
                ProgressStyle::with_template("{prefix:>12} {spinner} {pos} {elapsed_precise}")
                    .unwrap(),
            ),
        };
        bar.set_prefix(stage.label());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bars.push((stage, bar.clone()));
        Some(bar)
    }

    fn bar_style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .unwrap()
        .progress_chars("=> ")
    }
}

impl ProgressSink for Bars {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Started { stage, total } => {
                self.bar(stage, total);
            }
            ProgressEvent::Advanced { stage, done } => {
                if let Some(bar) = self.bar(stage, None) {
                    bar.set_position(done);
                }
            }
            ProgressEvent::Finished {
                stage,
                seconds,
                summary,
            } => {
                if let Some(bar) = self.bar(stage, None) {
                    bar.set_style(ProgressStyle::with_template("{prefix:>12} {msg}").unwrap());
                    bar.finish_with_message(format!("{summary} ({seconds:.2}s)"));
                }
            }
            ProgressEvent::Warning(text) => match &self.multi {
                Some(multi) => {
                    let _ = multi.println(format!("warning: {text}"));
                }
                None => eprintln!("warning: {text}"),
            },
            ProgressEvent::LayoutPreview(_) => {}
        }
    }
}
