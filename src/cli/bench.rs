//! `embedscope bench` and `bench-clip`: the library measures, this prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use embedscope::bench::{LayoutBenchOptions, layout_bench};
use embedscope::progress::CancelToken;
use embedscope::reduce::ReducerKind;

use super::args::choice;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A folder of labelled images: FOLDER/<label>/<image>.
    folder: PathBuf,
    /// Where to write embeddings, labels, layouts and bench.json.
    #[arg(long)]
    out: PathBuf,
    /// Methods to run, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = choice::<ReducerKind>(), default_value = "umap,tsne,pca")]
    methods: Vec<ReducerKind>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also measure approximate-kNN recall against the exact graph.
    #[arg(long)]
    knn_recall: bool,
    /// Also score HDBSCAN over a grid of (min_cluster_size, min_samples) on each layout.
    #[arg(long)]
    cluster_sweep: bool,
}

pub fn run(args: BenchArgs, cancel: &CancelToken) -> anyhow::Result<ExitCode> {
    let options = LayoutBenchOptions {
        folder: args.folder,
        out: args.out,
        methods: args.methods,
        seed: args.seed,
        knn_recall: args.knn_recall,
        cluster_sweep: args.cluster_sweep,
    };
    eprintln!("embedding {} …", options.folder.display());
    println!(
        "| method | seconds (kNN + layout) | 10-NN accuracy | trustworthiness (k=10) | clusters ARI |"
    );
    println!("|---|---|---|---|---|");
    let bench = layout_bench(
        &options,
        &mut |r| {
            println!(
                "| {} | {:.2} (kNN {:.2}) | {:.4} | {:.4} | {:.3} ({} clusters) |",
                r.method,
                r.seconds,
                r.knn_seconds,
                r.knn_accuracy,
                r.trustworthiness,
                r.clusters_ari,
                r.clusters
            );
            for s in &r.sweep {
                println!(
                    "    hdbscan min_cluster_size={} min_samples={}: ARI {:.3}, {} clusters, {} noise, {:.2}s",
                    s.min_cluster_size, s.min_samples, s.ari, s.clusters, s.noise, s.seconds
                );
            }
        },
        cancel,
    )?;
    eprintln!(
        "{} images, {} dims ({}), embed {:.1}s ({} from cache)",
        bench.n, bench.dim, bench.embedder, bench.embed_seconds, bench.from_cache
    );
    if let Some(r) = &bench.knn_recall {
        println!(
            "kNN k={}: exact {:.2}s, approximate {:.2}s, recall@{} {:.4}",
            r.k, r.exact_seconds, r.approximate_seconds, r.k, r.recall
        );
    }
    println!("wrote {}", options.out.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "clip")]
#[derive(Args, Debug)]
pub struct ClipBenchArgs {
    /// A CLIP model folder (`benches/clip_reference.py make DIR` writes a
    /// full-size ViT-B/32 with random weights).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Batch sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    batch: Vec<usize>,
    #[arg(long, value_parser = choice::<embedscope::embed::DeviceChoice>(), default_value = "cpu")]
    device: embedscope::embed::DeviceChoice,
    /// Time Burn's model even on the CPU (where the embedder runs embedscope's
    /// own forward pass): the reference, for comparison.
    #[arg(long)]
    burn: bool,
    /// Time each batch size for at least this long (after one warm-up pass).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

/// One JSON line per batch size, the format of `benches/clip_reference.py`.
#[cfg(feature = "clip")]
pub fn run_clip(args: ClipBenchArgs, cancel: &CancelToken) -> anyhow::Result<ExitCode> {
    let options = embedscope::bench::ClipBenchOptions {
        model: args.model,
        batches: args.batch,
        device: args.device,
        engine: if args.burn {
            embedscope::embed::clip::ImageEngine::Burn
        } else {
            embedscope::embed::clip::ImageEngine::Auto
        },
        seconds: args.seconds,
    };
    embedscope::bench::clip_bench(
        &options,
        &mut |seconds, device| {
            eprintln!(
                "loaded {} in {seconds:.2}s on {device}",
                options.model.display()
            )
        },
        &mut |r| println!("{}", serde_json::to_string(r).expect("plain data")),
        cancel,
    )?;
    Ok(ExitCode::SUCCESS)
}
