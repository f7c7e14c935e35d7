//! What the perceptual evidence adds to the cosine, and what it costs, per
//! folder: duplicate groups and pairs with the default rule (the crowding
//! gate decides), with the gate forced open (every hash and alignment link
//! counts), and with no perceptual evidence at all; plus the seconds spent
//! making every image's looks and the evidence itself. On a folder of
//! distinct images (MNIST-10k) every added pair is a false one.
//!
//!     CARGO_TARGET_DIR=/work/target-headless cargo run --no-default-features \
//!         --example duplicates_gate -- /work/shared/datasets/mnist-10k

use std::path::Path;
use std::time::Instant;

use embedscope::analyze::perceptual::PerceptualRule;
use embedscope::analyze::{DuplicateGroup, PerceptualEvidence, find_duplicates};
use embedscope::decode::{self, DecodeLimits, ImageLooks};
use embedscope::pipeline::{self, AnalyzeOptions, CacheMode};
use embedscope::progress::{CancelToken, NoProgress};
use embedscope::reduce::ReducerKind;
use embedscope::scan::labels::LabelSource;
use rayon::prelude::*;

fn pairs(groups: &[DuplicateGroup]) -> usize {
    groups.iter().map(|g| g.pairs.len()).sum()
}

fn main() -> anyhow::Result<()> {
    let folders: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!folders.is_empty(), "usage: duplicates_gate FOLDER...");
    for folder in folders {
        let root = Path::new(&folder);
        let options = AnalyzeOptions {
            reducer: ReducerKind::Pca,
            cache: CacheMode::Off,
            labels: LabelSource::Off,
            reuse_analysis: false,
            ..Default::default()
        };
        let cancel = CancelToken::new();
        let a = pipeline::analyze(root, &options, &NoProgress, &cancel)?;
        let n = a.folder.images.len();

        // The looks alone, over the same files, after decoding (what the
        // decode stage adds per image).
        let limits = DecodeLimits::default();
        let images: Vec<image::DynamicImage> = (0..n)
            .into_par_iter()
            .filter_map(|i| {
                let bytes = decode::read_file(&root.join(&a.folder.images[i].relative), &limits);
                decode::decode(&bytes.ok()?, &limits).ok()
            })
            .collect();
        let started = Instant::now();
        let looks: Vec<ImageLooks> = images.par_iter().map(ImageLooks::of).collect();
        let looks_seconds = started.elapsed().as_secs_f64();
        drop((images, looks));

        let hashes: Vec<_> = a.folder.images.iter().map(|r| r.hash).collect();
        let e = &a.folder.embeddings;
        let t = a.duplicate_threshold;
        let started = Instant::now();
        let default =
            pipeline::perceptual_evidence(&a.folder, &a.knn, &PerceptualRule::default(), &cancel)?;
        let evidence_seconds = started.elapsed().as_secs_f64();
        let open_rule = PerceptualRule {
            folder_max_crowding: 1.0,
            image_max_crowding: 1.0,
            ..Default::default()
        };
        let open = pipeline::perceptual_evidence(&a.folder, &a.knn, &open_rule, &cancel)?;
        let none = PerceptualEvidence::none("cosine only");
        println!("{folder}: {n} images; gate: {}", default.gate.reason);
        println!(
            "  looks for every image {looks_seconds:.2} s (after decoding); perceptual evidence {evidence_seconds:.2} s ({} candidate pairs)",
            default.candidates
        );
        for (name, evidence) in [
            ("cosine only", &none),
            ("default rule", &default),
            ("gate forced open", &open),
        ] {
            let (_, groups) = find_duplicates(e, &a.knn, &hashes, evidence, t);
            println!(
                "  {name:>16}: {} groups, {} pairs in groups, {} images, {} perceptual links",
                groups.len(),
                pairs(&groups),
                groups.iter().map(|g| g.members.len()).sum::<usize>(),
                evidence.links.len()
            );
        }
        let flagged = a.curation.flags.iter().filter(|f| !f.is_empty()).count();
        println!("  quality flags: {flagged} images flagged");
    }
    Ok(())
}
