//! Helpers shared by the end-to-end tests: the bundled MNIST subset, option
//! presets, folder snapshots, and running the `embedscope` binary (also under
//! a virtual X server for the viewer).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use embedscope::metrics::{knn_accuracy, trustworthiness};
use embedscope::pipeline::{AnalyzeOptions, CacheMode, analyze};
use embedscope::progress::{CancelToken, NoProgress};
use embedscope::reduce::ReducerKind;
use image::{DynamicImage, ImageFormat};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn mnist_2k() -> PathBuf {
    repo().join("assets/mnist-2k")
}

/// The first `per_class` digits of each class of the bundled subset.
pub fn mnist_files(per_class: usize) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for digit in 0..10 {
        let dir = mnist_2k().join(digit.to_string());
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names.into_iter().take(per_class) {
            out.push((digit.to_string(), path));
        }
    }
    out
}

pub fn options(reducer: ReducerKind, cache_dir: &Path) -> AnalyzeOptions {
    AnalyzeOptions {
        reducer,
        cache: CacheMode::At(cache_dir.join("cache.sqlite")),
        ..AnalyzeOptions::default()
    }
}

pub fn labels_of(analysis: &embedscope::Analysis) -> Vec<String> {
    analysis
        .folder
        .images
        .iter()
        .map(|r| r.relative.split('/').next().unwrap().to_owned())
        .collect()
}

/// Every file under `dir` with its size and modification time.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.insert(entry.path(), (meta.len(), meta.modified().unwrap()));
        }
    }
    out
}

/// Runs UMAP on a labelled folder and returns (images, 10-NN accuracy, trustworthiness).
pub fn umap_quality(dir: &Path) -> (usize, f64, f64) {
    let cache = tempfile::tempdir().unwrap();
    let options = options(ReducerKind::Umap, cache.path());
    let a = analyze(dir, &options, &NoProgress, &CancelToken::new()).unwrap();
    let labels = labels_of(&a);
    let accuracy = knn_accuracy(&a.layout.points, &labels, 10);
    let trust = trustworthiness(&a.folder.embeddings, &a.layout.points, 10);
    println!(
        "{}: UMAP 10-NN accuracy {accuracy:.4}, trustworthiness {trust:.4}",
        dir.display()
    );
    (a.folder.images.len(), accuracy, trust)
}

pub fn copy_subset(per_class: usize, into: &Path) {
    for (label, path) in mnist_files(per_class) {
        let dir = into.join(&label);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
}

/// Peak resident memory of this process, from /proc (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Re-encodings of an image that a curator would call duplicates.
pub fn planted_copies(original: &Path, dir: &Path, stem: &str) -> Vec<String> {
    let img = image::open(original).unwrap();
    let mut names = Vec::new();
    // Byte-identical copy.
    let exact = format!("{stem}_copy.png");
    std::fs::copy(original, dir.join(&exact)).unwrap();
    names.push(exact);
    // JPEG re-encode.
    let jpeg = format!("{stem}_reencoded.jpg");
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&img.to_rgb8())
        .unwrap();
    std::fs::write(dir.join(&jpeg), bytes).unwrap();
    names.push(jpeg);
    // Resized to twice the size.
    let resized = format!("{stem}_resized.png");
    img.resize_exact(
        img.width() * 2,
        img.height() * 2,
        image::imageops::FilterType::CatmullRom,
    )
    .save_with_format(dir.join(&resized), ImageFormat::Png)
    .unwrap();
    names.push(resized);
    // Brightened.
    let bright = format!("{stem}_brightened.png");
    DynamicImage::ImageLuma8(img.to_luma8())
        .brighten(40)
        .save_with_format(dir.join(&bright), ImageFormat::Png)
        .unwrap();
    names.push(bright);
    names
}

/// The binary under test. `EMBEDSCOPE_TEST_BIN` overrides it: worktrees that
/// share one target folder overwrite each other's `target/debug/embedscope`.
pub fn embedscope_bin() -> PathBuf {
    std::env::var_os("EMBEDSCOPE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_embedscope")))
}

pub fn embedscope(args: &[&str], cache_dir: &Path) -> std::process::Output {
    Command::new(embedscope_bin())
        .args(args)
        .env("EMBEDSCOPE_CACHE_DIR", cache_dir)
        // A developer's own Hugging Face cache must not change what the
        // tests see (a CLIP model there would become the default embedder).
        .env("HF_HUB_CACHE", cache_dir.join("no-hf-cache"))
        .env_remove("HF_HOME")
        .output()
        .unwrap()
}

/// Fails with the command's output unless it exited with success.
pub fn assert_succeeded(run: &std::process::Output) {
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

pub fn clip_fixtures() -> PathBuf {
    repo().join("tests/fixtures/clip")
}

pub fn json_floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The viewer under a virtual X server with Mesa's software Vulkan (lavapipe).
pub fn viewer(args: &[&str], cache_dir: &Path) -> std::process::Output {
    let xvfb = ["/usr/bin/xvfb-run", "/bin/xvfb-run"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
            "xvfb-run is needed for the viewer tests: apt-get install xvfb xauth libvulkan1 \
             mesa-vulkan-drivers libxkbcommon-x11-0 (.ci/run installs them)",
        );
    let output = Command::new(xvfb)
        .args(["-a", "-s", "-screen 0 1400x900x24"])
        .arg(embedscope_bin())
        .args(args)
        .env("EMBEDSCOPE_CACHE_DIR", cache_dir)
        .env("HF_HUB_CACHE", cache_dir.join("no-hf-cache"))
        .env_remove("HF_HOME")
        .env("WGPU_BACKEND", "vulkan")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "viewer failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
