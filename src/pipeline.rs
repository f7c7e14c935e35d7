//! The whole pipeline, headless: folder → embeddings → neighbours → 3D layout →
//! clusters → duplicates → issues (label issues, outliers, quality flags). The
//! CLI, the tests and the viewer call [`analyze`] (or its two halves,
//! [`embed_folder`] and [`analyze_embeddings`]) with a progress sink and a
//! cancel token.
//!
//! Three caches make a second look cheap, all under [`CacheMode`]: embeddings
//! by content hash, thumbnails by content hash (for the viewer), and whole
//! analyses (neighbours, layout, clusters) by the embeddings and parameters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::Embeddings;
use crate::analyze::perceptual::{self, PerceptualEvidence, PerceptualRule};
use crate::analyze::{self, ClusterParams, Clusters, Curation, DuplicateGroup};
use crate::cache::{self, EmbeddingCache};
use crate::choice::Choice;
use crate::decode::{self, ContentHash, DecodeLimits, ImageLooks, SkipReason, Thumbnail};
use crate::embed::{self, ClipOptions, Embedder, EmbedderKind};
use crate::neighbours::{self, KnnGraph, KnnMethod};
use crate::progress::{CancelToken, NoProgress, ProgressEvent, ProgressSink, Stage};
use crate::reduce::{self, Layout, ReduceParams, ReducerKind};
use crate::scan::labels::{self, LabelSource, ResolvedLabels};
use crate::scan::{self, Skipped};
use crate::source::{self, ImageLinks, MetadataColumn, ReadOptions, SkippedRow, SourceKind};

/// Neighbours found per image whatever the layout needs: duplicates, label
/// issues and outliers read them. The curation scores were tuned with 50
/// (`analyze::outliers::NEIGHBOURS`, `analyze::labels::NEIGHBOURS`): on the
/// planted MNIST sets (benches/curation) outlier precision in the top N is
/// 0.92 / 0.86 with 50 against 0.88 / 0.86 with 30 at 10k, and 0.84 / 0.83
/// against 0.78 / 0.76 at 100k. Up to [`FEW_IMAGES`] images the extra
/// neighbours cost about a second; above, NN-descent's cost grows faster than
/// k (100k × 784: 22.5 s with 50 against 10.0 s with 30, more than the whole
/// layout), so large sets get 30.
pub fn curation_neighbours(n: usize) -> usize {
    if n <= FEW_IMAGES { 50 } else { 30 }
}

/// See [`curation_neighbours`].
pub const FEW_IMAGES: usize = 50_000;

#[derive(Clone, Debug)]
pub enum CacheMode {
    /// `cache.sqlite` in [`cache::default_cache_dir`], thumbnails and
    /// analyses beside it.
    Default,
    /// The embedding database at this path; thumbnails and analyses beside it.
    At(PathBuf),
    /// No cache: every image is embedded and every analysis computed again.
    Off,
}

impl CacheMode {
    /// The embedding database, unless off.
    pub fn embeddings(&self) -> anyhow::Result<Option<PathBuf>> {
        Ok(match self {
            CacheMode::Off => None,
            CacheMode::At(path) => Some(path.clone()),
            CacheMode::Default => Some(cache::default_cache_dir()?.join("cache.sqlite")),
        })
    }

    /// The folder the embedding database lives in: thumbnails and analyses
    /// are kept there too.
    fn folder(&self) -> anyhow::Result<Option<PathBuf>> {
        Ok(self.embeddings()?.map(|db| {
            db.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        }))
    }

    /// The thumbnail store, unless off.
    pub fn thumbnails(&self) -> anyhow::Result<Option<PathBuf>> {
        Ok(self.folder()?.map(|d| d.join("thumbnails.sqlite")))
    }

    /// The folder of finished analyses, unless off.
    pub fn analyses(&self) -> anyhow::Result<Option<PathBuf>> {
        Ok(self.folder()?.map(|d| d.join("analyses")))
    }
}

#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    pub embedder: EmbedderKind,
    pub reducer: ReducerKind,
    pub reduce: ReduceParams,
    pub knn: KnnMethod,
    /// `None`: the embedder's measured default.
    pub duplicate_threshold: Option<f32>,
    pub clusters: ClusterParams,
    pub seed: u64,
    pub cache: CacheMode,
    pub limits: DecodeLimits,
    /// Images per decode/embed batch (also the most a kill can lose).
    pub batch_size: usize,
    /// Model, device and batch size for `--embedder clip`.
    pub clip: ClipOptions,
    /// Also keep a thumbnail of at most this many pixels a side of every
    /// image in the thumbnail store (the viewer's billboards and galleries);
    /// `None` (the CLI): none.
    pub thumbnail_size: Option<u32>,
    /// Where the given labels come from (the label analyses need them).
    pub labels: LabelSource,
    /// Reuse a finished analysis of the same embeddings and parameters from
    /// the cache (and keep this one there).
    pub reuse_analysis: bool,
    /// How to read embeddings computed elsewhere (vector and path columns,
    /// where images are).
    pub external: ReadOptions,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self {
            embedder: EmbedderKind::Pixels,
            reducer: ReducerKind::Umap,
            reduce: ReduceParams::default(),
            knn: KnnMethod::Auto,
            duplicate_threshold: None,
            clusters: ClusterParams::default(),
            seed: 42,
            cache: CacheMode::Default,
            limits: DecodeLimits::default(),
            batch_size: 256,
            clip: ClipOptions::default(),
            thumbnail_size: None,
            labels: LabelSource::default(),
            reuse_analysis: true,
            external: ReadOptions::default(),
        }
    }
}

/// One image that made it into the map.
#[derive(Clone, Debug)]
pub struct ImageRecord {
    /// Path relative to the folder, `/`-separated.
    pub relative: String,
    pub hash: ContentHash,
    pub width: u32,
    pub height: u32,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheStats {
    pub path: Option<String>,
    /// Images whose embedding came from the cache.
    pub hits: usize,
    /// Images embedded in this run.
    pub misses: usize,
}

/// Seconds per stage, keyed as in `report.json`.
pub type Timings = BTreeMap<&'static str, f64>;

/// The embedded folder: the first half of the pipeline.
#[derive(Clone, Debug)]
pub struct EmbeddedFolder {
    /// The folder of the data: image paths are relative to it, and nothing is
    /// ever written inside it. For a Parquet file, the folder that holds it.
    pub root: PathBuf,
    /// What the user gave: an image folder, a Parquet file or folder,
    /// clip-retrieval output, a `.npy`.
    pub source: PathBuf,
    pub source_kind: SourceKind,
    /// For image folders: one per image file read. For embeddings read from
    /// files: one per kept row, `relative` its path (or row number) and the
    /// size 0×0 (unknown).
    pub images: Vec<ImageRecord>,
    pub embeddings: Embeddings,
    /// Per image, what it looks like (perceptual fingerprint, quality
    /// statistics), made while decoding or read from the cache. Empty for
    /// embeddings read from files: there are no images to look at.
    pub looks: Vec<Option<ImageLooks>>,
    /// The labels the images were given, or why there are none.
    pub labels: ResolvedLabels,
    /// The thumbnail store the images' thumbnails were put in, when asked for.
    pub thumbnail_store: Option<PathBuf>,
    pub embedder_id: String,
    /// Which model on which device, for people.
    pub embedder_description: String,
    pub default_duplicate_threshold: f32,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    pub hidden: usize,
    pub cache: CacheStats,
    pub timings: Timings,
    /// Scalar columns carried from a Parquet source (empty for image folders).
    pub metadata: Vec<MetadataColumn>,
    /// How embeddings read from files were found, and where their images are.
    pub external: Option<ExternalSource>,
}

/// What reading embeddings from files found (`source::read`).
#[derive(Clone, Debug)]
pub struct ExternalSource {
    pub files: Vec<PathBuf>,
    pub vector_column: String,
    pub path_column: Option<String>,
    /// Rows in the source, kept and skipped.
    pub rows_read: u64,
    /// Rows left out (NaN, zero, null vectors), with the reason.
    pub skipped_rows: Vec<SkippedRow>,
    /// Which rows' paths are image files here (their thumbnails).
    pub links: ImageLinks,
}

impl EmbeddedFolder {
    /// The image file of image `i`, when there is one on this machine.
    pub fn image_path(&self, i: usize) -> Option<PathBuf> {
        match &self.external {
            None => self.images.get(i).map(|r| self.root.join(&r.relative)),
            Some(external) => {
                if !external.links.exists.get(i).copied().unwrap_or(false) {
                    return None;
                }
                let id = Path::new(&self.images.get(i)?.relative);
                Some(match &external.links.base {
                    Some(base) if id.is_relative() => base.join(id),
                    _ => id.to_path_buf(),
                })
            }
        }
    }
}

/// Everything the pipeline found.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub folder: EmbeddedFolder,
    pub knn: KnnGraph,
    pub layout: Layout,
    pub clusters: Clusters,
    /// Per image: duplicate group id, or -1.
    pub duplicate_labels: Vec<i32>,
    pub duplicates: Vec<DuplicateGroup>,
    pub duplicate_threshold: f32,
    /// The pairs that look alike whatever the cosine (used again when the
    /// viewer regroups at another threshold), and whether hashes were used.
    pub perceptual: PerceptualEvidence,
    pub curation: Curation,
    pub options: AnalyzeOptions,
    pub timings: Timings,
    /// Neighbours, layout and clusters came from the analysis cache.
    pub reused: bool,
}

/// Runs every stage on `root`.
pub fn analyze(
    root: &Path,
    options: &AnalyzeOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<Analysis> {
    let folder = load(root, options, progress, cancel)?;
    analyze_embeddings(folder, options, progress, cancel)
}

/// The first half for any source: an image folder is scanned, decoded and
/// embedded; Parquet, clip-retrieval output and `.npy` files are read.
pub fn load(
    source: &Path,
    options: &AnalyzeOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<EmbeddedFolder> {
    match source::detect(source) {
        // A missing path, or an image file (its folder is meant): the scan
        // says what is wrong in its own words.
        SourceKind::ImageFolder | SourceKind::Unknown => {
            embed_folder(source, options, progress, cancel)
        }
        kind => load_external(source, kind, options, progress, cancel),
    }
}

/// Embeddings computed elsewhere. Rows that name image files get thumbnails
/// (when asked for), made once into the thumbnail store.
fn load_external(
    path: &Path,
    kind: SourceKind,
    options: &AnalyzeOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<EmbeddedFolder> {
    let mut timings = Timings::new();
    let started = Instant::now();
    let read = source::read(path, &options.external, progress, cancel)?;
    timings.insert(Stage::Embed.key(), started.elapsed().as_secs_f64());
    progress.event(ProgressEvent::Finished {
        stage: Stage::Embed,
        seconds: started.elapsed().as_secs_f64(),
        summary: format!(
            "{} vectors of {} read from {} ({} rows skipped)",
            read.embeddings.n,
            read.embeddings.dim,
            kind.describe(),
            read.skipped.len()
        ),
    });
    let root = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    // Rows are told apart by where their image is (so thumbnails of the same
    // file are shared between sources), else by source and id.
    let images: Vec<ImageRecord> = (0..read.embeddings.n)
        .map(|i| {
            let key = match read.image_path(i) {
                Some(file) => format!(
                    "file:{}",
                    std::fs::canonicalize(&file).unwrap_or(file).display()
                ),
                None => format!("row:{}:{}", path.display(), read.ids[i]),
            };
            ImageRecord {
                relative: read.ids[i].clone(),
                hash: ContentHash::of(key.as_bytes()),
                width: 0,
                height: 0,
            }
        })
        .collect();
    let mut warnings = read.warnings.clone();
    let thumbnail_store = match (options.thumbnail_size, options.cache.thumbnails()?) {
        (Some(size), Some(store)) if read.images.resolved > 0 => {
            match external_thumbnails(&read, &images, &store, size, options.limits, cancel) {
                Ok(()) => Some(store),
                Err(err) if crate::progress::is_cancelled(&err) => return Err(err),
                Err(err) => {
                    warnings.push(format!("thumbnails could not be made: {err:#}"));
                    None
                }
            }
        }
        _ => None,
    };
    let labels = labels::resolve_for_table(&options.labels, &read.ids, &read.metadata)?;
    warnings.extend(labels.warnings.iter().cloned());
    let embedder_id = format!(
        "external:{}:{}:{}",
        kind.describe(),
        read.vector_column,
        read.embeddings.dim
    );
    let description = format!(
        "{} embeddings from {} (column {})",
        read.embeddings.dim,
        path.display(),
        read.vector_column
    );
    Ok(EmbeddedFolder {
        root,
        source: path.to_path_buf(),
        source_kind: kind,
        images,
        embeddings: read.embeddings,
        looks: Vec::new(),
        labels,
        thumbnail_store,
        embedder_id,
        embedder_description: description,
        default_duplicate_threshold: EXTERNAL_DUPLICATE_THRESHOLD,
        skipped: Vec::new(),
        warnings,
        hidden: 0,
        cache: CacheStats::default(),
        timings,
        metadata: read.metadata,
        external: Some(ExternalSource {
            files: read.files,
            vector_column: read.vector_column,
            path_column: read.path_column,
            rows_read: read.rows_read,
            skipped_rows: read.skipped,
            links: read.images,
        }),
    })
}

/// Near-duplicate threshold for embeddings of an unknown model: stricter than
/// CLIP's customary 0.95, since nothing is known of how the space is spread
/// (`--dup-threshold` sets another).
pub const EXTERNAL_DUPLICATE_THRESHOLD: f32 = 0.98;

/// Thumbnails of the rows whose paths are image files, for those the store
/// lacks; decoded in batches on the CPU threads.
fn external_thumbnails(
    read: &source::ExternalEmbeddings,
    images: &[ImageRecord],
    store_path: &Path,
    size: u32,
    limits: DecodeLimits,
    cancel: &CancelToken,
) -> anyhow::Result<()> {
    let mut store = cache::thumbnails::ThumbnailStore::open(store_path)?;
    let linked: Vec<usize> = (0..images.len())
        .filter(|&i| read.images.exists.get(i).copied().unwrap_or(false))
        .collect();
    for chunk in linked.chunks(512) {
        cancel.check()?;
        let hashes: Vec<ContentHash> = chunk.iter().map(|&i| images[i].hash).collect();
        let present = store.present(&hashes, size)?;
        let made: Vec<(ContentHash, Thumbnail)> = chunk
            .par_iter()
            .filter(|&&i| !present.contains(&images[i].hash))
            .filter_map(|&i| {
                let file = read.image_path(i)?;
                let bytes = decode::read_file(&file, &limits).ok()?;
                let image = decode::decode(&bytes, &limits).ok()?;
                Some((images[i].hash, Thumbnail::of(&image, size)))
            })
            .collect();
        let refs: Vec<(ContentHash, &Thumbnail)> = made.iter().map(|(h, t)| (*h, t)).collect();
        store.put_many(&refs, size)?;
    }
    Ok(())
}

/// Scan, decode and embed (through the cache).
pub fn embed_folder(
    root: &Path,
    options: &AnalyzeOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<EmbeddedFolder> {
    let mut timings = Timings::new();

    let started = Instant::now();
    let scanned = scan::scan(root, progress, cancel)?;
    let seconds = started.elapsed().as_secs_f64();
    timings.insert(Stage::Scan.key(), seconds);
    progress.event(ProgressEvent::Finished {
        stage: Stage::Scan,
        seconds,
        summary: format!(
            "{} image files, {} other entries skipped",
            scanned.files.len(),
            scanned.skipped.len()
        ),
    });
    let mut warnings = scanned.warnings;
    let mut skipped = scanned.skipped;

    let started = Instant::now();
    progress.event(ProgressEvent::Started {
        stage: Stage::Embed,
        total: Some(scanned.files.len() as u64),
    });
    let sizes = sample_sizes(&scanned.files, options.limits);
    let embedder = embed::make_embedder(options.embedder, &sizes, &options.clip)?;
    let embedder_id = embedder.id();
    let warn = |w: String, warnings: &mut Vec<String>| {
        progress.event(ProgressEvent::Warning(w.clone()));
        warnings.push(w);
    };
    let mut cache = match options.cache.embeddings()? {
        None => None,
        Some(path) => match EmbeddingCache::open(&path) {
            Ok((cache, warning)) => {
                if let Some(w) = warning {
                    warn(w, &mut warnings);
                }
                Some(cache)
            }
            Err(err) => {
                warn(
                    format!("embedding cache unavailable, continuing without it: {err}"),
                    &mut warnings,
                );
                None
            }
        },
    };
    let thumbnail_size = options.thumbnail_size;
    let mut thumbnails = match (thumbnail_size, options.cache.thumbnails()?) {
        (Some(_), Some(path)) => match cache::thumbnails::ThumbnailStore::open(&path) {
            Ok(store) => Some(store),
            Err(err) => {
                warn(
                    format!("thumbnail store unavailable, the map shows dots only: {err}"),
                    &mut warnings,
                );
                None
            }
        },
        _ => None,
    };
    let mut stats = CacheStats {
        path: cache.as_ref().map(|c| c.path().display().to_string()),
        ..Default::default()
    };

    let mut cache_warnings = Vec::new();
    let mut images = Vec::with_capacity(scanned.files.len());
    let mut looks = Vec::with_capacity(scanned.files.len());
    let mut data: Vec<f32> = Vec::with_capacity(scanned.files.len() * embedder.dim());
    let mut done = 0u64;
    // Two stages in flight: while the model embeds batch k on its own thread
    // (on the GPU, or on the CPU backend's threads), this thread reads, decodes
    // and preprocesses batch k + 1.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (to_model, model_inputs) = std::sync::mpsc::sync_channel::<Vec<Vec<f32>>>(1);
        let (model_outputs, from_model) =
            std::sync::mpsc::sync_channel::<anyhow::Result<Vec<Vec<f32>>>>(1);
        let model: &dyn Embedder = embedder.as_ref();
        scope.spawn(move || {
            for inputs in model_inputs {
                // The receiver is gone when the loop below stopped early.
                if model_outputs.send(model.embed_batch(inputs)).is_err() {
                    break;
                }
            }
        });
        let mut in_flight: Option<(&[scan::ScannedFile], PreparedBatch)> = None;
        let receive = || -> anyhow::Result<Vec<Vec<f32>>> {
            from_model
                .recv()
                .map_err(|_| anyhow::anyhow!("the embedding thread stopped"))?
        };
        let mut collect = |files: &[scan::ScannedFile], outcome: Vec<BatchResult>| {
            for (file, result) in files.iter().zip(outcome) {
                match result {
                    Ok((record, vector, image_looks)) => {
                        images.push(ImageRecord {
                            relative: file.relative.clone(),
                            ..record
                        });
                        data.extend_from_slice(&vector);
                        looks.push(Some(image_looks));
                    }
                    Err(reason) => skipped.push(Skipped {
                        path: file.relative.clone(),
                        reason,
                    }),
                }
            }
            done += files.len() as u64;
            progress.event(ProgressEvent::Advanced {
                stage: Stage::Embed,
                done,
            });
        };
        let all = batches(
            &scanned.files,
            options.batch_size,
            options.limits.max_file_bytes,
        );
        for files in all.into_iter().map(Some).chain([None]) {
            // `None` marks the end: only the batch in flight is left.
            let next = match files {
                Some(files) => {
                    cancel.check()?;
                    let mut prepared = prepare_batch(
                        files,
                        embedder.as_ref(),
                        &embedder_id,
                        cache.as_ref(),
                        options.limits,
                        thumbnails.as_ref().zip(thumbnail_size),
                    )?;
                    if let (Some(store), Some(size)) = (thumbnails.as_mut(), thumbnail_size) {
                        let made: Vec<(ContentHash, &Thumbnail)> =
                            prepared.thumbnails.iter().map(|(h, t)| (*h, t)).collect();
                        if let Err(err) = store.put_many(&made, size) {
                            let w = format!("{err}; thumbnails are not kept for this run");
                            progress.event(ProgressEvent::Warning(w.clone()));
                            cache_warnings.push(w);
                            thumbnails = None;
                        }
                        prepared.thumbnails.clear();
                    }
                    if let Some(store) = cache.as_mut() {
                        let made: Vec<(ContentHash, &ImageLooks)> =
                            prepared.new_looks.iter().map(|(h, l)| (*h, l)).collect();
                        if let Err(err) = store.put_looks(&made) {
                            let w = format!("{err}; this run's remaining vectors are not cached");
                            progress.event(ProgressEvent::Warning(w.clone()));
                            cache_warnings.push(w);
                            store.stop_writing();
                        }
                        prepared.new_looks.clear();
                    }
                    to_model
                        .send(std::mem::take(&mut prepared.inputs))
                        .map_err(|_| anyhow::anyhow!("the embedding thread stopped"))?;
                    Some((files, prepared))
                }
                None => None,
            };
            if let Some((files, prepared)) = in_flight.take() {
                let vectors = receive()?;
                let (outcome, fresh) = finish_batch(prepared, vectors, &mut stats)?;
                if let Some(store) = cache.as_mut()
                    && let Err(err) = store.put_many(&embedder_id, &fresh)
                {
                    // The vectors are in hand: losing the cache only costs a
                    // later run the embedding time.
                    let w = format!("{err}; this run's remaining vectors are not cached");
                    progress.event(ProgressEvent::Warning(w.clone()));
                    cache_warnings.push(w);
                    store.stop_writing();
                }
                collect(files, outcome);
            }
            in_flight = next;
        }
        Ok(())
    })?;
    warnings.extend(cache_warnings);
    let seconds = started.elapsed().as_secs_f64();
    timings.insert(Stage::Embed.key(), seconds);
    progress.event(ProgressEvent::Finished {
        stage: Stage::Embed,
        seconds,
        summary: format!(
            "{} images ready ({} from the cache), {} skipped",
            images.len(),
            stats.hits,
            skipped.len()
        ),
    });
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let n = images.len();
    let relative: Vec<&str> = images.iter().map(|r| r.relative.as_str()).collect();
    let labels = labels::resolve(&options.labels, &relative)?;
    for w in &labels.warnings {
        warn(w.clone(), &mut warnings);
    }
    Ok(EmbeddedFolder {
        root: root.to_path_buf(),
        source: root.to_path_buf(),
        source_kind: SourceKind::ImageFolder,
        metadata: Vec::new(),
        external: None,
        embeddings: Embeddings::new(n, embedder.dim(), data),
        looks,
        labels,
        thumbnail_store: thumbnails.map(|t| t.path().to_path_buf()),
        images,
        embedder_id,
        embedder_description: embedder.description(),
        default_duplicate_threshold: embedder.default_duplicate_threshold(),
        skipped,
        warnings,
        hidden: scanned.hidden,
        cache: stats,
        timings,
    })
}

/// Neighbours, layout, clusters, duplicates and issues of an embedded folder.
pub fn analyze_embeddings(
    folder: EmbeddedFolder,
    options: &AnalyzeOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<Analysis> {
    let mut timings = folder.timings.clone();
    let e = &folder.embeddings;
    let k = options
        .reduce
        .neighbours_needed(options.reducer)
        .max(curation_neighbours(e.n));

    // The expensive, deterministic half: from the analysis cache when the
    // same embeddings were analysed with the same parameters before.
    let analyses = if options.reuse_analysis {
        options.cache.analyses()?
    } else {
        None
    };
    let key = analyses.as_ref().map(|_| {
        let parameters = serde_json::json!({
            "k": k,
            "knn": options.knn,
            "reducer": options.reducer,
            "reduce": options.reduce,
            "seed": options.seed,
            // Resolved, so that a change of the defaults is a new key, not
            // an old analysis read back under new parameters.
            "clusters": [
                options.clusters.resolved_min_cluster_size(e.n),
                options.clusters.resolved_min_samples(e.n),
            ],
        });
        cache::analysis::key(e, &folder.embedder_id, &parameters)
    });
    let reused = analyses
        .as_deref()
        .zip(key.as_deref())
        .and_then(|(dir, key)| cache::analysis::load(dir, key))
        .filter(|hit| hit.knn.n == e.n && hit.layout.len() == e.n);
    let (knn, layout, clusters, was_reused) = match reused {
        Some(hit) => {
            for stage in [Stage::Neighbours, Stage::Layout, Stage::Clusters] {
                progress.event(ProgressEvent::Started { stage, total: None });
                let computed = hit
                    .timings
                    .iter()
                    .find(|(s, _)| s == stage.key())
                    .map_or(0.0, |t| t.1);
                timings.insert(stage.key(), 0.0);
                progress.event(ProgressEvent::Finished {
                    stage,
                    seconds: 0.0,
                    summary: format!("reused from the analysis cache (took {computed:.1}s)"),
                });
            }
            let clusters =
                analyze::clusters::from_labels(&hit.cluster_labels, hit.min_cluster_size);
            let layout = Layout {
                points: hit.layout,
                requested: options.reducer,
                used: hit.reducer_used,
                note: hit.layout_note,
            };
            (hit.knn, layout, clusters, true)
        }
        None => {
            let (knn, layout, clusters) =
                neighbours_layout_clusters(e, k, options, &mut timings, progress, cancel)?;
            if let (Some(dir), Some(key)) = (&analyses, &key) {
                let entry = cache::analysis::CachedAnalysis {
                    knn: knn.clone(),
                    layout: layout.points.clone(),
                    reducer_used: layout.used,
                    layout_note: layout.note.clone(),
                    cluster_labels: clusters.labels.clone(),
                    min_cluster_size: clusters.min_cluster_size,
                    timings: [Stage::Neighbours, Stage::Layout, Stage::Clusters]
                        .iter()
                        .map(|s| {
                            (
                                s.key().to_owned(),
                                timings.get(s.key()).copied().unwrap_or(0.0),
                            )
                        })
                        .collect(),
                };
                if let Err(err) = cache::analysis::store(dir, key, &entry) {
                    progress.event(ProgressEvent::Warning(format!(
                        "the analysis could not be cached ({err:#}); the next run computes it again"
                    )));
                }
            }
            (knn, layout, clusters, false)
        }
    };

    let started = Instant::now();
    progress.event(ProgressEvent::Started {
        stage: Stage::Duplicates,
        total: None,
    });
    cancel.check()?;
    let threshold = options
        .duplicate_threshold
        .unwrap_or(folder.default_duplicate_threshold);
    let hashes: Vec<ContentHash> = folder.images.iter().map(|r| r.hash).collect();
    let perceptual = perceptual_evidence(&folder, &knn, &PerceptualRule::default(), cancel)?;
    let (duplicate_labels, duplicates) =
        analyze::find_duplicates(e, &knn, &hashes, &perceptual, threshold);
    let by_looks = duplicates
        .iter()
        .filter(|g| {
            g.pairs.iter().any(|p| {
                matches!(
                    p.reason,
                    analyze::DuplicateReason::HashDistance { .. }
                        | analyze::DuplicateReason::AlignedDetail { .. }
                )
            })
        })
        .count();
    finish(
        &mut timings,
        progress,
        Stage::Duplicates,
        started,
        format!(
            "{} duplicate groups ({} exact, {by_looks} with pairs found by how the images look{})",
            duplicates.len(),
            duplicates.iter().filter(|g| g.exact).count(),
            if perceptual.gate.open {
                ""
            } else {
                "; perceptual hashes not used"
            }
        ),
    );

    let started = Instant::now();
    progress.event(ProgressEvent::Started {
        stage: Stage::Issues,
        total: None,
    });
    cancel.check()?;
    let curation = curate(&folder, &knn, cancel)?;
    finish(
        &mut timings,
        progress,
        Stage::Issues,
        started,
        issues_summary(&curation),
    );

    Ok(Analysis {
        folder,
        knn,
        layout,
        clusters,
        duplicate_labels,
        duplicates,
        duplicate_threshold: threshold,
        perceptual,
        curation,
        options: options.clone(),
        timings,
        reused: was_reused,
    })
}

/// The three stages the analysis cache saves.
fn neighbours_layout_clusters(
    e: &Embeddings,
    k: usize,
    options: &AnalyzeOptions,
    timings: &mut Timings,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<(KnnGraph, Layout, Clusters)> {
    let n = e.n;
    let started = Instant::now();
    progress.event(ProgressEvent::Started {
        stage: Stage::Neighbours,
        total: Some(n as u64),
    });
    let knn = neighbours::build(e, k, options.knn, options.seed, progress, cancel)?;
    finish(
        timings,
        progress,
        Stage::Neighbours,
        started,
        format!(
            "{k} neighbours per image ({})",
            if knn.method == KnnMethod::Exact {
                "exact"
            } else {
                "approximate"
            }
        ),
    );

    let started = Instant::now();
    progress.event(ProgressEvent::Started {
        stage: Stage::Layout,
        total: None,
    });
    let layout = reduce::reduce(
        options.reducer,
        e,
        &knn,
        &options.reduce,
        options.seed,
        progress,
        cancel,
    )?;
    if let Some(note) = &layout.note {
        progress.event(ProgressEvent::Warning(note.clone()));
    }
    finish(
        timings,
        progress,
        Stage::Layout,
        started,
        format!("{} layout of {n} points", layout.used.name()),
    );

    let started = Instant::now();
    progress.event(ProgressEvent::Started {
        stage: Stage::Clusters,
        total: None,
    });
    cancel.check()?;
    let clusters = analyze::find_clusters(&layout.points, &options.clusters, cancel)?;
    finish(
        timings,
        progress,
        Stage::Clusters,
        started,
        format!(
            "{} clusters, {} images in none",
            clusters.members.len(),
            clusters.noise()
        ),
    );
    Ok((knn, layout, clusters))
}

/// The pairs that look like the same photo (perceptual hash, aligned
/// detail), when every image has its looks; candidates come from the hash
/// neighbours and from the embedding's kNN graph.
pub fn perceptual_evidence(
    folder: &EmbeddedFolder,
    knn: &KnnGraph,
    rule: &PerceptualRule,
    cancel: &CancelToken,
) -> anyhow::Result<PerceptualEvidence> {
    let n = folder.images.len();
    if folder.looks.is_empty() {
        return Ok(PerceptualEvidence::none(
            "embeddings read from files: there are no images to compare, so duplicates rest \
             on the cosine alone",
        ));
    }
    let fingerprints: Option<Vec<&decode::phash::Fingerprint>> = folder
        .looks
        .iter()
        .map(|l| l.as_ref().map(|l| &l.fingerprint))
        .collect();
    let Some(fingerprints) = fingerprints.filter(|f| f.len() == n) else {
        return Ok(PerceptualEvidence::none(
            "some images have no perceptual fingerprint: duplicates rest on the cosine alone",
        ));
    };
    let hashes: Vec<decode::phash::PerceptualHash> = fingerprints.iter().map(|f| f.hash).collect();
    if let Some(gate) = perceptual::clearly_closed(&hashes, rule) {
        return Ok(PerceptualEvidence {
            gate,
            links: Vec::new(),
            candidates: 0,
        });
    }
    // The kNN stage's own progress would show as a second neighbours stage.
    let neighbours = perceptual::hash_neighbours(
        &hashes,
        rule.neighbours,
        rule.align_max_distance,
        &NoProgress,
        cancel,
    )?;
    Ok(perceptual::perceptual_links(
        &fingerprints,
        &neighbours,
        (knn.n == n).then_some(knn),
        rule,
        cancel,
    )?)
}

/// Label issues (when there are labels), outliers, quality flags.
fn curate(
    folder: &EmbeddedFolder,
    knn: &KnnGraph,
    cancel: &CancelToken,
) -> anyhow::Result<Curation> {
    let n = folder.images.len();
    let e = &folder.embeddings;
    let mut notes: Vec<String> = folder.labels.note.iter().cloned().collect();
    let labels = folder.labels.labels.clone();
    let label_issues = match &labels {
        Some(l) => Some(analyze::label_issues(
            e,
            knn,
            &l.of_image,
            l.names.len(),
            cancel,
        )?),
        None => None,
    };
    if labels.is_none() && notes.is_empty() {
        notes.push("no labels: the label analyses were skipped".into());
    }
    let outliers = if n >= 2 {
        analyze::outlier_scores(e, knn, cancel)?.score
    } else {
        Vec::new()
    };
    let outlier_flagged = analyze::top_share(&outliers, analyze::OUTLIER_SHARE);
    // Flags relative to the folder (median size, shape, sharpness) are taken
    // over the images that have statistics; embeddings read from files have
    // none and get no flags.
    let have: Vec<usize> = (0..n)
        .filter(|&i| folder.looks.get(i).is_some_and(Option::is_some))
        .collect();
    let stats: Vec<decode::quality::ImageStats> = have
        .iter()
        .filter_map(|&i| folder.looks[i].as_ref().map(|l| l.stats))
        .collect();
    let mut flags = vec![Vec::new(); n];
    for (i, f) in have.iter().zip(decode::quality::quality_flags(&stats)) {
        flags[*i] = f;
    }
    if have.is_empty() && n > 0 {
        notes.push("no images to look at: the image-quality flags were skipped".into());
    }
    Ok(Curation {
        labels,
        label_issues,
        outliers,
        outlier_flagged,
        flags,
        notes,
    })
}

fn issues_summary(c: &Curation) -> String {
    let flagged = c.flags.iter().filter(|f| !f.is_empty()).count();
    match &c.label_issues {
        Some(issues) => {
            let suspicious = issues
                .score
                .iter()
                .flatten()
                .filter(|s| **s >= analyze::LABEL_ISSUE_FLAG)
                .count();
            format!("{suspicious} labels in doubt, {flagged} images flagged")
        }
        None => format!("no labels, {flagged} images flagged"),
    }
}

fn finish(
    timings: &mut Timings,
    progress: &dyn ProgressSink,
    stage: Stage,
    started: Instant,
    summary: String,
) {
    let seconds = started.elapsed().as_secs_f64();
    timings.insert(stage.key(), seconds);
    progress.event(ProgressEvent::Finished {
        stage,
        seconds,
        summary,
    });
}

/// Splits the files into batches of at most `max_files` files and about
/// `max_bytes` bytes, so a batch of huge photos does not fill memory.
fn batches(
    files: &[scan::ScannedFile],
    max_files: usize,
    max_bytes: u64,
) -> Vec<&[scan::ScannedFile]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, file) in files.iter().enumerate() {
        if i > start && (i - start >= max_files.max(1) || bytes + file.size > max_bytes) {
            out.push(&files[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += file.size;
    }
    if start < files.len() {
        out.push(&files[start..]);
    }
    out
}

type BatchResult = Result<(ImageRecord, Vec<f32>, ImageLooks), SkipReason>;

/// What happened to each file of a batch before the model ran. Every image
/// that is not skipped has its looks, from the cache or made from its pixels.
enum Prepared {
    Failed(SkipReason),
    Cached(ContentHash, ImageLooks),
    Fresh(ContentHash, u32, u32, ImageLooks),
}

/// A batch read, hashed, looked up in the cache, decoded and preprocessed:
/// `inputs` (one per `Fresh` file, in order) wait for the model.
struct PreparedBatch {
    prepared: Vec<Prepared>,
    cached: std::collections::HashMap<ContentHash, cache::CachedEmbedding>,
    inputs: Vec<Vec<f32>>,
    /// Thumbnails made for the store, for images it lacked.
    thumbnails: Vec<(ContentHash, Thumbnail)>,
    /// Looks made for the cache, for images it lacked.
    new_looks: Vec<(ContentHash, ImageLooks)>,
}

/// Reads, hashes, looks up, decodes and preprocesses one batch on the CPU
/// threads. With a thumbnail store, images it lacks are decoded for their
/// thumbnail even when their embedding is cached; so are images whose looks
/// the cache lacks (a cache written before it kept them).
fn prepare_batch(
    batch: &[scan::ScannedFile],
    embedder: &dyn Embedder,
    embedder_id: &str,
    cache: Option<&EmbeddingCache>,
    limits: DecodeLimits,
    thumbnails: Option<(&cache::thumbnails::ThumbnailStore, u32)>,
) -> anyhow::Result<PreparedBatch> {
    let read: Vec<Result<(Vec<u8>, ContentHash), SkipReason>> = batch
        .par_iter()
        .map(|file| {
            let bytes = decode::read_file(&file.path, &limits)?;
            let hash = ContentHash::of(&bytes);
            Ok((bytes, hash))
        })
        .collect();
    let hashes: Vec<ContentHash> = read
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(_, h)| *h))
        .collect();
    let (cached, mut cached_looks) = match cache {
        Some(cache) => (
            cache.get_many(embedder_id, embedder.dim(), &hashes)?,
            cache.get_looks(&hashes)?,
        ),
        None => Default::default(),
    };
    let have_thumbnail = match thumbnails {
        Some((store, size)) => store.present(&hashes, size)?,
        None => Default::default(),
    };
    // Only the size crosses into the parallel closures (a store is one
    // SQLite connection, not shareable between threads).
    let thumbnail_size = thumbnails.map(|(_, size)| size);
    let thumbnail = |hash: &ContentHash, image: &image::DynamicImage| match thumbnail_size {
        Some(size) if !have_thumbnail.contains(hash) => Some((*hash, Thumbnail::of(image, size))),
        _ => None,
    };
    type Outcome = (
        Prepared,
        Option<Vec<f32>>,
        Option<(ContentHash, Thumbnail)>,
        bool,
    );
    // Looks taken out of the map so they move into the results uncopied.
    let read: Vec<_> = read
        .into_iter()
        .map(|r| {
            r.map(|(bytes, hash)| {
                let looks = cached_looks.remove(&hash);
                (bytes, hash, looks)
            })
        })
        .collect();
    let outcomes: Vec<Outcome> = read
        .into_par_iter()
        .map(|r| match r {
            Err(reason) => (Prepared::Failed(reason), None, None, false),
            Ok((bytes, hash, looks)) if cached.contains_key(&hash) => {
                let wants_thumbnail = thumbnail_size.is_some() && !have_thumbnail.contains(&hash);
                let looks = match looks {
                    Some(looks) if !wants_thumbnail => {
                        return (Prepared::Cached(hash, looks), None, None, false);
                    }
                    looks => looks,
                };
                match decode::decode(&bytes, &limits) {
                    Ok(image) => {
                        let made = thumbnail(&hash, &image);
                        let new = looks.is_none();
                        let looks = looks.unwrap_or_else(|| ImageLooks::of(&image));
                        (Prepared::Cached(hash, looks), None, made, new)
                    }
                    Err(reason) => (Prepared::Failed(reason), None, None, false),
                }
            }
            Ok((bytes, hash, looks)) => match decode::decode(&bytes, &limits) {
                Ok(image) => {
                    let new = looks.is_none();
                    let looks = looks.unwrap_or_else(|| ImageLooks::of(&image));
                    (
                        Prepared::Fresh(hash, image.width(), image.height(), looks),
                        Some(embedder.preprocess(&image)),
                        thumbnail(&hash, &image),
                        new,
                    )
                }
                Err(reason) => (Prepared::Failed(reason), None, None, false),
            },
        })
        .collect();
    let mut prepared = Vec::with_capacity(outcomes.len());
    let mut inputs = Vec::new();
    let mut made = Vec::new();
    let mut new_looks = Vec::new();
    for (p, input, thumb, new) in outcomes {
        if new && let Prepared::Cached(hash, looks) | Prepared::Fresh(hash, _, _, looks) = &p {
            new_looks.push((*hash, looks.clone()));
        }
        prepared.push(p);
        inputs.extend(input);
        made.extend(thumb);
    }
    Ok(PreparedBatch {
        prepared,
        cached,
        inputs,
        thumbnails: made,
        new_looks,
    })
}

/// A freshly embedded image, for the cache: hash, width, height, vector.
type FreshVector = (ContentHash, u32, u32, Vec<f32>);

/// Pairs a prepared batch with the model's vectors: one result per file, and
/// the new vectors for the cache.
fn finish_batch(
    batch: PreparedBatch,
    vectors: Vec<Vec<f32>>,
    stats: &mut CacheStats,
) -> anyhow::Result<(Vec<BatchResult>, Vec<FreshVector>)> {
    let mut vectors = vectors.into_iter();
    let mut results = Vec::with_capacity(batch.prepared.len());
    let mut fresh: Vec<FreshVector> = Vec::new();
    for p in batch.prepared {
        results.push(match p {
            Prepared::Failed(reason) => Err(reason),
            Prepared::Cached(hash, looks) => {
                let hit = &batch.cached[&hash];
                stats.hits += 1;
                let record = ImageRecord {
                    relative: String::new(),
                    hash,
                    width: hit.width,
                    height: hit.height,
                };
                Ok((record, hit.vector.clone(), looks))
            }
            Prepared::Fresh(hash, width, height, looks) => {
                let vector = vectors
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("the embedder returned too few vectors"))?;
                stats.misses += 1;
                fresh.push((hash, width, height, vector.clone()));
                let record = ImageRecord {
                    relative: String::new(),
                    hash,
                    width,
                    height,
                };
                Ok((record, vector, looks))
            }
        });
    }
    Ok((results, fresh))
}

/// Width and height of up to 64 files spread over the folder, from their
/// headers only, for embedders whose input size follows the data.
fn sample_sizes(files: &[scan::ScannedFile], limits: DecodeLimits) -> Vec<(u32, u32)> {
    let step = (files.len() / 64).max(1);
    files
        .iter()
        .step_by(step)
        .take(64)
        .filter(|f| f.size > 0 && f.size <= limits.max_file_bytes)
        .filter_map(|f| {
            image::ImageReader::open(&f.path)
                .ok()?
                .with_guessed_format()
                .ok()?
                .into_dimensions()
                .ok()
        })
        .collect()
}
