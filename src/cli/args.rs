//! Argument groups shared by several subcommands, and the parser that lets
//! clap read the library's [`Choice`] enums by name.

use std::path::PathBuf;

use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use embedscope::choice::Choice;
use embedscope::embed::{ClipOptions, DeviceChoice, EmbedderKind};
use embedscope::pipeline::AnalyzeOptions;
use embedscope::scan::labels::LabelSource;
use embedscope::source::ReadOptions;

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

/// Where labels come from and, for embeddings computed elsewhere, which
/// columns hold the vectors and paths; shared by `analyze` and `view`.
#[derive(Args, Clone, Default)]
pub struct SourceArgs {
    /// Labels from a CSV with `path,label` columns (paths relative to the
    /// dataset, or row ids for a table without paths) [default: the class
    /// folders, or a `label`/`class`/`category`/`target` column].
    #[arg(long, value_name = "FILE.csv", conflicts_with_all = ["no_labels", "label_column"])]
    pub labels: Option<PathBuf>,
    /// Parquet sources: the column that holds each row's label.
    #[arg(long, value_name = "NAME", conflicts_with = "no_labels")]
    pub label_column: Option<String>,
    /// Skip the label analyses even where labels are found.
    #[arg(long)]
    pub no_labels: bool,
    /// Parquet sources: the column of embeddings [default: the one column that
    /// is a list of floats].
    #[arg(long, value_name = "NAME")]
    pub vector_column: Option<String>,
    /// Parquet sources: the column of image paths [default: the first of path,
    /// filepath, image_path, file_name].
    #[arg(long, value_name = "NAME")]
    pub path_column: Option<String>,
    /// Parquet sources: where relative image paths resolve [default: the
    /// folder of the source].
    #[arg(long, value_name = "DIR")]
    pub images_root: Option<PathBuf>,
}

impl SourceArgs {
    /// Puts these choices into `options`.
    pub fn apply(&self, options: &mut AnalyzeOptions) {
        options.labels = if self.no_labels {
            LabelSource::Off
        } else if let Some(csv) = &self.labels {
            LabelSource::Csv(csv.clone())
        } else if let Some(column) = &self.label_column {
            LabelSource::Column(column.clone())
        } else {
            LabelSource::Folders
        };
        options.external = ReadOptions {
            vector_column: self.vector_column.clone(),
            path_column: self.path_column.clone(),
            images_root: self.images_root.clone(),
        };
    }
}
