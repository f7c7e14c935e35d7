//! `embedscope analyze` and `embedscope search`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use embedscope::analyze::ClusterParams;
use embedscope::neighbours::KnnMethod;
use embedscope::pipeline::{AnalyzeOptions, CacheMode};
use embedscope::progress::{CancelToken, Stage};
use embedscope::reduce::ReducerKind;
use embedscope::{Analysis, output};

use super::args::{EmbeddingArgs, SourceArgs, choice};
use super::bars::Bars;

#[derive(Args)]
pub struct AnalyzeArgs {
    /// The dataset: a folder of images, a Parquet file or folder of parts,
    /// clip-retrieval's output folder, or a `.npy` (read only: nothing is
    /// ever written into it).
    #[arg(value_name = "SOURCE")]
    folder: PathBuf,
    #[command(flatten)]
    embedding: EmbeddingArgs,
    #[command(flatten)]
    source: SourceArgs,
    /// Also write the embeddings into points.parquet (`embedding` column).
    #[arg(long)]
    parquet_embeddings: bool,
    /// How vectors become a 3D layout.
    #[arg(long, value_parser = choice::<ReducerKind>(), default_value = "umap")]
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
    #[arg(long, value_parser = choice::<KnnMethod>(), default_value = "auto")]
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
    /// Smallest cluster [default: 0.2% of the images, at least 1% of them
    /// between 5 and 20].
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

impl AnalyzeArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(t) = self.dup_threshold {
            anyhow::ensure!(
                (-1.0..=1.0).contains(&t),
                "--dup-threshold is a cosine similarity: give a value between -1 and 1 (e.g. 0.97)"
            );
        }
        anyhow::ensure!(self.neighbors >= 2, "--neighbors must be at least 2");
        anyhow::ensure!(
            self.min_dist >= 0.0 && self.min_dist <= 1.0,
            "--min-dist must be between 0 and 1 (UMAP's spread is 1)"
        );
        anyhow::ensure!(self.perplexity >= 1.0, "--perplexity must be at least 1");
        if let Some(m) = self.min_cluster_size {
            anyhow::ensure!(m >= 2, "--min-cluster-size must be at least 2");
        }
        Ok(())
    }

    fn options(&self) -> anyhow::Result<AnalyzeOptions> {
        let (embedder, clip) = self.embedding.resolve()?;
        let mut options = AnalyzeOptions {
            embedder,
            clip,
            reducer: self.reducer,
            knn: self.knn,
            duplicate_threshold: self.dup_threshold,
            clusters: ClusterParams {
                min_cluster_size: self.min_cluster_size,
                min_samples: None,
            },
            seed: self.seed,
            cache: if self.no_cache {
                CacheMode::Off
            } else if let Some(path) = &self.cache {
                CacheMode::At(path.clone())
            } else {
                CacheMode::Default
            },
            ..AnalyzeOptions::default()
        };
        self.source.apply(&mut options);
        options.reduce.umap.n_neighbors = self.neighbors;
        options.reduce.umap.min_dist = self.min_dist;
        options.reduce.tsne.perplexity = self.perplexity;
        Ok(options)
    }
}

pub fn run(args: AnalyzeArgs, cancel: &CancelToken) -> anyhow::Result<ExitCode> {
    args.validate()?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None => output::default_output_dir(&args.folder)?,
    };
    // Refuse a bad --out before spending time on the analysis.
    if args.folder.is_dir() {
        output::check_output_dir(&out, &args.folder)?;
    }
    let options = args.options()?;
    let bars = Bars::new(args.quiet);
    let analysis = embedscope::analyze(&args.folder, &options, &bars, cancel)?;
    bars.clear();
    let written = output::OutputOptions {
        embeddings_in_parquet: args.parquet_embeddings,
    };
    output::write_outputs_with(&analysis, &out, &written)?;
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

fn print_summary(analysis: &Analysis, out: &Path) {
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
    let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
    for s in &f.skipped {
        *reasons.entry(s.reason.kind()).or_default() += 1;
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

#[cfg(feature = "clip")]
#[derive(Args)]
pub struct SearchArgs {
    /// The dataset folder (read only).
    folder: PathBuf,
    /// What to look for, e.g. "a photo of a cat".
    query: String,
    /// How many images to list.
    #[arg(short, default_value_t = 20)]
    k: usize,
    #[command(flatten)]
    clip: super::args::ClipArgs,
    /// Do not draw progress bars.
    #[arg(long, short)]
    quiet: bool,
}

#[cfg(feature = "clip")]
pub fn run_search(args: SearchArgs, cancel: &CancelToken) -> anyhow::Result<ExitCode> {
    use embedscope::embed::EmbedderKind;
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
