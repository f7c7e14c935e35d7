//! `embedscope bench`: times UMAP, t-SNE and PCA on a labelled folder (label =
//! first sub-folder name, as in `mnist-10k/<digit>/`) and scores each layout.
//! It writes the data and layouts in the format `benches/reference.py` reads, so
//! umap-learn and scikit-learn run on exactly the same vectors in the same run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::analyze::{ClusterParams, find_clusters};
use crate::choice::Choice;
use crate::metrics::{adjusted_rand_index, knn_accuracy, trustworthiness};
use crate::neighbours::{self, KnnMethod};
use crate::output::{write_atomically, write_npy_f32};
use crate::pipeline::{AnalyzeOptions, embed_folder};
use crate::progress::{CancelToken, NoProgress};
use crate::reduce::{self, ReducerKind};

/// What `embedscope bench` measures.
#[derive(Clone, Debug)]
pub struct LayoutBenchOptions {
    /// A folder of labelled images: FOLDER/<label>/<image>.
    pub folder: PathBuf,
    /// Where to write embeddings, labels, layouts and bench.json.
    pub out: PathBuf,
    pub methods: Vec<ReducerKind>,
    pub seed: u64,
    /// Also measure approximate-kNN recall against the exact graph.
    pub knn_recall: bool,
    /// Also score HDBSCAN over a grid of (min_cluster_size, min_samples).
    pub cluster_sweep: bool,
}

/// One method's time and scores.
#[derive(Clone, Debug, Serialize)]
pub struct MethodResult {
    pub method: &'static str,
    /// kNN + layout.
    pub seconds: f64,
    pub knn_seconds: f64,
    pub knn_accuracy: f64,
    pub trustworthiness: f64,
    pub clusters: usize,
    pub clusters_ari: f64,
    /// HDBSCAN over a parameter grid, when asked.
    pub sweep: Vec<SweepResult>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepResult {
    pub min_cluster_size: usize,
    pub min_samples: usize,
    pub ari: f64,
    pub clusters: usize,
    pub noise: usize,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct KnnRecall {
    pub k: usize,
    pub exact_seconds: f64,
    pub approximate_seconds: f64,
    pub recall: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayoutBench {
    pub n: usize,
    pub dim: usize,
    pub embedder: String,
    pub threads: usize,
    pub embed_seconds: f64,
    pub from_cache: usize,
    pub results: Vec<MethodResult>,
    pub knn_recall: Option<KnnRecall>,
}

/// Embeds the folder, then times and scores each method; `on_result` sees
/// each method's figures as soon as they exist. Writes `embeddings.npy`,
/// `labels.txt`, `layout_<method>.npy` and `bench.json` into `options.out`.
pub fn layout_bench(
    options: &LayoutBenchOptions,
    on_result: &mut dyn FnMut(&MethodResult),
    cancel: &CancelToken,
) -> anyhow::Result<LayoutBench> {
    crate::output::check_output_dir(&options.out, &options.folder)?;
    std::fs::create_dir_all(&options.out)?;
    let analyze = AnalyzeOptions {
        seed: options.seed,
        ..AnalyzeOptions::default()
    };
    let folder = embed_folder(&options.folder, &analyze, &NoProgress, cancel)?;
    let e = &folder.embeddings;
    let labels: Vec<String> = folder
        .images
        .iter()
        .map(|r| r.relative.split('/').next().unwrap_or("").to_owned())
        .collect();
    write_atomically(&options.out.join("embeddings.npy"), |w| {
        write_npy_f32(w, e.n, e.dim, &e.data)
    })?;
    write_atomically(&options.out.join("labels.txt"), |w| {
        Ok(w.write_all((labels.join("\n") + "\n").as_bytes())?)
    })?;

    let mut results = Vec::new();
    for &method in &options.methods {
        cancel.check()?;
        let started = Instant::now();
        let k = analyze.reduce.neighbours_needed(method).max(1);
        let knn = neighbours::build(e, k, KnnMethod::Auto, options.seed, &NoProgress, cancel)?;
        let knn_seconds = started.elapsed().as_secs_f64();
        let layout = reduce::reduce(
            method,
            e,
            &knn,
            &analyze.reduce,
            options.seed,
            &NoProgress,
            cancel,
        )?;
        let seconds = started.elapsed().as_secs_f64();
        let clusters = find_clusters(&layout.points, &ClusterParams::default(), cancel)?;
        let result = MethodResult {
            method: method.name(),
            seconds,
            knn_seconds,
            knn_accuracy: knn_accuracy(&layout.points, &labels, 10),
            trustworthiness: trustworthiness(e, &layout.points, 10),
            clusters: clusters.members.len(),
            clusters_ari: adjusted_rand_index(&clusters.labels, &labels),
            sweep: if options.cluster_sweep {
                cluster_sweep(&layout.points, &labels, cancel)
            } else {
                Vec::new()
            },
        };
        save_layout(&options.out, method, &layout.points)?;
        on_result(&result);
        results.push(result);
    }

    let knn_recall = if options.knn_recall {
        let k = 15;
        let t0 = Instant::now();
        let exact = neighbours::build(e, k, KnnMethod::Exact, options.seed, &NoProgress, cancel)?;
        let exact_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let approx = neighbours::build(
            e,
            k,
            KnnMethod::Approximate,
            options.seed,
            &NoProgress,
            cancel,
        )?;
        Some(KnnRecall {
            k,
            exact_seconds,
            approximate_seconds: t1.elapsed().as_secs_f64(),
            recall: neighbours::recall(&exact, &approx),
        })
    } else {
        None
    };

    let bench = LayoutBench {
        n: e.n,
        dim: e.dim,
        embedder: folder.embedder_id.clone(),
        threads: rayon::current_num_threads(),
        embed_seconds: folder.timings["embed"],
        from_cache: folder.cache.hits,
        results,
        knn_recall,
    };
    write_atomically(&options.out.join("bench.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, &bench)?;
        Ok(())
    })?;
    Ok(bench)
}

/// The adjusted Rand index of HDBSCAN clusters for a grid of parameters.
fn cluster_sweep(points: &[[f32; 3]], labels: &[String], cancel: &CancelToken) -> Vec<SweepResult> {
    let mut out = Vec::new();
    for min_cluster_size in [10, 20, 50, 100] {
        for min_samples in [1, 3, 5, 10] {
            let params = ClusterParams {
                min_cluster_size: Some(min_cluster_size),
                min_samples: Some(min_samples),
            };
            let t = Instant::now();
            if let Ok(c) = find_clusters(points, &params, cancel) {
                out.push(SweepResult {
                    min_cluster_size,
                    min_samples,
                    ari: adjusted_rand_index(&c.labels, labels),
                    clusters: c.members.len(),
                    noise: c.noise(),
                    seconds: t.elapsed().as_secs_f64(),
                });
            }
        }
    }
    out
}

fn save_layout(dir: &Path, method: ReducerKind, points: &[[f32; 3]]) -> anyhow::Result<()> {
    let flat: Vec<f32> = points.iter().flatten().copied().collect();
    write_atomically(&dir.join(format!("layout_{}.npy", method.name())), |w| {
        write_npy_f32(w, points.len(), 3, &flat)
    })
}

/// What `embedscope bench-clip` measures.
#[cfg(feature = "clip")]
#[derive(Clone, Debug)]
pub struct ClipBenchOptions {
    /// A CLIP model folder (`benches/clip_reference.py make DIR` writes a
    /// full-size ViT-B/32 with random weights).
    pub model: PathBuf,
    pub batches: Vec<usize>,
    pub device: crate::embed::DeviceChoice,
    /// `Auto`: the forward pass the embedder uses (embedscope's own on the
    /// CPU); `Burn`: Burn's model, the reference it replaced.
    pub engine: crate::embed::clip::ImageEngine,
    /// Time each batch size for at least this long (after one warm-up pass).
    pub seconds: f64,
}

/// Images/s of the CLIP image tower at one batch size (the fields of
/// `benches/clip_reference.py`'s JSON lines).
#[cfg(feature = "clip")]
#[derive(Clone, Debug, Serialize)]
pub struct ClipBenchResult {
    pub tool: String,
    pub batch: usize,
    pub threads: usize,
    pub images: usize,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// The CLIP image tower alone, on random pixels; `on_result` sees each batch
/// size's figures as they are measured.
#[cfg(feature = "clip")]
pub fn clip_bench(
    options: &ClipBenchOptions,
    on_loaded: &mut dyn FnMut(f64, &str),
    on_result: &mut dyn FnMut(&ClipBenchResult),
    cancel: &CancelToken,
) -> anyhow::Result<Vec<ClipBenchResult>> {
    use crate::embed::clip::{ComputeDevice, ImageTower, ModelDir};
    let dir = ModelDir::open(&options.model)?;
    let device = ComputeDevice::select(options.device)?;
    let started = Instant::now();
    let tower = ImageTower::load(&dir, &device, options.engine)?;
    on_loaded(started.elapsed().as_secs_f64(), tower.description());
    let size = dir.preprocess.crop_size as usize;
    let mut rng = crate::rng::Rng::new(7);
    let mut results = Vec::new();
    for &batch in &options.batches {
        anyhow::ensure!(batch >= 1, "batch sizes must be at least 1");
        let inputs: Vec<Vec<f32>> = (0..batch)
            .map(|_| (0..3 * size * size).map(|_| rng.normal_f32()).collect())
            .collect();
        tower.features(&inputs, size)?; // warm-up
        let (mut runs, mut images) = (0, 0);
        let start = Instant::now();
        while runs < 2 || start.elapsed().as_secs_f64() < options.seconds {
            cancel.check()?;
            let out = tower.features(&inputs, size)?;
            anyhow::ensure!(out.len() == batch, "the model returned {} rows", out.len());
            runs += 1;
            images += batch;
        }
        let seconds = start.elapsed().as_secs_f64();
        let result = ClipBenchResult {
            tool: format!("embedscope ({})", tower.description()),
            batch,
            threads: rayon::current_num_threads(),
            images,
            seconds: (seconds * 1000.0).round() / 1000.0,
            images_per_s: ((images as f64 / seconds) * 100.0).round() / 100.0,
        };
        on_result(&result);
        results.push(result);
    }
    Ok(results)
}
