//! CLIP models already on disk: the standard Hugging Face cache (what
//! `transformers`, `huggingface_hub` and the `hf-hub` crate fill), embedscope's
//! own models folder, and the resolver behind `--model`.
//!
//! The Hugging Face cache layout (huggingface_hub's `file_download.py`):
//!
//! ```text
//! <hub cache>/models--<org>--<name>/
//!     refs/main                    the commit `main` pointed at when last fetched
//!     snapshots/<commit>/<file>    symlinks into ../../blobs/
//!     blobs/<git sha1 | sha256>    the file contents, named by their Hub ETag
//! ```
//!
//! A snapshot whose symlinks dangle (blob deleted, download interrupted) is
//! incomplete. Everything here reads the environment through [`HfEnv`], passed
//! in, so tests can describe any environment without racing on the process's.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Where the Hugging Face Hub lives unless `HF_ENDPOINT` says otherwise.
pub const HF_DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The environment variables Hugging Face's own tools read, captured once.
/// `from_process` for the real thing; `new` + `with` in tests.
#[derive(Clone, Debug, Default)]
pub struct HfEnv {
    vars: BTreeMap<String, OsString>,
    home: Option<PathBuf>,
}

/// The variables [`HfEnv::from_process`] captures.
const HF_VARS: [&str; 9] = [
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "XDG_CACHE_HOME",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
];

impl HfEnv {
    /// An empty environment with no home folder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process's environment and the user's home folder.
    pub fn from_process() -> Self {
        let vars = HF_VARS
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (k.to_string(), v)))
            .collect();
        Self {
            vars,
            home: dirs::home_dir(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.vars.insert(key.to_string(), value.into());
        self
    }

    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }

    /// A variable's value; set-but-empty counts as unset, as in huggingface_hub.
    pub fn var(&self, key: &str) -> Option<&OsStr> {
        self.vars
            .get(key)
            .map(|v| v.as_os_str())
            .filter(|v| !v.is_empty())
    }

    /// A path variable, with a leading `~/` expanded.
    fn path_var(&self, key: &str) -> Option<PathBuf> {
        let value = self.var(key)?;
        let text = value.to_string_lossy();
        match (text.strip_prefix("~/"), &self.home) {
            (Some(rest), Some(home)) => Some(home.join(rest)),
            _ => Some(PathBuf::from(value)),
        }
    }

    /// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
    pub fn hf_home(&self) -> Option<PathBuf> {
        self.path_var("HF_HOME")
            .or_else(|| {
                self.path_var("XDG_CACHE_HOME")
                    .map(|d| d.join("huggingface"))
            })
            .or_else(|| self.home.as_ref().map(|h| h.join(".cache/huggingface")))
    }

    /// The hub cache: `$HF_HUB_CACHE`, else the legacy `$HUGGINGFACE_HUB_CACHE`
    /// (huggingface_hub still honours it), else `<HF home>/hub`.
    pub fn hub_cache(&self) -> Option<PathBuf> {
        self.path_var("HF_HUB_CACHE")
            .or_else(|| self.path_var("HUGGINGFACE_HUB_CACHE"))
            .or_else(|| self.hf_home().map(|h| h.join("hub")))
    }

    /// The access token, looked up as huggingface_hub does: `$HF_TOKEN`, the
    /// legacy `$HUGGING_FACE_HUB_TOKEN`, then the file `huggingface-cli login`
    /// writes (`$HF_TOKEN_PATH`, else `<HF home>/token`).
    pub fn token(&self) -> Option<String> {
        let clean = |t: &str| {
            let t = t.replace(['\r', '\n'], "");
            let t = t.trim();
            (!t.is_empty()).then(|| t.to_string())
        };
        for key in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
            if let Some(token) = self.var(key).and_then(|v| clean(&v.to_string_lossy())) {
                return Some(token);
            }
        }
        let file = self
            .path_var("HF_TOKEN_PATH")
            .or_else(|| self.hf_home().map(|h| h.join("token")))?;
        clean(&std::fs::read_to_string(file).ok()?)
    }

    /// `$HF_ENDPOINT` (a mirror) without a trailing slash, else huggingface.co.
    pub fn endpoint(&self) -> String {
        self.var("HF_ENDPOINT")
            .map(|v| v.to_string_lossy().trim().trim_end_matches('/').to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| HF_DEFAULT_ENDPOINT.to_string())
    }

    /// `HF_HUB_OFFLINE=1`: use only what is on disk.
    pub fn offline(&self) -> bool {
        self.var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.to_string_lossy().trim().to_ascii_lowercase().as_str(),
                "1" | "on" | "yes" | "true"
            )
        })
    }
}

/// Whether `repo` is a Hub model id `namespace/name` (letters, digits, `-`,
/// `_`, `.`; no `--` or `..`, as the Hub requires). Anything else is refused
/// before it becomes part of a URL or a cache folder name.
pub fn is_repo_id(repo: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
            && !p.contains("--")
            && !p.contains("..")
    };
    match repo.split_once('/') {
        Some((namespace, name)) => part_ok(namespace) && part_ok(name),
        None => false,
    }
}

/// The folder huggingface_hub keeps a model repository in.
pub fn repo_cache_folder(hub_cache: &Path, repo: &str) -> PathBuf {
    hub_cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// The weights a complete snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CachedWeights {
    Safetensors,
    /// `model.safetensors.index.json` and every shard it lists.
    Sharded {
        shards: Vec<String>,
    },
    /// Only PyTorch pickles: complete for Hugging Face, but embedscope reads
    /// safetensors only.
    PytorchBin,
}

impl CachedWeights {
    pub fn is_safetensors(&self) -> bool {
        !matches!(self, CachedWeights::PytorchBin)
    }
}

/// A complete snapshot found in the Hugging Face cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedSnapshot {
    pub dir: PathBuf,
    pub commit: String,
    /// `refs/main` points at this commit.
    pub is_main: bool,
    pub weights: CachedWeights,
}

/// Which weights make a snapshot usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Safetensors or PyTorch weights (a complete snapshot for Hugging Face).
    AnyWeights,
    /// Safetensors (single or sharded): what embedscope can load.
    Safetensors,
}

/// The shard file names a `model.safetensors.index.json` lists, sorted and
/// deduplicated. `None` if the index is not valid JSON with a `weight_map`, or
/// names a file outside its folder.
pub fn shards_of_index(index: &[u8]) -> Option<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(index).ok()?;
    let map = value.get("weight_map")?.as_object()?;
    let mut shards: Vec<String> = map
        .values()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<_>>()?;
    shards.sort();
    shards.dedup();
    let safe = |s: &String| {
        !s.is_empty()
            && Path::new(s)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
    };
    (!shards.is_empty() && shards.iter().all(safe)).then_some(shards)
}

/// The weights in `dir` if it holds `config.json` and complete weights;
/// `is_file` follows symlinks, so a dangling snapshot link counts as missing.
pub fn inspect_model_folder(dir: &Path) -> Option<CachedWeights> {
    if !dir.join("config.json").is_file() {
        return None;
    }
    if dir.join("model.safetensors").is_file() {
        return Some(CachedWeights::Safetensors);
    }
    if let Ok(index) = std::fs::read(dir.join("model.safetensors.index.json"))
        && let Some(shards) = shards_of_index(&index)
        && shards.iter().all(|s| dir.join(s).is_file())
    {
        return Some(CachedWeights::Sharded { shards });
    }
    dir.join("pytorch_model.bin")
        .is_file()
        .then_some(CachedWeights::PytorchBin)
}

/// A complete snapshot of `repo` in the hub cache `hub_cache`: `refs/main`'s
/// commit when complete, else the newest complete snapshot (by the snapshot
/// folder's modification time, then name, so the choice is deterministic).
pub fn find_cached_snapshot(hub_cache: &Path, repo: &str, need: Need) -> Option<CachedSnapshot> {
    if !is_repo_id(repo) {
        return None;
    }
    let root = repo_cache_folder(hub_cache, repo);
    let snapshots = root.join("snapshots");
    let main = std::fs::read_to_string(root.join("refs/main"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.contains(['/', '\\']) && s != "..");
    let accept = |w: &CachedWeights| need == Need::AnyWeights || w.is_safetensors();
    if let Some(commit) = &main {
        let dir = snapshots.join(commit);
        if let Some(weights) = inspect_model_folder(&dir).filter(accept) {
            return Some(CachedSnapshot {
                dir,
                commit: commit.clone(),
                is_main: true,
                weights,
            });
        }
    }
    let mut others: Vec<(std::time::SystemTime, String, PathBuf)> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, name, e.path()))
        })
        .filter(|(_, name, _)| Some(name) != main.as_ref())
        .collect();
    others.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    others.into_iter().find_map(|(_, commit, dir)| {
        let weights = inspect_model_folder(&dir).filter(accept)?;
        Some(CachedSnapshot {
            dir,
            commit,
            is_main: false,
            weights,
        })
    })
}

/// A complete snapshot folder of `repo` in the user's Hugging Face cache
/// (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
/// else `~/.cache/huggingface/hub`): `config.json` plus weights
/// (`model.safetensors`, an index whose shards are all there, or
/// `pytorch_model.bin`); `refs/main`'s commit first, else the newest.
pub fn find_cached_model(repo: &str) -> Option<PathBuf> {
    let hub = HfEnv::from_process().hub_cache()?;
    find_cached_snapshot(&hub, repo, Need::AnyWeights).map(|s| s.dir)
}

/// The blob the Hugging Face cache keeps for content with Hub ETag `etag`
/// (a git SHA-1 or a SHA-256, lower-case hex) in `repo`, if present.
pub fn cached_blob(hub_cache: &Path, repo: &str, etag: &str) -> Option<PathBuf> {
    if !is_repo_id(repo) || !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let blob = repo_cache_folder(hub_cache, repo).join("blobs").join(etag);
    blob.is_file().then_some(blob)
}

/// The Hub ETag of `file` in the cached snapshot `commit` of `repo`: the name
/// of the blob its symlink points at (huggingface_hub names blobs by ETag).
/// `None` when there is no such link (or the cache holds copies, as on
/// Windows without symlinks).
pub fn snapshot_etag(hub_cache: &Path, repo: &str, commit: &str, file: &str) -> Option<String> {
    if !is_repo_id(repo) || commit.contains(['/', '\\']) || commit == ".." {
        return None;
    }
    let link = repo_cache_folder(hub_cache, repo)
        .join("snapshots")
        .join(commit)
        .join(file);
    let target = std::fs::read_link(link).ok()?;
    let name = target.file_name()?.to_str()?;
    let parent = target.parent()?.file_name()?.to_str()?;
    (parent == "blobs" && name.bytes().all(|b| b.is_ascii_hexdigit())).then(|| name.to_string())
}

/// Where a model folder came from, for the line the caller prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelOrigin {
    /// `--model` named this folder.
    Folder,
    /// embedscope's own models folder (`embedscope model fetch` put it there).
    EmbedscopeModels { repo: String },
    /// A snapshot in the Hugging Face cache.
    HfCache { repo: String, commit: String },
}

/// The model folder to load, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedModel {
    pub dir: PathBuf,
    pub origin: ModelOrigin,
}

impl std::fmt::Display for ResolvedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = self.dir.display();
        match &self.origin {
            ModelOrigin::Folder => write!(f, "CLIP model: {dir}"),
            ModelOrigin::EmbedscopeModels { repo } => {
                write!(
                    f,
                    "CLIP model: {repo} from embedscope's models folder ({dir})"
                )
            }
            ModelOrigin::HfCache { repo, commit } => write!(
                f,
                "CLIP model: {repo} from the Hugging Face cache, commit {} ({dir})",
                &commit[..commit.len().min(12)]
            ),
        }
    }
}

/// Finds the model folder behind `--model`, with the process's environment and
/// embedscope's cache folder. See [`resolve_model_with`].
pub fn resolve_model(model: Option<&Path>) -> anyhow::Result<ResolvedModel> {
    let models = crate::cache::default_cache_dir()
        .ok()
        .map(|d| d.join("models"));
    resolve_model_with(model, &HfEnv::from_process(), models.as_deref())
}

/// Finds the model folder to load.
///
/// * `--model PATH` that exists: that folder (checked when it is opened).
/// * `--model org/name` (no such path): the Hugging Face cache's snapshot of
///   that repository, then `<models>/<name>` as `embedscope model fetch
///   --repo org/name` installs it.
/// * no `--model`: `<models>/clip-vit-base-patch32` (what `embedscope model
///   fetch` installs), then the Hugging Face cache's openai/clip-vit-base-patch32.
///
/// Only safetensors weights count: a snapshot with just `pytorch_model.bin` is
/// skipped, and named in the error if nothing else is found.
pub fn resolve_model_with(
    model: Option<&Path>,
    env: &HfEnv,
    models_dir: Option<&Path>,
) -> anyhow::Result<ResolvedModel> {
    use super::fetch::{DEFAULT_REPO, installed_model, installed_repo, repo_name};

    let hub = env.hub_cache();
    let from_hf = |repo: &str| {
        let snapshot = find_cached_snapshot(hub.as_deref()?, repo, Need::Safetensors)?;
        Some(ResolvedModel {
            dir: snapshot.dir,
            origin: ModelOrigin::HfCache {
                repo: repo.to_string(),
                commit: snapshot.commit,
            },
        })
    };
    let from_models = |repo: &str| {
        let dir = models_dir?.join(repo_name(repo));
        installed_model(&dir)?;
        // A folder of that name fetched from another repository is not this model.
        if installed_repo(&dir).is_some_and(|r| !r.eq_ignore_ascii_case(repo)) {
            return None;
        }
        Some(ResolvedModel {
            dir,
            origin: ModelOrigin::EmbedscopeModels {
                repo: repo.to_string(),
            },
        })
    };
    // Names a PyTorch-only snapshot, which would otherwise look like nothing.
    let bin_only_note = |repo: &str| {
        hub.as_deref()
            .and_then(|h| find_cached_snapshot(h, repo, Need::AnyWeights))
            .map(|s| {
                format!(
                    " The Hugging Face cache has {repo} at {} with only pytorch_model.bin, which \
                     embedscope cannot read; `embedscope model fetch --repo {repo}` gets the \
                     safetensors weights (reusing any cached files).",
                    s.dir.display()
                )
            })
            .unwrap_or_default()
    };
    let searched = |repo: &str| {
        let mut places = Vec::new();
        if let Some(d) = models_dir {
            places.push(d.join(repo_name(repo)).display().to_string());
        }
        if let Some(h) = &hub {
            places.push(repo_cache_folder(h, repo).display().to_string());
        }
        places.join(" and ")
    };

    match model {
        Some(path) if path.exists() => Ok(ResolvedModel {
            dir: path.to_path_buf(),
            origin: ModelOrigin::Folder,
        }),
        Some(path) => {
            let text = path.to_string_lossy();
            anyhow::ensure!(
                is_repo_id(&text),
                "the CLIP model folder {} does not exist: pass --model with a Hugging Face CLIP \
                 folder (config.json, model.safetensors, tokenizer.json) or a Hub repository id \
                 such as {DEFAULT_REPO}",
                path.display()
            );
            from_hf(&text).or_else(|| from_models(&text)).ok_or_else(|| {
                anyhow::anyhow!(
                    "{text} is neither a folder nor a model on this computer (looked in {}). Run \
                     `embedscope model fetch --repo {text}` to download it.{}",
                    searched(&text),
                    bin_only_note(&text)
                )
            })
        }
        None => from_models(DEFAULT_REPO)
            .or_else(|| from_hf(DEFAULT_REPO))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no CLIP weights found (looked in {}). Run `embedscope model fetch` to \
                     download {DEFAULT_REPO} (about 600 MB), or pass `--model DIR` with a Hugging \
                     Face CLIP folder (config.json, model.safetensors, tokenizer.json) or \
                     `--model ORG/NAME` for a model in the Hugging Face cache. `--embedder \
                     pixels` works offline without weights.{}",
                    searched(DEFAULT_REPO),
                    bin_only_note(DEFAULT_REPO)
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake cache entry: blobs plus a snapshot of relative symlinks, as
    /// huggingface_hub lays it out. `files` are (name, content); content
    /// `None` makes a dangling link (its blob was never completed).
    fn snapshot(hub: &Path, repo: &str, commit: &str, files: &[(&str, Option<&[u8]>)]) -> PathBuf {
        let root = repo_cache_folder(hub, repo);
        let snap = root.join("snapshots").join(commit);
        std::fs::create_dir_all(root.join("blobs")).unwrap();
        std::fs::create_dir_all(&snap).unwrap();
        for (name, content) in files {
            let blob_name = format!("{commit}-{}", name.replace('/', "_"));
            if let Some(bytes) = content {
                std::fs::write(root.join("blobs").join(&blob_name), bytes).unwrap();
            }
            let link = snap.join(name);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            let depth = name.matches('/').count();
            let up = "../".repeat(depth + 2);
            symlink(format!("{up}blobs/{blob_name}"), &link).unwrap();
        }
        snap
    }

    fn set_main(hub: &Path, repo: &str, commit: &str) {
        let refs = repo_cache_folder(hub, repo).join("refs");
        std::fs::create_dir_all(&refs).unwrap();
        std::fs::write(refs.join("main"), commit).unwrap();
    }

    const REPO: &str = "openai/clip-vit-base-patch32";
    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

    fn complete() -> Vec<(&'static str, Option<&'static [u8]>)> {
        vec![
            ("config.json", Some(b"{}".as_slice())),
            ("model.safetensors", Some(b"w".as_slice())),
        ]
    }

    #[test]
    fn a_complete_snapshot_of_symlinks_is_found_and_refs_main_is_preferred() {
        let hub = tempfile::tempdir().unwrap();
        let a = snapshot(hub.path(), REPO, A, &complete());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = snapshot(hub.path(), REPO, B, &complete());
        // Without refs/main: the newest.
        let found = find_cached_snapshot(hub.path(), REPO, Need::AnyWeights).unwrap();
        assert_eq!((found.dir.clone(), found.is_main), (b.clone(), false));
        // refs/main wins over a newer snapshot.
        set_main(hub.path(), REPO, A);
        let found = find_cached_snapshot(hub.path(), REPO, Need::AnyWeights).unwrap();
        assert_eq!(found.dir, a);
        assert!(found.is_main);
        assert_eq!(found.commit, A);
        assert_eq!(found.weights, CachedWeights::Safetensors);
    }

    #[test]
    fn dangling_links_make_a_snapshot_incomplete_and_the_next_one_is_used() {
        let hub = tempfile::tempdir().unwrap();
        let old = snapshot(hub.path(), REPO, A, &complete());
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Newer and on refs/main, but its weights blob was never completed.
        snapshot(
            hub.path(),
            REPO,
            B,
            &[
                ("config.json", Some(b"{}".as_slice())),
                ("model.safetensors", None),
            ],
        );
        set_main(hub.path(), REPO, B);
        let found = find_cached_snapshot(hub.path(), REPO, Need::AnyWeights).unwrap();
        assert_eq!(found.dir, old);
        assert!(!found.is_main);
        // A snapshot with weights but no config is incomplete too.
        let hub2 = tempfile::tempdir().unwrap();
        snapshot(
            hub2.path(),
            REPO,
            C,
            &[("model.safetensors", Some(b"w".as_slice()))],
        );
        assert_eq!(
            find_cached_snapshot(hub2.path(), REPO, Need::AnyWeights),
            None
        );
        assert_eq!(
            find_cached_snapshot(hub2.path(), "other/repo", Need::AnyWeights),
            None
        );
    }

    #[test]
    fn sharded_snapshots_need_every_shard_and_pytorch_only_ones_are_not_safetensors() {
        let hub = tempfile::tempdir().unwrap();
        let index = br#"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}"#;
        snapshot(
            hub.path(),
            REPO,
            A,
            &[
                ("config.json", Some(b"{}".as_slice())),
                ("model.safetensors.index.json", Some(index.as_slice())),
                ("model-00001-of-00002.safetensors", Some(b"1".as_slice())),
                ("model-00002-of-00002.safetensors", None),
            ],
        );
        assert_eq!(
            find_cached_snapshot(hub.path(), REPO, Need::AnyWeights),
            None
        );
        let b = snapshot(
            hub.path(),
            REPO,
            B,
            &[
                ("config.json", Some(b"{}".as_slice())),
                ("model.safetensors.index.json", Some(index.as_slice())),
                ("model-00001-of-00002.safetensors", Some(b"1".as_slice())),
                ("model-00002-of-00002.safetensors", Some(b"2".as_slice())),
            ],
        );
        let found = find_cached_snapshot(hub.path(), REPO, Need::Safetensors).unwrap();
        assert_eq!(found.dir, b);
        assert_eq!(
            found.weights,
            CachedWeights::Sharded {
                shards: vec![
                    "model-00001-of-00002.safetensors".into(),
                    "model-00002-of-00002.safetensors".into()
                ]
            }
        );

        let hub = tempfile::tempdir().unwrap();
        snapshot(
            hub.path(),
            REPO,
            C,
            &[
                ("config.json", Some(b"{}".as_slice())),
                ("pytorch_model.bin", Some(b"p".as_slice())),
            ],
        );
        let any = find_cached_snapshot(hub.path(), REPO, Need::AnyWeights).unwrap();
        assert_eq!(any.weights, CachedWeights::PytorchBin);
        assert_eq!(
            find_cached_snapshot(hub.path(), REPO, Need::Safetensors),
            None
        );
    }

    #[test]
    fn index_shard_names_must_stay_inside_the_folder() {
        assert_eq!(
            shards_of_index(br#"{"weight_map":{"a":"../../etc/passwd"}}"#),
            None
        );
        assert_eq!(shards_of_index(br#"{"weight_map":{"a":"/abs"}}"#), None);
        assert_eq!(shards_of_index(br#"{"weight_map":{}}"#), None);
        assert_eq!(shards_of_index(b"not json"), None);
        assert_eq!(
            shards_of_index(br#"{"weight_map":{"a":"x.safetensors"}}"#),
            Some(vec!["x.safetensors".to_string()])
        );
    }

    #[test]
    fn hub_cache_location_follows_huggingface_hub_precedence() {
        let env = HfEnv::new().with_home("/home/u");
        assert_eq!(
            env.hub_cache(),
            Some(PathBuf::from("/home/u/.cache/huggingface/hub"))
        );
        let env = env.with("XDG_CACHE_HOME", "/xdg");
        assert_eq!(env.hub_cache(), Some(PathBuf::from("/xdg/huggingface/hub")));
        let env = env.with("HF_HOME", "~/hf");
        assert_eq!(env.hub_cache(), Some(PathBuf::from("/home/u/hf/hub")));
        let env = env.with("HUGGINGFACE_HUB_CACHE", "/legacy");
        assert_eq!(env.hub_cache(), Some(PathBuf::from("/legacy")));
        let env = env.with("HF_HUB_CACHE", "/explicit");
        assert_eq!(env.hub_cache(), Some(PathBuf::from("/explicit")));
        // Set but empty counts as unset.
        let env = env.with("HF_HUB_CACHE", "");
        assert_eq!(env.hub_cache(), Some(PathBuf::from("/legacy")));
        assert_eq!(HfEnv::new().hub_cache(), None);
    }

    #[test]
    fn token_comes_from_the_environment_then_the_login_file() {
        let home = tempfile::tempdir().unwrap();
        let hf_home = home.path().join("hf");
        std::fs::create_dir_all(&hf_home).unwrap();
        std::fs::write(hf_home.join("token"), "hf_file\n").unwrap();
        let env = HfEnv::new().with_home(home.path());
        assert_eq!(env.token(), None);
        let env = env.with("HF_HOME", &hf_home);
        assert_eq!(env.token().as_deref(), Some("hf_file"));
        let custom = home.path().join("elsewhere");
        std::fs::write(&custom, "  hf_path \r\n").unwrap();
        let env = env.with("HF_TOKEN_PATH", &custom);
        assert_eq!(env.token().as_deref(), Some("hf_path"));
        let env = env.with("HUGGING_FACE_HUB_TOKEN", "hf_legacy");
        assert_eq!(env.token().as_deref(), Some("hf_legacy"));
        let env = env.with("HF_TOKEN", "hf_env");
        assert_eq!(env.token().as_deref(), Some("hf_env"));
        let env = env.with("HF_TOKEN", "  ");
        assert_eq!(env.token().as_deref(), Some("hf_legacy"));
    }

    #[test]
    fn endpoint_and_offline_flags() {
        assert_eq!(HfEnv::new().endpoint(), "https://huggingface.co");
        let env = HfEnv::new().with("HF_ENDPOINT", "https://hf-mirror.com/");
        assert_eq!(env.endpoint(), "https://hf-mirror.com");
        assert!(!env.offline());
        assert!(env.clone().with("HF_HUB_OFFLINE", "1").offline());
        assert!(env.clone().with("HF_HUB_OFFLINE", "TRUE").offline());
        assert!(!env.with("HF_HUB_OFFLINE", "0").offline());
    }

    #[test]
    fn repo_ids_are_checked_before_they_reach_a_path_or_url() {
        for ok in [
            "openai/clip-vit-base-patch32",
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
            "a/b.c_d",
        ] {
            assert!(is_repo_id(ok), "{ok}");
        }
        for bad in [
            "",
            "noslash",
            "a/b/c",
            "../x",
            "a/..",
            "a/b--c",
            "-a/b",
            "a/b.",
            "a /b",
            "a/b?x",
            "/abs/path",
            "./a",
        ] {
            assert!(!is_repo_id(bad), "{bad}");
        }
    }

    fn install_fetched(models: &Path, name: &str, repo: Option<&str>) -> PathBuf {
        let dir = models.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        std::fs::write(dir.join("model.safetensors"), "w").unwrap();
        if let Some(repo) = repo {
            super::super::fetch::write_test_manifest(&dir, repo);
        }
        dir
    }

    #[test]
    fn without_model_embedscope_models_come_first_then_the_hf_cache() {
        let root = tempfile::tempdir().unwrap();
        let hub = root.path().join("hub");
        let models = root.path().join("models");
        let env = HfEnv::new().with("HF_HUB_CACHE", &hub);

        let err = resolve_model_with(None, &env, Some(&models)).unwrap_err();
        let message = format!("{err:#}");
        for needle in [
            "embedscope model fetch",
            "--model DIR",
            "--embedder pixels",
            "models--openai--clip-vit-base-patch32",
        ] {
            assert!(message.contains(needle), "{needle}: {message}");
        }

        let snap = snapshot(&hub, REPO, A, &complete());
        set_main(&hub, REPO, A);
        let found = resolve_model_with(None, &env, Some(&models)).unwrap();
        assert_eq!(found.dir, snap);
        assert_eq!(
            found.origin,
            ModelOrigin::HfCache {
                repo: REPO.into(),
                commit: A.into()
            }
        );
        assert!(found.to_string().contains("Hugging Face cache"), "{found}");

        let ours = install_fetched(&models, "clip-vit-base-patch32", Some(REPO));
        let found = resolve_model_with(None, &env, Some(&models)).unwrap();
        assert_eq!(found.dir, ours);
        assert!(matches!(found.origin, ModelOrigin::EmbedscopeModels { .. }));
    }

    #[test]
    fn model_accepts_a_folder_or_a_repo_id() {
        let root = tempfile::tempdir().unwrap();
        let hub = root.path().join("hub");
        let models = root.path().join("models");
        let env = HfEnv::new().with("HF_HUB_CACHE", &hub);

        // An existing folder is taken as is (ModelDir::open checks it later).
        let folder = root.path().join("my-clip");
        std::fs::create_dir_all(&folder).unwrap();
        let found = resolve_model_with(Some(&folder), &env, Some(&models)).unwrap();
        assert_eq!((found.dir, found.origin), (folder, ModelOrigin::Folder));

        // A path that does not exist and is no repo id.
        let err =
            resolve_model_with(Some(Path::new("/no/such/dir")), &env, Some(&models)).unwrap_err();
        assert!(format!("{err:#}").contains("does not exist"), "{err:#}");

        // A repo id: the HF cache first, then embedscope's models folder.
        let laion = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K";
        let err = resolve_model_with(Some(Path::new(laion)), &env, Some(&models)).unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!("embedscope model fetch --repo {laion}")),
            "{err:#}"
        );
        let ours = install_fetched(&models, "CLIP-ViT-B-32-laion2B-s34B-b79K", Some(laion));
        let found = resolve_model_with(Some(Path::new(laion)), &env, Some(&models)).unwrap();
        assert_eq!(found.dir, ours);
        let snap = snapshot(&hub, laion, B, &complete());
        let found = resolve_model_with(Some(Path::new(laion)), &env, Some(&models)).unwrap();
        assert_eq!(found.dir, snap);

        // A same-named folder fetched from another repository is not it.
        let other = "someone/CLIP-ViT-B-32-laion2B-s34B-b79K";
        let err = resolve_model_with(Some(Path::new(other)), &env, Some(&models)).unwrap_err();
        assert!(format!("{err:#}").contains("neither a folder"), "{err:#}");
    }

    #[test]
    fn a_pytorch_only_snapshot_is_named_in_the_error() {
        let root = tempfile::tempdir().unwrap();
        let hub = root.path().join("hub");
        let env = HfEnv::new().with("HF_HUB_CACHE", &hub);
        snapshot(
            &hub,
            REPO,
            A,
            &[
                ("config.json", Some(b"{}".as_slice())),
                ("pytorch_model.bin", Some(b"p".as_slice())),
            ],
        );
        let err = resolve_model_with(None, &env, None).unwrap_err();
        assert!(
            format!("{err:#}").contains("only pytorch_model.bin"),
            "{err:#}"
        );
    }

    #[test]
    fn cached_blobs_are_found_by_etag() {
        let hub = tempfile::tempdir().unwrap();
        let blobs = repo_cache_folder(hub.path(), REPO).join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join("abc123"), "x").unwrap();
        assert!(cached_blob(hub.path(), REPO, "abc123").is_some());
        assert!(cached_blob(hub.path(), REPO, "abc124").is_none());
        assert!(cached_blob(hub.path(), REPO, "../x").is_none());
    }
}
