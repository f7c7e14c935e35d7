//! Text search over a folder: CLIP's text embedding of the query against the
//! folder's image embeddings (from the cache when the folder was seen before).

use std::path::Path;

use crate::embed::EmbedderKind;
use crate::embed::clip::{ClipTextEncoder, ComputeDevice, ModelDir};
use crate::pipeline::{AnalyzeOptions, embed_folder};
use crate::progress::{CancelToken, ProgressSink};

#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    /// Path relative to the folder.
    pub relative: String,
    /// Cosine between the image and the query.
    pub score: f32,
}

#[derive(Clone, Debug)]
pub struct SearchResult {
    /// Best first; ties broken by path so the order is stable.
    pub matches: Vec<SearchHit>,
    pub query_truncated: bool,
}

/// The `k` images of `root` closest to `query`.
pub fn search_folder(
    root: &Path,
    query: &str,
    k: usize,
    options: &AnalyzeOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<SearchResult> {
    anyhow::ensure!(
        options.embedder == EmbedderKind::Clip,
        "text search needs the CLIP embedder"
    );
    // The text tower first: a model without one fails before any image work.
    let model = ModelDir::open(&options.clip.find_model()?)?;
    let encoder = ClipTextEncoder::load(&model, ComputeDevice::select(options.clip.device)?)?;
    let tokens = model.tokenizer()?.encode(query)?;
    let text = encoder.embed(&[query])?.remove(0);
    let folder = embed_folder(root, options, progress, cancel)?;
    let mut matches: Vec<SearchHit> = folder
        .images
        .iter()
        .zip(folder.embeddings.rows())
        .map(|(image, row)| SearchHit {
            relative: image.relative.clone(),
            score: crate::dot(row, &text),
        })
        .collect();
    matches.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.relative.cmp(&b.relative))
    });
    matches.truncate(k);
    Ok(SearchResult {
        matches,
        query_truncated: tokens.truncated,
    })
}
