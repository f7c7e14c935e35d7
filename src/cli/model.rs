//! `embedscope model fetch`: download CLIP weights with a bar per file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Args, Subcommand};
use indicatif::{HumanBytes, MultiProgress, ProgressBar};

use embedscope::embed::clip::fetch;
use embedscope::embed::clip::hub_cache::HfEnv;
use embedscope::progress::CancelToken;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Download a CLIP model from the Hugging Face Hub into the user's cache:
    /// openai/clip-vit-base-patch32 unless --repo says otherwise (HF_ENDPOINT
    /// selects a mirror, HF_TOKEN or `huggingface-cli login` gives access to
    /// gated models, files already in the Hugging Face cache are reused).
    Fetch(FetchArgs),
    /// Write a CLIP image tower with random weights (benchmarks on machines
    /// that cannot download the real ones; speed does not depend on values).
    #[command(hide = true)]
    Random(RandomArgs),
}

#[derive(Args)]
pub struct RandomArgs {
    /// The folder to write config.json, preprocessor_config.json and model.safetensors into.
    dir: PathBuf,
    /// The shape: vit-b-32, vit-b-16 or vit-l-14.
    #[arg(long, default_value = "vit-b-32")]
    preset: String,
}

#[derive(Args)]
pub struct FetchArgs {
    /// Hugging Face repository of a CLIP model, e.g. openai/clip-vit-large-patch14
    /// [default: openai/clip-vit-base-patch32].
    #[arg(long, value_name = "ORG/NAME")]
    repo: Option<String>,
    /// Branch, tag, commit id or refs/pr/N [default: a pinned commit for the
    /// default model, main for the others].
    #[arg(long)]
    revision: Option<String>,
    /// Where to put the model folder [default: models/<name> in the user's cache dir].
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn run(command: ModelCommand, cancel: &CancelToken) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Fetch(args) => run_fetch(args, cancel),
        ModelCommand::Random(args) => {
            let preset = embedscope::embed::clip::random::VisionPreset::parse(&args.preset)?;
            embedscope::embed::clip::random::write_random_vision_model(&args.dir, preset)?;
            println!(
                "random {} image tower written to {}",
                args.preset,
                args.dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_fetch(args: FetchArgs, cancel: &CancelToken) -> anyhow::Result<ExitCode> {
    let repo = args.repo.as_deref().unwrap_or(fetch::DEFAULT_REPO);
    let source = fetch::ModelSource::for_repo(repo, args.revision.as_deref())?;
    let dir = match args.dir {
        Some(dir) => dir,
        None => fetch::model_dir_for(&source.repo)?,
    };
    let options = fetch::FetchOptions::from_env(&HfEnv::from_process());
    eprintln!(
        "fetching {} (revision {}) from {} into {}",
        source.repo,
        source.revision,
        options.endpoint,
        dir.display()
    );
    let multi = MultiProgress::new();
    let bars: Mutex<Vec<(String, ProgressBar)>> = Mutex::new(Vec::new());
    let report = fetch::fetch_model(
        &source,
        &options,
        &dir,
        &|name, done, total| {
            let mut bars = bars.lock().unwrap();
            let bar = match bars.iter().find(|(n, _)| n == name) {
                Some((_, bar)) => bar.clone(),
                None => {
                    let bar = multi.add(ProgressBar::new(total.unwrap_or(0)));
                    bar.set_style(super::bars::bytes_style());
                    bar.set_prefix(name.to_string());
                    bars.push((name.to_string(), bar.clone()));
                    bar
                }
            };
            bar.set_position(done);
            if Some(done) == total {
                bar.finish();
            }
        },
        cancel,
    )?;
    for (revision, commit) in &report.resolved {
        eprintln!("{revision} is commit {commit}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "CLIP model {} ready in {} ({} downloaded)",
        source.repo,
        dir.display(),
        HumanBytes(report.downloaded_bytes())
    );
    if source.repo == fetch::DEFAULT_REPO {
        println!("`embedscope analyze FOLDER` now uses CLIP by default.");
    } else {
        println!("Use it with `--model {}`.", source.repo);
    }
    Ok(ExitCode::SUCCESS)
}
