//! `report.json`: what a run found and how.

use serde_json::{Value, json};

use crate::analyze::DuplicatePair;
use crate::pipeline::Analysis;
use crate::progress::Stage;

pub fn build_report(analysis: &Analysis) -> Value {
    let folder = &analysis.folder;
    let path = |i: usize| folder.images[i].relative.as_str();
    let pair = |p: &DuplicatePair| {
        json!({
            "a": path(p.a),
            "b": path(p.b),
            "cosine": p.cosine,
            "identical_bytes": p.identical,
        })
    };
    let duplicate_groups: Vec<Value> = analysis
        .duplicates
        .iter()
        .map(|g| {
            json!({
                "id": g.id,
                "size": g.members.len(),
                "exact": g.exact,
                "paths": g.members.iter().map(|&i| path(i)).collect::<Vec<_>>(),
                "weakest_pair": pair(&g.weakest),
                "pairs": g.pairs.iter().map(pair).collect::<Vec<_>>(),
            })
        })
        .collect();
    let clusters: Vec<Value> = analysis
        .clusters
        .members
        .iter()
        .enumerate()
        .map(|(id, members)| {
            json!({
                "id": id,
                "size": members.len(),
                "paths": members.iter().map(|&i| path(i)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut timings = serde_json::Map::new();
    for stage in Stage::ALL {
        timings.insert(
            stage.key().to_owned(),
            json!(analysis.timings.get(stage.key()).copied().unwrap_or(0.0)),
        );
    }
    let options = &analysis.options;
    json!({
        "embedscope_version": env!("CARGO_PKG_VERSION"),
        "folder": folder.root.display().to_string(),
        "counts": {
            "images": folder.images.len(),
            "skipped": folder.skipped.len(),
            "hidden_entries_ignored": folder.hidden,
            "clusters": analysis.clusters.members.len(),
            "noise": analysis.clusters.noise(),
            "duplicate_groups": analysis.duplicates.len(),
            "exact_duplicate_groups": analysis.duplicates.iter().filter(|g| g.exact).count(),
            "images_in_duplicate_groups": analysis.duplicates.iter().map(|g| g.members.len()).sum::<usize>(),
        },
        "cache": {
            "path": folder.cache.path,
            "reused": folder.cache.hits,
            "embedded": folder.cache.misses,
        },
        "skipped": folder.skipped,
        "warnings": folder.warnings,
        "duplicate_groups": duplicate_groups,
        "clusters": clusters,
        "parameters": {
            "embedder": options.embedder,
            "embedder_id": folder.embedder_id,
            "embedder_description": folder.embedder_description,
            "embedding_dim": folder.embeddings.dim,
            "embeddings_l2_normalised": true,
            "reducer": analysis.layout.requested,
            "reducer_used": analysis.layout.used,
            "reducer_note": analysis.layout.note,
            "seed": options.seed,
            "duplicate_threshold": analysis.duplicate_threshold,
            "neighbours": {
                "k": analysis.knn.k,
                "method": analysis.knn.method,
                "distance": "euclidean between unit vectors, sqrt(2 - 2 cos)",
            },
            "umap": options.reduce.umap,
            "tsne": options.reduce.tsne,
            "clusters": {
                "algorithm": "hdbscan on the 3D layout",
                "min_cluster_size": analysis.clusters.min_cluster_size,
                "min_samples": options.clusters.min_samples,
            },
        },
        "timings": timings,
    })
}
