//! Argument groups shared by several subcommands, and the parser that lets
//! clap read the library's [`Choice`] enums by name.

use std::path::PathBuf;

use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use embedscope::choice::Choice;
use embedscope::embed::{ClipOptions, DeviceChoice, EmbedderKind};

/// A clap value parser for a library enum: lists its names and helps in
/// `--help`, refuses anything else.
pub fn choice<T: Choice + Clone + Send + Sync>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(
        T::ALL
            .iter()
            .map(|c| PossibleValue::new(c.name()).help(c.help())),
    )
    .map(|name| T::from_name(&name).expect("clap accepts only the listed names"))
}

/// The embedder and CLIP's knobs, shared by `analyze` and `view`.
#[derive(Args)]
pub struct EmbeddingArgs {
    /// How images become vectors [default: clip when its weights are installed
    /// or given with --model, else pixels].
    #[arg(long, value_parser = choice::<EmbedderKind>())]
    pub embedder: Option<EmbedderKind>,
    #[command(flatten)]
    pub clip: ClipArgs,
}

impl EmbeddingArgs {
    /// The embedder to use, and CLIP's options.
    pub fn resolve(&self) -> anyhow::Result<(EmbedderKind, ClipOptions)> {
        let clip = self.clip.options()?;
        let kind = self
            .embedder
            .unwrap_or_else(|| EmbedderKind::default_for(&clip));
        Ok((kind, clip))
    }
}

/// CLIP's knobs, shared by `analyze`, `view` and `search`.
#[derive(Args, Clone)]
pub struct ClipArgs {
    /// A Hugging Face CLIP folder (config.json, model.safetensors, tokenizer.json)
    /// [default: the one `embedscope model fetch` installs].
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Where CLIP runs.
    #[arg(long, value_parser = choice::<DeviceChoice>(), default_value = "auto")]
    pub device: DeviceChoice,
    /// Images per CLIP forward pass [default: 64 on a GPU, 16 on the CPU].
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
}

impl ClipArgs {
    pub fn options(&self) -> anyhow::Result<ClipOptions> {
        if let Some(batch) = self.batch {
            anyhow::ensure!(batch >= 1, "--batch must be at least 1");
        }
        Ok(ClipOptions {
            model: self.model.clone(),
            device: self.device,
            batch: self.batch,
        })
    }
}
