//! Text search over a folder: CLIP's text embedding of the query against the
//! folder's image embeddings (from the cache when the folder was seen before).

use std::path::Path;

use crate::embed::clip::{ClipTextEncoder, ComputeDevice, ModelDir};
use crate::embed::{ClipOptions, EmbedderKind};
use crate::pipeline::{AnalyzeOptions, EmbeddedFolder, embed_folder};
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
    let matches = rank(&folder, &text, k)
        .into_iter()
        .map(|(i, score)| SearchHit {
            relative: folder.images[i].relative.clone(),
            score,
        })
        .collect();
    Ok(SearchResult {
        matches,
        query_truncated: tokens.truncated,
    })
}

/// The `k` images of an already embedded folder closest to `query` (the
/// viewer's text search): (row, cosine), best first. The folder must have been
/// embedded by the same CLIP model, or the cosines would mean nothing.
/// Loads the text tower each call: a caller with many queries keeps a
/// [`TextRanker`] instead.
pub fn rank_by_text(
    folder: &EmbeddedFolder,
    clip: &ClipOptions,
    query: &str,
    k: usize,
) -> anyhow::Result<Vec<(usize, f32)>> {
    TextRanker::load(clip)?.rank(folder, query, k)
}

/// CLIP's text tower, loaded once and kept for many queries (loading it takes
/// about a second; a query takes milliseconds).
pub struct TextRanker {
    /// The model folder it was loaded from.
    pub dir: std::path::PathBuf,
    /// The embedder id of folders embedded by the same model.
    pub embedder_id: String,
    encoder: ClipTextEncoder,
}

impl TextRanker {
    /// Loads the text tower of the model `clip` names.
    pub fn load(clip: &ClipOptions) -> anyhow::Result<Self> {
        let model = ModelDir::open(&clip.find_model()?)?;
        let encoder = ClipTextEncoder::load(&model, ComputeDevice::select(clip.device)?)?;
        Ok(Self {
            embedder_id: format!("clip-{}", model.fingerprint),
            dir: model.dir,
            encoder,
        })
    }

    /// The `k` images of `folder` closest to `query`: (row, cosine), best
    /// first. Refuses a folder embedded by another model.
    pub fn rank(
        &self,
        folder: &EmbeddedFolder,
        query: &str,
        k: usize,
    ) -> anyhow::Result<Vec<(usize, f32)>> {
        anyhow::ensure!(
            folder.embedder_id == self.embedder_id,
            "this map was embedded with {}, not with the CLIP model in {}: choose the CLIP \
             embedder and re-run the layout first",
            folder.embedder_id,
            self.dir.display()
        );
        let text = self.encoder.embed(&[query])?.remove(0);
        Ok(rank(folder, &text, k))
    }
}

/// Rows by cosine to `text`, best first; ties by path so the order is stable.
fn rank(folder: &EmbeddedFolder, text: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut scored: Vec<(usize, f32)> = folder
        .embeddings
        .rows()
        .enumerate()
        .map(|(i, row)| (i, crate::dot(row, text)))
        .collect();
    scored.sort_by(|a, b| {
        b.1.total_cmp(&a.1).then_with(|| {
            folder.images[a.0]
                .relative
                .cmp(&folder.images[b.0].relative)
        })
    });
    scored.truncate(k);
    scored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::CacheMode;
    use crate::progress::NoProgress;

    #[test]
    fn ranks_an_embedded_folder_by_text_and_refuses_another_model() {
        let fixtures =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip");
        let clip = ClipOptions {
            model: Some(fixtures.join("tiny")),
            device: crate::embed::DeviceChoice::Cpu,
            batch: None,
        };
        let options = AnalyzeOptions {
            embedder: EmbedderKind::Clip,
            clip: clip.clone(),
            cache: CacheMode::Off,
            ..AnalyzeOptions::default()
        };
        let folder = embed_folder(
            &fixtures.join("images"),
            &options,
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
        let ranked = rank_by_text(&folder, &clip, "a photo of a cat", 3).unwrap();
        assert_eq!(ranked.len(), 3);
        assert!(ranked[0].1 >= ranked[1].1 && ranked[1].1 >= ranked[2].1);
        // The same order as the whole folder scored one by one.
        let encoder = ClipTextEncoder::load(
            &ModelDir::open(&fixtures.join("tiny")).unwrap(),
            ComputeDevice::cpu(),
        )
        .unwrap();
        let text = encoder.embed(&["a photo of a cat"]).unwrap().remove(0);
        let best = (0..folder.images.len())
            .max_by(|&a, &b| {
                crate::dot(folder.embeddings.row(a), &text)
                    .total_cmp(&crate::dot(folder.embeddings.row(b), &text))
            })
            .unwrap();
        assert_eq!(ranked[0].0, best);

        let pixels = AnalyzeOptions {
            cache: CacheMode::Off,
            ..AnalyzeOptions::default()
        };
        let other = embed_folder(
            &fixtures.join("images"),
            &pixels,
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
        let err = rank_by_text(&other, &clip, "a cat", 3).unwrap_err();
        assert!(format!("{err:#}").contains("choose the CLIP"), "{err:#}");

        // One loaded ranker answers many queries, as rank_by_text does.
        let ranker = TextRanker::load(&clip).unwrap();
        for query in ["a photo of a cat", "a red car"] {
            assert_eq!(
                ranker.rank(&folder, query, 3).unwrap(),
                rank_by_text(&folder, &clip, query, 3).unwrap()
            );
        }
        assert!(ranker.rank(&other, "a cat", 3).is_err());
    }
}
