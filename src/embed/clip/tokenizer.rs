//! CLIP's text tokenizer: the `tokenizers` crate reading a Hugging Face
//! `tokenizer.json` (byte-level BPE with `</w>` word ends, lower-casing,
//! `<|startoftext|>` … `<|endoftext|>`), cut and padded to the context length
//! as `CLIPTokenizer(padding="max_length", truncation=True)` does.

use std::path::Path;

use anyhow::Context;
use tokenizers::{PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// CLIP's text context length.
pub const CONTEXT_LENGTH: usize = 77;

const END_OF_TEXT: &str = "<|endoftext|>";

pub struct ClipTokenizer {
    inner: Tokenizer,
    end_of_text: u32,
}

/// One prompt, ready for the text tower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipTokens {
    /// `CONTEXT_LENGTH` ids: start, the text, end, then padding.
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Where the end-of-text token is: the text tower pools its output there.
    pub eos_position: usize,
    /// The prompt was longer than the context and was cut.
    pub truncated: bool,
}

impl ClipTokenizer {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot read the CLIP tokenizer {}", path.display()))?;
        let end_of_text = inner.token_to_id(END_OF_TEXT).with_context(|| {
            format!(
                "{} has no {END_OF_TEXT} token: is it a CLIP tokenizer?",
                path.display()
            )
        })?;
        // Truncation leaves room for the start and end tokens the post-processor adds.
        inner
            .with_truncation(Some(TruncationParams {
                max_length: CONTEXT_LENGTH,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(CONTEXT_LENGTH),
            direction: PaddingDirection::Right,
            pad_id: end_of_text,
            pad_token: END_OF_TEXT.to_owned(),
            ..Default::default()
        }));
        Ok(Self { inner, end_of_text })
    }

    pub fn encode(&self, text: &str) -> anyhow::Result<ClipTokens> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| anyhow::anyhow!("cannot tokenize {text:?}: {e}"))?;
        let ids = encoding.get_ids().to_vec();
        let attention_mask = encoding.get_attention_mask().to_vec();
        let real = attention_mask.iter().filter(|m| **m == 1).count();
        anyhow::ensure!(
            ids.len() == CONTEXT_LENGTH && real >= 2 && ids[real - 1] == self.end_of_text,
            "the tokenizer did not produce [start, …, end] of length {CONTEXT_LENGTH}"
        );
        Ok(ClipTokens {
            ids,
            attention_mask,
            eos_position: real - 1,
            truncated: !encoding.get_overflowing().is_empty(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn matches_hugging_face_ids_masks_and_truncation() {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip");
        let tokenizer = ClipTokenizer::from_file(&fixtures.join("tiny/tokenizer.json")).unwrap();
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures.join("expected.json")).unwrap())
                .unwrap();
        let as_u32 = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        };
        for prompt in expected["prompts"].as_array().unwrap() {
            let text = prompt["text"].as_str().unwrap();
            let got = tokenizer.encode(text).unwrap();
            assert_eq!(got.ids, as_u32(&prompt["input_ids"]), "{text:?}");
            assert_eq!(
                got.attention_mask,
                as_u32(&prompt["attention_mask"]),
                "{text:?}"
            );
            assert_eq!(
                got.eos_position as u64,
                prompt["eos_position"].as_u64().unwrap()
            );
            assert_eq!(
                got.truncated,
                prompt["truncated"].as_bool().unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_a_tokenizer_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, "{}").unwrap();
        let err = ClipTokenizer::from_file(&path).err().unwrap().to_string();
        assert!(err.contains("CLIP tokenizer"), "{err}");
    }
}
