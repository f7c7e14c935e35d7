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
            "reason": p.reason,
            "reason_text": p.reason.to_string(),
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
    let issues = issues_report(analysis);
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
        "source": source_report(folder),
        "warnings": folder.warnings,
        "duplicate_groups": duplicate_groups,
        "duplicate_evidence": {
            "perceptual_used": analysis.perceptual.gate.open,
            "perceptual_note": analysis.perceptual.gate.reason,
            "hash_crowding": analysis.perceptual.gate.crowding,
            "crowded_images_left_out": analysis.perceptual.gate.crowded_images,
            "candidate_pairs": analysis.perceptual.candidates,
            "perceptual_pairs": analysis.perceptual.links.len(),
        },
        "clusters": clusters,
        "issues": issues,
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
        "analysis_reused_from_cache": analysis.reused,
    })
}

/// Longest ranked list written per analysis (the CSV has every score).
const RANKED_LIMIT: usize = 500;

/// Ranked lists, most suspicious first, with counts: label issues, outliers,
/// quality flags; plus the notes saying what was skipped and why.
fn issues_report(analysis: &Analysis) -> Value {
    let folder = &analysis.folder;
    let c = &analysis.curation;
    let path = |i: usize| folder.images[i].relative.as_str();
    let ranked = |scores: Vec<(usize, f32)>| {
        let mut scores = scores;
        scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scores
    };
    let label_issues = c.label_issues.as_ref().zip(c.labels.as_ref()).map(|(issues, labels)| {
        let scored: Vec<(usize, f32)> = issues
            .score
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .collect();
        let flagged = scored
            .iter()
            .filter(|(_, s)| *s >= crate::analyze::LABEL_ISSUE_FLAG)
            .count();
        // Most suspicious first, saturated scores ordered by how much closer
        // the suggested class is.
        let top: Vec<Value> = issues
            .worst_first()
            .into_iter()
            .take(RANKED_LIMIT)
            .map(|i| {
                json!({
                    "path": path(i),
                    "score": issues.score[i],
                    "ratio": issues.ratio[i],
                    "label": labels.name(i),
                    "suggested_label": issues.suggested[i].map(|s| labels.names[s as usize].as_str()),
                })
            })
            .collect();
        json!({
            "labels_from": labels.origin,
            "labelled_images": labels.labelled(),
            "classes": labels.names.len(),
            "flagged": flagged,
            "flag_threshold": crate::analyze::LABEL_ISSUE_FLAG,
            "estimated_noise_rate": issues.noise_rate,
            "ranked": top,
        })
    });
    let outliers = (!c.outliers.is_empty()).then(|| {
        let top: Vec<Value> = ranked(c.outliers.iter().copied().enumerate().collect())
            .into_iter()
            .take(RANKED_LIMIT)
            .map(|(i, score)| json!({ "path": path(i), "score": score }))
            .collect();
        json!({
            "flagged": c.outlier_flagged.iter().filter(|f| **f).count(),
            "flagged_share": crate::analyze::OUTLIER_SHARE,
            "ranked": top,
        })
    });
    let mut quality = serde_json::Map::new();
    for flag in crate::analyze::QualityFlag::ALL {
        let images: Vec<&str> = c
            .flags
            .iter()
            .enumerate()
            .filter(|(_, f)| f.contains(&flag))
            .map(|(i, _)| path(i))
            .collect();
        quality.insert(
            flag.name().to_owned(),
            json!({
                "count": images.len(),
                "meaning": flag.help(),
                "images": images.iter().take(RANKED_LIMIT).collect::<Vec<_>>(),
            }),
        );
    }
    let looked_at = folder.looks.iter().filter(|l| l.is_some()).count();
    quality.insert("images_looked_at".to_owned(), json!(looked_at));
    quality.insert(
        "images_flagged".to_owned(),
        json!(c.flags.iter().filter(|f| !f.is_empty()).count()),
    );
    quality.insert(
        "thresholds".to_owned(),
        json!(crate::decode::quality::QualityThresholds::default()),
    );
    json!({
        "label_issues": label_issues,
        "outliers": outliers,
        "quality": quality,
        "notes": c.notes,
    })
}

/// Where embeddings read from files came from, and the rows left out (each
/// with its file, row and reason); null for an image folder.
fn source_report(folder: &crate::pipeline::EmbeddedFolder) -> Value {
    let Some(external) = &folder.external else {
        return Value::Null;
    };
    json!({
        "kind": format!("{:?}", folder.source_kind),
        "path": folder.source.display().to_string(),
        "files": external.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "vector_column": external.vector_column,
        "path_column": external.path_column,
        "rows_read": external.rows_read,
        "rows_skipped": external.skipped_rows.len(),
        "images_found": external.links.resolved,
        "skipped_rows": external.skipped_rows,
        "metadata_columns": folder
            .metadata
            .iter()
            .map(|m| json!({"name": m.name, "type": m.source_type, "kind": m.values.kind()}))
            .collect::<Vec<_>>(),
    })
}
