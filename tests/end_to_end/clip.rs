//! CLIP from the command line on the committed fixtures.

use crate::support::*;

/// `analyze --model` on image files gives Hugging Face's embeddings; the second
/// run takes them from the cache; `search` ranks by the text tower; a model in
/// the cache makes CLIP the default embedder.
#[test]
fn clip_from_the_command_line_embeds_caches_and_searches() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(clip_fixtures().join("expected.json")).unwrap(),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    for image in expected["images"].as_array().unwrap() {
        let file = clip_fixtures().join(image["file"].as_str().unwrap());
        std::fs::copy(&file, data.path().join(file.file_name().unwrap())).unwrap();
    }
    let before = snapshot(data.path());
    let work = tempfile::tempdir().unwrap();
    let folder = data.path().to_str().unwrap();
    let tiny = clip_fixtures().join("tiny");
    let tiny = tiny.to_str().unwrap();

    let run = |out: &str, extra: &[&str]| {
        let out = work.path().join(out);
        let mut args = vec!["analyze", folder, "--out", out.to_str().unwrap(), "--quiet"];
        args.extend_from_slice(extra);
        let result = embedscope(&args, work.path());
        assert!(
            result.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        (out, report)
    };

    // No --embedder: a model given with --model makes CLIP the default.
    let (out, report) = run("first", &["--model", tiny, "--device", "cpu"]);
    assert_eq!(report["parameters"]["embedder"], "clip");
    assert_eq!(report["cache"]["embedded"], 8);
    let mut npy = std::fs::File::open(out.join("embeddings.npy")).unwrap();
    let (rows, cols, values) = embedscope::output::read_npy_f32(&mut npy).unwrap();
    assert_eq!((rows, cols), (8, 32));
    let csv = std::fs::read_to_string(out.join("points.csv")).unwrap();
    let paths: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    for image in expected["images"].as_array().unwrap() {
        let name = image["file"]
            .as_str()
            .unwrap()
            .trim_start_matches("images/");
        let row = paths.iter().position(|p| p == name).unwrap();
        let want = json_floats(&image["tiny"]["image_embeds_normalized"]);
        let cosine = embedscope::dot(&values[row * 32..(row + 1) * 32], &want);
        assert!(cosine >= 0.9999, "{}: cosine {cosine}", image["file"]);
    }

    // Again: every embedding comes from the cache (keyed by the model's hash).
    let (_, report) = run("second", &["--model", tiny, "--embedder", "clip"]);
    assert_eq!(report["cache"]["reused"], 8);
    assert_eq!(report["cache"]["embedded"], 0);

    // Text search ranks by cosine to the text tower's embedding.
    let prompt = &expected["prompts"][0];
    let search = embedscope(
        &[
            "search",
            folder,
            prompt["text"].as_str().unwrap(),
            "-k",
            "3",
            "--model",
            tiny,
            "--quiet",
        ],
        work.path(),
    );
    assert!(
        search.status.success(),
        "{}",
        String::from_utf8_lossy(&search.stderr)
    );
    let text = json_floats(&prompt["tiny"]["text_embeds_normalized"]);
    let mut ranking: Vec<(f32, &str)> = paths
        .iter()
        .enumerate()
        .map(|(row, path)| {
            (
                embedscope::dot(&values[row * 32..(row + 1) * 32], &text),
                path.as_str(),
            )
        })
        .collect();
    ranking.sort_by(|a, b| b.0.total_cmp(&a.0));
    let printed: Vec<(f32, String)> = String::from_utf8_lossy(&search.stdout)
        .lines()
        .map(|line| {
            let (score, path) = line.split_once("  ").unwrap();
            (score.parse().unwrap(), path.to_string())
        })
        .collect();
    assert_eq!(printed.len(), 3);
    for ((score, path), (want_score, want_path)) in printed.iter().zip(&ranking) {
        assert!(path.ends_with(want_path), "{path} vs {want_path}");
        assert!((score - want_score).abs() < 1e-3, "{score} vs {want_score}");
    }

    // A model fetched into the cache folder makes CLIP the default too.
    let installed = work.path().join("models/clip-vit-base-patch32");
    std::fs::create_dir_all(&installed).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
    ] {
        std::fs::copy(
            clip_fixtures().join("tiny").join(file),
            installed.join(file),
        )
        .unwrap();
    }
    let (_, report) = run("third", &[]);
    assert_eq!(report["parameters"]["embedder"], "clip");
    assert_eq!(report["cache"]["reused"], 8);

    assert_eq!(
        snapshot(data.path()),
        before,
        "the dataset folder was modified"
    );
}
