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

/// A loaded text tower and tokenizer, kept for any number of queries (the
/// viewer keeps one per model; loading takes about a second).
pub struct TextRanker {
    encoder: ClipTextEncoder,
    /// The embedder id of image embeddings this model produces.
    embedder_id: String,
    model_dir: std::path::PathBuf,
}

impl TextRanker {
    /// Loads the text tower of the model `clip` names.
    pub fn load(clip: &ClipOptions) -> anyhow::Result<Self> {
        let model = ModelDir::open(&clip.find_model()?)?;
        let encoder = ClipTextEncoder::load(&model, ComputeDevice::select(clip.device)?)?;
        Ok(Self {
            encoder,
            embedder_id: format!("clip-{}", model.fingerprint),
            model_dir: model.dir,
        })
    }

    /// The query's unit text embedding, and whether it was cut to 77 tokens.
    pub fn embed(&self, query: &str) -> anyhow::Result<(Vec<f32>, bool)> {
        let tokens = self.encoder.tokenize(query)?;
        let truncated = tokens.truncated;
        let text = self
            .encoder
            .embed_tokens(std::slice::from_ref(&tokens))?
            .remove(0);
        Ok((text, truncated))
    }

    /// The `k` images of an already embedded folder closest to `query`:
    /// (row, cosine), best first. The folder must have been embedded by the
    /// same CLIP model, or the cosines would mean nothing.
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
            self.model_dir.display()
        );
        let (text, _) = self.embed(query)?;
        Ok(rank(folder, &text, k))
    }
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
    let search = TextRanker::load(&options.clip)?;
    let (text, query_truncated) = search.embed(query)?;
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
        query_truncated,
    })
}

/// The `k` images of an already embedded folder closest to `query`, loading
/// the text tower for this one query ([`TextRanker`] keeps it for many).
pub fn rank_by_text(
    folder: &EmbeddedFolder,
    clip: &ClipOptions,
    query: &str,
    k: usize,
) -> anyhow::Result<Vec<(usize, f32)>> {
    TextRanker::load(clip)?.rank(folder, query, k)
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
