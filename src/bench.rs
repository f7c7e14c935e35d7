//! `embedscope bench`: times UMAP, t-SNE and PCA on a labelled folder (label =
//! first sub-folder name, as in `mnist-10k/<digit>/`) and scores each layout.
//! It writes the data and layouts in the format `benches/reference.py` reads, so
//! umap-learn and scikit-learn run on exactly the same vectors in the same run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;

use crate::analyze::{ClusterParams, find_clusters};
use crate::neighbours::{self, KnnMethod};
use crate::output::{write_atomically, write_npy_f32};
use crate::pipeline::{AnalyzeOptions, embed_folder};
use crate::progress::{CancelToken, NoProgress};
use crate::quality::{adjusted_rand_index, knn_accuracy, trustworthiness};
use crate::reduce::{self, ReducerKind};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A folder of labelled images: FOLDER/<label>/<image>.
    pub folder: PathBuf,
    /// Where to write embeddings, labels, layouts and bench.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Methods to run, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "umap,tsne,pca")]
    pub methods: Vec<ReducerKind>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also measure approximate-kNN recall against the exact graph.
    #[arg(long)]
    pub knn_recall: bool,
    /// Also score HDBSCAN over a grid of (min_cluster_size, min_samples) on each
    /// layout and on the embeddings themselves.
    #[arg(long)]
    pub cluster_sweep: bool,
}

pub fn run(args: &BenchArgs, cancel: &CancelToken) -> anyhow::Result<ExitCode> {
    crate::output::check_output_dir(&args.out, &args.folder)?;
    std::fs::create_dir_all(&args.out)?;
    let options = AnalyzeOptions {
        seed: args.seed,
        ..AnalyzeOptions::default()
    };
    eprintln!("embedding {} …", args.folder.display());
    let folder = embed_folder(&args.folder, &options, &NoProgress, cancel)?;
    let e = &folder.embeddings;
    let labels: Vec<String> = folder
        .images
        .iter()
        .map(|r| r.relative.split('/').next().unwrap_or("").to_owned())
        .collect();
    eprintln!(
        "{} images, {} dims ({}), embed {:.1}s ({} from cache)",
        e.n, e.dim, folder.embedder_id, folder.timings["embed"], folder.cache.hits
    );
    write_atomically(&args.out.join("embeddings.npy"), |w| {
        write_npy_f32(w, e.n, e.dim, &e.data)
    })?;
    std::fs::write(args.out.join("labels.txt"), labels.join("\n") + "\n")?;

    let threads = rayon::current_num_threads();
    let mut results = Vec::new();
    println!(
        "| method | seconds (kNN + layout) | 10-NN accuracy | trustworthiness (k=10) | clusters ARI |"
    );
    println!("|---|---|---|---|---|");
    for &method in &args.methods {
        cancel.check()?;
        let started = Instant::now();
        let k = options.reduce.neighbours_needed(method).max(1);
        let knn = neighbours::build(e, k, KnnMethod::Auto, args.seed, &NoProgress, cancel)?;
        let knn_seconds = started.elapsed().as_secs_f64();
        let layout = reduce::reduce(
            method,
            e,
            &knn,
            &options.reduce,
            args.seed,
            &NoProgress,
            cancel,
        )?;
        let seconds = started.elapsed().as_secs_f64();
        let accuracy = knn_accuracy(&layout.points, &labels, 10);
        let trust = trustworthiness(e, &layout.points, 10);
        let clusters = find_clusters(&layout.points, &ClusterParams::default())?;
        let ari = adjusted_rand_index(&clusters.labels, &labels);
        println!(
            "| {} | {seconds:.2} (kNN {knn_seconds:.2}) | {accuracy:.4} | {trust:.4} | {ari:.3} ({} clusters) |",
            method.name(),
            clusters.members.len()
        );
        save_layout(&args.out, method, &layout.points)?;
        if args.cluster_sweep {
            cluster_sweep(&layout.points, &labels);
        }
        results.push(json!({
            "method": method.name(),
            "seconds": seconds,
            "knn_seconds": knn_seconds,
            "knn_accuracy": accuracy,
            "trustworthiness": trust,
            "clusters": clusters.members.len(),
            "clusters_ari": ari,
        }));
    }

    if args.cluster_sweep {
        // The alternative to clustering the layout: HDBSCAN on the embeddings.
        let rows: Vec<Vec<f32>> = e.rows().map(|r| r.to_vec()).collect();
        let t = Instant::now();
        let hyper = hdbscan::HdbscanHyperParams::builder()
            .min_cluster_size(ClusterParams::default().resolved_min_cluster_size(e.n))
            .build();
        if let Ok(raw) = hdbscan::Hdbscan::new(&rows, hyper).cluster() {
            let clusters = raw
                .iter()
                .filter(|l| **l >= 0)
                .collect::<std::collections::HashSet<_>>()
                .len();
            println!(
                "hdbscan on the {}-D embeddings: ARI {:.3}, {clusters} clusters, {} noise, {:.1}s",
                e.dim,
                adjusted_rand_index(&raw, &labels),
                raw.iter().filter(|l| **l < 0).count(),
                t.elapsed().as_secs_f64()
            );
        }
    }

    let mut recall = serde_json::Value::Null;
    if args.knn_recall {
        let k = 15;
        let t0 = Instant::now();
        let exact = neighbours::build(e, k, KnnMethod::Exact, args.seed, &NoProgress, cancel)?;
        let exact_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let approx =
            neighbours::build(e, k, KnnMethod::Approximate, args.seed, &NoProgress, cancel)?;
        let approx_seconds = t1.elapsed().as_secs_f64();
        let r = neighbours::recall(&exact, &approx);
        println!(
            "kNN k={k}: exact {exact_seconds:.2}s, HNSW {approx_seconds:.2}s, recall@{k} {r:.4}"
        );
        recall = json!({"k": k, "exact_seconds": exact_seconds, "approximate_seconds": approx_seconds, "recall": r});
    }

    let report = json!({
        "n": e.n,
        "dim": e.dim,
        "embedder": folder.embedder_id,
        "threads": threads,
        "results": results,
        "knn_recall": recall,
    });
    write_atomically(&args.out.join("bench.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, &report)?;
        Ok(())
    })?;
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Prints the adjusted Rand index of HDBSCAN clusters for a grid of parameters.
fn cluster_sweep(points: &[[f32; 3]], labels: &[String]) {
    for min_cluster_size in [10, 20, 50, 100] {
        for min_samples in [1, 3, 5, 10] {
            let params = ClusterParams {
                min_cluster_size: Some(min_cluster_size),
                min_samples: Some(min_samples),
            };
            let t = Instant::now();
            if let Ok(c) = find_clusters(points, &params) {
                println!(
                    "    hdbscan min_cluster_size={min_cluster_size} min_samples={min_samples}: ARI {:.3}, {} clusters, {} noise, {:.2}s",
                    adjusted_rand_index(&c.labels, labels),
                    c.members.len(),
                    c.noise(),
                    t.elapsed().as_secs_f64()
                );
            }
        }
    }
}

fn save_layout(dir: &Path, method: ReducerKind, points: &[[f32; 3]]) -> anyhow::Result<()> {
    let flat: Vec<f32> = points.iter().flatten().copied().collect();
    write_atomically(&dir.join(format!("layout_{}.npy", method.name())), |w| {
        write_npy_f32(w, points.len(), 3, &flat)
    })
}

#[derive(clap::Args, Debug)]
pub struct ClipBenchArgs {
    /// A CLIP model folder (`benches/clip_reference.py make DIR` writes a
    /// full-size ViT-B/32 with random weights).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Batch sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub batch: Vec<usize>,
    #[arg(long, value_enum, default_value_t = crate::embed::DeviceChoice::Cpu)]
    pub device: crate::embed::DeviceChoice,
    /// Time each batch size for at least this long (after one warm-up pass).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
}

/// `embedscope bench-clip`: images/s of the CLIP image tower alone, on random
/// pixels, one JSON line per batch size (the same format as
/// `benches/clip_reference.py`).
pub fn run_clip(args: &ClipBenchArgs, cancel: &CancelToken) -> anyhow::Result<ExitCode> {
    use crate::embed::clip::{ComputeDevice, ModelDir, image_features};
    let dir = ModelDir::open(&args.model)?;
    let device = ComputeDevice::select(args.device)?;
    let started = Instant::now();
    let model = dir.load_vision(&device.device)?;
    eprintln!(
        "loaded {} in {:.2}s on {}",
        args.model.display(),
        started.elapsed().as_secs_f64(),
        device.description
    );
    let size = dir.preprocess.crop_size as usize;
    let mut rng = crate::rng::Rng::new(7);
    for &batch in &args.batch {
        anyhow::ensure!(batch >= 1, "batch sizes must be at least 1");
        let inputs: Vec<Vec<f32>> = (0..batch)
            .map(|_| (0..3 * size * size).map(|_| rng.normal_f32()).collect())
            .collect();
        image_features(&model, &device.device, size, &inputs); // warm-up
        let (mut runs, mut images) = (0, 0);
        let start = Instant::now();
        while runs < 2 || start.elapsed().as_secs_f64() < args.seconds {
            cancel.check()?;
            let out = image_features(&model, &device.device, size, &inputs);
            anyhow::ensure!(out.len() == batch, "the model returned {} rows", out.len());
            runs += 1;
            images += batch;
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({
                "tool": format!("embedscope (Burn 0.22, {})", device.description),
                "batch": batch,
                "threads": rayon::current_num_threads(),
                "images": images,
                "seconds": (seconds * 1000.0).round() / 1000.0,
                "images_per_s": ((images as f64 / seconds) * 100.0).round() / 100.0,
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}
