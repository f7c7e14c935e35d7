//! `embedscope model fetch`: download a CLIP model folder from the Hugging Face
//! Hub (or a mirror) over the Hub's own protocol, verifying every file.
//!
//! How the Hub answers `GET|HEAD <endpoint>/<repo>/resolve/<revision>/<file>`
//! (huggingface_hub's `get_hf_file_metadata`, the `hf-hub` crate's `metadata`):
//!
//! * a file kept in git (configs, tokenizer): `200`, `ETag: "<git blob SHA-1>"`,
//!   `X-Repo-Commit`;
//! * a large (LFS) file: `302` to a CDN on another host, with the content's
//!   SHA-256 in `X-Linked-Etag`, its size in `X-Linked-Size` and `X-Repo-Commit`
//!   on the 302 itself. The CDN's own `ETag` is not the SHA-256, so the metadata
//!   request must not follow that redirect;
//! * a renamed repository: `301/307` with a *relative* `Location`, which is
//!   followed (huggingface_hub does the same);
//! * errors: `401/403` with `X-Error-Code: GatedRepo` or `RepoNotFound`, `404`
//!   with `EntryNotFound` or `RevisionNotFound`, and `X-Error-Message`.
//!
//! Each file is then downloaded from wherever `Location` says, with the Hub's
//! `Authorization` header only ever sent to the Hub's own host, into
//! `<file>.incomplete` beside the target, hashed as it arrives and renamed into
//! place only when the hash matches: a pin when embedscope knows one, else what
//! the Hub advertises at the requested revision. A dropped connection resumes
//! with `Range` (also across runs: the partial is kept); a wrong hash installs
//! nothing. A small manifest (`.embedscope-fetch.json`) remembers what was
//! verified, so a second run at a commit (or of pinned files) needs no network.
//!
//! Why not the `hf-hub` crate: its sync API (0.5, on ureq) never checks a
//! download against the ETag it reads, appends to a resumed `.part` even when
//! the server answers `200` to the `Range` request (corrupting the file), has no
//! cancellation, and writes only into the Hugging Face cache layout; 1.x moved
//! to reqwest + tokio + hf-xet, far heavier than ureq. Hand-written here: the
//! protocol is four headers and two status classes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::hub_cache::{self, HfEnv};
use crate::progress::CancelToken;

/// The model `--embedder clip` uses by default.
pub const DEFAULT_REPO: &str = "openai/clip-vit-base-patch32";
/// The commit of [`DEFAULT_REPO`] its configs and tokenizer come from.
pub const DEFAULT_REVISION: &str = "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268";
/// Where [`DEFAULT_REPO`] keeps `model.safetensors`: its `main` (the commit
/// above) has only `pytorch_model.bin`, `tf_model.h5` and `flax_model.msgpack`;
/// the safetensors conversion lives on pull request 15. A ref can move, so the
/// file is pinned by content ([`pinned`]).
pub const DEFAULT_WEIGHTS_REVISION: &str = "refs/pr/15";
/// Repositories whose `main` has only PyTorch weights and whose safetensors
/// conversion lives on a pull-request ref (the refs candle's CLIP examples
/// download `model.safetensors` from). Without `--revision`, the weights of
/// these come from that ref; with one, the error for missing weights names it.
pub const SAFETENSORS_REFS: &[(&str, &str)] = &[
    (DEFAULT_REPO, DEFAULT_WEIGHTS_REVISION),
    ("openai/clip-vit-base-patch16", "refs/pr/4"),
];

fn safetensors_ref(repo: &str) -> Option<&'static str> {
    SAFETENSORS_REFS
        .iter()
        .find(|(r, _)| r.eq_ignore_ascii_case(repo))
        .map(|(_, rev)| *rev)
}

/// The folder name of the default model under `<cache>/models`.
pub const DEFAULT_MODEL_NAME: &str = "clip-vit-base-patch32";

const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
const MANIFEST: &str = ".embedscope-fetch.json";
const LOCK: &str = ".embedscope-fetch.lock";
const PARTIAL_SUFFIX: &str = ".incomplete";
/// Bytes read between cancellation checks and progress reports.
const CHUNK: usize = 1 << 20;

/// A content hash the Hub uses as an ETag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Digest {
    /// SHA-256 of the content (Git-LFS files), lower-case hex.
    Sha256(String),
    /// Git blob SHA-1 (`sha1("blob <len>\0" + content)`) of files kept in git.
    GitBlobSha1(String),
}

impl Digest {
    /// Reads an ETag as huggingface_hub normalises it (`W/` prefix and quotes
    /// dropped): 64 hex digits are a SHA-256, 40 a git blob SHA-1. Anything
    /// else (a CDN's MD5 or multipart tag) says nothing about the content.
    pub fn from_etag(etag: &str) -> Option<Self> {
        let value = etag.trim();
        let value = value.strip_prefix("W/").unwrap_or(value).trim_matches('"');
        if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let hex = value.to_ascii_lowercase();
        match hex.len() {
            64 => Some(Digest::Sha256(hex)),
            40 => Some(Digest::GitBlobSha1(hex)),
            _ => None,
        }
    }

    pub fn hex(&self) -> &str {
        match self {
            Digest::Sha256(h) | Digest::GitBlobSha1(h) => h,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Digest::Sha256(_) => "SHA-256",
            Digest::GitBlobSha1(_) => "git blob SHA-1",
        }
    }

    fn same_kind(&self, other: &Digest) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.hex())
    }
}

/// Content embedscope knows in advance for a file: checked instead of what the
/// Hub advertises, and refused early when the Hub advertises something else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub digest: Digest,
    pub size: Option<u64>,
}

/// The pin table: content confirmed outside the Hub for the default model.
///
/// `model.safetensors` on `refs/pr/15` of openai/clip-vit-base-patch32:
/// 605,157,884 bytes, SHA-256 99d28a65…, the same pin in three unrelated
/// projects that download it (one at `refs/pr/15`, two at commit
/// b33cedfd0df4e43b8238760678fcc89e1a0d38b3). The configs and tokenizer at
/// [`DEFAULT_REVISION`] are not pinned: no independent record of their hashes
/// at that commit was found, and a commit id already fixes their git SHA-1s,
/// which the Hub's ETag gives and the download is checked against.
pub fn pinned(repo: &str, revision: &str, file: &str) -> Option<Pin> {
    match (repo, revision, file) {
        (DEFAULT_REPO, DEFAULT_WEIGHTS_REVISION, WEIGHTS) => Some(Pin {
            digest: Digest::Sha256(
                "99d28a652e6ec46629ab7047a0ac82c69b1fe11e0ce672c43af65d3a9a3fc05d".into(),
            ),
            size: Some(605_157_884),
        }),
        _ => None,
    }
}

/// What a missing file means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// The model cannot work without it.
    Required,
    /// Nice to have (e.g. `tokenizer.json`, which only text search needs).
    Optional,
    /// The weights: `model.safetensors`, or, when the repository has none,
    /// `model.safetensors.index.json` and every shard it lists.
    Weights,
}

/// One file of a model folder.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path inside the repository (and inside the model folder).
    pub name: String,
    /// Overrides [`ModelSource::revision`] for this file.
    pub revision: Option<String>,
    pub pin: Option<Pin>,
    pub kind: FileKind,
}

impl SourceFile {
    pub fn new(name: &str, kind: FileKind) -> Self {
        Self {
            name: name.into(),
            revision: None,
            pin: None,
            kind,
        }
    }
}

/// Where a model folder comes from.
#[derive(Clone, Debug)]
pub struct ModelSource {
    /// Hub repository, e.g. `openai/clip-vit-base-patch32`.
    pub repo: String,
    /// A commit id, branch (`main`), tag or ref (`refs/pr/15`).
    pub revision: String,
    pub files: Vec<SourceFile>,
}

impl ModelSource {
    /// openai/clip-vit-base-patch32: configs and tokenizer at
    /// [`DEFAULT_REVISION`], weights from [`DEFAULT_WEIGHTS_REVISION`] pinned
    /// by SHA-256.
    pub fn default_clip() -> Self {
        let mut source = Self::clip_files(DEFAULT_REPO, DEFAULT_REVISION);
        for file in &mut source.files {
            if file.kind == FileKind::Weights {
                file.revision = Some(DEFAULT_WEIGHTS_REVISION.into());
                file.pin = pinned(DEFAULT_REPO, DEFAULT_WEIGHTS_REVISION, &file.name);
            }
        }
        source
    }

    /// The files a Hugging Face CLIP folder needs, from any repository:
    /// `config.json`, `preprocessor_config.json`, `tokenizer.json` and the
    /// safetensors weights (single file or sharded). The default repository at
    /// the default revision gets [`ModelSource::default_clip`] and its pins.
    pub fn for_repo(repo: &str, revision: Option<&str>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            hub_cache::is_repo_id(repo),
            "`{repo}` is not a Hugging Face repository id: write it as ORG/NAME, e.g. {DEFAULT_REPO}"
        );
        let revision = revision.map(str::trim).filter(|r| !r.is_empty());
        anyhow::ensure!(
            revision.is_none_or(|r| !r.contains("..") && !r.starts_with('/')),
            "`{}` is not a revision: use a branch (main), a tag, a commit id or refs/pr/N",
            revision.unwrap_or_default()
        );
        Ok(match revision {
            None | Some(DEFAULT_REVISION) if repo == DEFAULT_REPO => Self::default_clip(),
            Some(revision) => Self::clip_files(repo, revision),
            None => {
                let mut source = Self::clip_files(repo, "main");
                if let Some(weights_ref) = safetensors_ref(repo) {
                    for file in source
                        .files
                        .iter_mut()
                        .filter(|f| f.kind == FileKind::Weights)
                    {
                        file.revision = Some(weights_ref.into());
                        file.pin = pinned(repo, weights_ref, &file.name);
                    }
                }
                source
            }
        })
    }

    fn clip_files(repo: &str, revision: &str) -> Self {
        let file = |name: &str, kind| SourceFile {
            pin: pinned(repo, revision, name),
            ..SourceFile::new(name, kind)
        };
        Self {
            repo: repo.into(),
            revision: revision.into(),
            files: vec![
                file("config.json", FileKind::Required),
                file("preprocessor_config.json", FileKind::Optional),
                file("tokenizer.json", FileKind::Optional),
                file(WEIGHTS, FileKind::Weights),
            ],
        }
    }

    fn revision_of<'a>(&'a self, file: &'a SourceFile) -> &'a str {
        file.revision.as_deref().unwrap_or(&self.revision)
    }
}

/// The last path component of a repository id: `openai/clip-vit-base-patch32`
/// → `clip-vit-base-patch32`.
pub fn repo_name(repo: &str) -> &str {
    repo.rsplit('/').next().unwrap_or(repo)
}

/// Where fetched models live: `<embedscope cache>/models/<repo name>`.
pub fn model_dir_for(repo: &str) -> anyhow::Result<PathBuf> {
    Ok(crate::cache::default_cache_dir()?
        .join("models")
        .join(repo_name(repo)))
}

/// Where `embedscope model fetch` installs the default model.
pub fn default_model_dir() -> anyhow::Result<PathBuf> {
    model_dir_for(DEFAULT_REPO)
}

/// `dir` if it holds a complete model folder: `config.json` and safetensors
/// weights (one file, or an index with every shard).
pub fn installed_model(dir: &Path) -> Option<PathBuf> {
    hub_cache::inspect_model_folder(dir)
        .filter(|w| w.is_safetensors())
        .map(|_| dir.to_path_buf())
}

/// The repository `embedscope model fetch` downloaded `dir` from, if it did.
pub fn installed_repo(dir: &Path) -> Option<String> {
    Manifest::load(dir).repo
}

/// Download progress: file name, bytes so far, total bytes if known.
pub type FetchProgress<'a> = &'a dyn Fn(&str, u64, Option<u64>);

/// How `fetch_model` talks to the Hub.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// The Hub or a mirror, without a trailing slash.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer` to the endpoint's host only.
    pub token: Option<String>,
    /// A Hugging Face hub cache whose blobs may be reused instead of downloaded.
    pub hub_cache: Option<PathBuf>,
    /// Use only what is on disk (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Tries per file when the connection drops mid-body; each resumes.
    pub attempts: u32,
    /// Pause before a retry (doubled each time).
    pub retry_pause: Duration,
}

impl FetchOptions {
    /// As Hugging Face's tools configure themselves: `HF_ENDPOINT`,
    /// `HF_TOKEN`/the token file, the hub cache, `HF_HUB_OFFLINE`.
    pub fn from_env(env: &HfEnv) -> Self {
        Self {
            endpoint: env.endpoint(),
            token: env.token(),
            hub_cache: env.hub_cache(),
            offline: env.offline(),
            ..Self::endpoint(&env.endpoint())
        }
    }

    /// Only an endpoint: no token, no cache reuse (tests, mirrors).
    pub fn endpoint(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: None,
            hub_cache: None,
            offline: false,
            attempts: 4,
            retry_pause: Duration::from_secs(1),
        }
    }
}

/// How a file came to be in the model folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Obtained {
    /// It was there and verified (nothing downloaded).
    AlreadyThere,
    /// Linked or copied from the Hugging Face cache's blob, then verified.
    FromHfCache,
    /// Downloaded; `resumed_from` bytes were already in the partial file.
    Downloaded { resumed_from: u64 },
}

#[derive(Clone, Debug)]
pub struct FetchedFile {
    pub name: String,
    pub size: u64,
    pub how: Obtained,
    /// The hash the file was checked against, and whether it was a pin.
    pub checked: Digest,
    pub pinned: bool,
    /// The commit the file came from, when known.
    pub commit: Option<String>,
}

/// What `fetch_model` did, for the caller to print.
#[derive(Clone, Debug, Default)]
pub struct FetchReport {
    pub repo: String,
    pub files: Vec<FetchedFile>,
    /// (requested revision, commit it resolved to), for revisions that were not
    /// commit ids (`main`, `refs/pr/15`).
    pub resolved: Vec<(String, String)>,
    /// Things the user should know that did not stop the fetch.
    pub warnings: Vec<String>,
}

impl FetchReport {
    pub fn downloaded_bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|f| match f.how {
                Obtained::Downloaded { resumed_from } => f.size - resumed_from.min(f.size),
                _ => 0,
            })
            .sum()
    }
}

/// A file the repository does not have at that revision (Hub `404`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FileMissing(String);

/// Downloads every file of `source` into `dir` and verifies it. Files already
/// there and verified are kept; see the module documentation.
pub fn fetch_model(
    source: &ModelSource,
    options: &FetchOptions,
    dir: &Path,
    progress: FetchProgress,
    cancel: &CancelToken,
) -> anyhow::Result<FetchReport> {
    anyhow::ensure!(
        hub_cache::is_repo_id(&source.repo),
        "`{}` is not a Hugging Face repository id: write it as ORG/NAME, e.g. {DEFAULT_REPO}",
        source.repo
    );
    anyhow::ensure!(
        options.endpoint.starts_with("https://") || options.endpoint.starts_with("http://"),
        "HF_ENDPOINT must be an http(s) URL, not `{}`",
        options.endpoint
    );
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the model folder {}", dir.display()))?;
    let _lock = lock_folder(dir)?;
    let mut fetch = Fetch {
        source,
        options,
        dir,
        hub: Hub::new(options)?,
        manifest: Manifest::load(dir),
        report: FetchReport {
            repo: source.repo.clone(),
            ..FetchReport::default()
        },
        resolved: BTreeMap::new(),
        progress,
        cancel,
    };
    if fetch.manifest.repo.as_deref() != Some(&source.repo) {
        // Entries from another repository prove nothing about this one.
        fetch.manifest = Manifest {
            repo: Some(source.repo.clone()),
            ..Manifest::default()
        };
    }
    for file in &source.files {
        cancel.check()?;
        fetch.entry(file)?;
    }
    Ok(fetch.report)
}

struct Fetch<'a> {
    source: &'a ModelSource,
    options: &'a FetchOptions,
    dir: &'a Path,
    hub: Hub,
    manifest: Manifest,
    report: FetchReport,
    /// Requested revision → commit, learnt from `X-Repo-Commit`: later files of
    /// the same revision are fetched at that commit, so a branch that moves
    /// during the fetch cannot mix two versions.
    resolved: BTreeMap<String, String>,
    progress: FetchProgress<'a>,
    cancel: &'a CancelToken,
}

impl Fetch<'_> {
    fn entry(&mut self, file: &SourceFile) -> anyhow::Result<()> {
        let revision = self.source.revision_of(file).to_string();
        let result = self.file(&file.name, &revision, file.pin.as_ref());
        match (file.kind, result) {
            (_, Ok(())) => Ok(()),
            (FileKind::Optional, Err(e)) if e.is::<FileMissing>() => {
                self.report.warnings.push(format!(
                    "{} has no {} at revision {revision}; continuing without it",
                    self.source.repo, file.name
                ));
                Ok(())
            }
            (FileKind::Weights, Err(e)) if e.is::<FileMissing>() => self.sharded_weights(&revision),
            (_, Err(e)) => Err(e),
        }
    }

    /// No `model.safetensors`: the index and every shard it lists, else an
    /// error that says what the repository has instead.
    fn sharded_weights(&mut self, revision: &str) -> anyhow::Result<()> {
        match self.file(WEIGHTS_INDEX, revision, None) {
            Ok(()) => {}
            Err(e) if e.is::<FileMissing>() => {
                let repo = &self.source.repo;
                let has_bin = !self.options.offline
                    && self
                        .hub
                        .head(&self.url(revision, "pytorch_model.bin"))
                        .is_ok();
                let what = if has_bin {
                    "only PyTorch weights (pytorch_model.bin)"
                } else {
                    "no model.safetensors"
                };
                let hint = if let Some(weights_ref) = safetensors_ref(repo) {
                    format!(
                        "run without --revision (embedscope then takes the weights from \
                         {weights_ref}) or pass --revision {weights_ref}"
                    )
                } else {
                    format!(
                        "if a pull request converted the weights to safetensors, pass its ref, \
                         e.g. --revision refs/pr/1 (see {}/{repo}/discussions)",
                        self.options.endpoint
                    )
                };
                anyhow::bail!(
                    "{repo} has {what} at revision {revision} (nor {WEIGHTS_INDEX}); embedscope \
                     reads safetensors weights only: {hint}"
                );
            }
            Err(e) => return Err(e),
        }
        let index_path = self.dir.join(WEIGHTS_INDEX);
        let index = std::fs::read(&index_path)
            .with_context(|| format!("cannot read {}", index_path.display()))?;
        let shards = hub_cache::shards_of_index(&index).with_context(|| {
            format!(
                "{WEIGHTS_INDEX} of {} has no usable weight_map: the repository's index is broken",
                self.source.repo
            )
        })?;
        for shard in shards {
            self.cancel.check()?;
            self.file(&shard, revision, None)?;
        }
        Ok(())
    }

    /// The revision to put in URLs: the commit a branch resolved to earlier in
    /// this run, else the revision as asked.
    fn effective<'r>(&'r self, revision: &'r str) -> &'r str {
        self.resolved
            .get(revision)
            .map(String::as_str)
            .unwrap_or(revision)
    }

    fn url(&self, revision: &str, name: &str) -> String {
        file_url(
            &self.options.endpoint,
            &self.source.repo,
            self.effective(revision),
            name,
        )
    }

    fn done(
        &mut self,
        name: &str,
        size: u64,
        how: Obtained,
        checked: Digest,
        pinned: bool,
        commit: Option<String>,
    ) {
        (self.progress)(name, size, Some(size));
        self.report.files.push(FetchedFile {
            name: name.to_string(),
            size,
            how,
            checked,
            pinned,
            commit,
        });
    }

    fn record(
        &mut self,
        name: &str,
        revision: &str,
        commit: Option<String>,
        hashes: &Hashes,
    ) -> anyhow::Result<()> {
        let target = self.dir.join(name);
        let entry = Entry {
            revision: revision.to_string(),
            commit,
            size: hashes.size,
            modified: modified(&target),
            sha256: hashes.sha256.clone(),
            git_sha1: hashes.git_sha1.clone(),
        };
        self.manifest.files.insert(name.to_string(), entry);
        self.manifest.save(self.dir)
    }

    /// Makes `name` present and verified.
    fn file(&mut self, name: &str, revision: &str, pin: Option<&Pin>) -> anyhow::Result<()> {
        anyhow::ensure!(
            safe_relative(name),
            "refusing the file name `{name}`: it would land outside the model folder"
        );
        let target = self.dir.join(name);
        let effective = self.effective(revision).to_string();
        let entry = self
            .manifest
            .files
            .get(name)
            .filter(|e| e.describes(&target))
            .cloned();

        // 1. Verified before, and nothing can have changed: a pinned hash, or a
        //    commit id (immutable). No network.
        if let Some(e) = &entry {
            let trusted = match pin {
                Some(p) => e.has(&p.digest) && p.size.is_none_or(|s| s == e.size),
                None => {
                    is_commit(&effective)
                        && (e.revision == effective || e.commit.as_deref() == Some(&effective))
                }
            };
            if trusted {
                let checked = pin.map(|p| p.digest.clone()).unwrap_or_else(|| e.digest());
                self.done(
                    name,
                    e.size,
                    Obtained::AlreadyThere,
                    checked,
                    pin.is_some(),
                    e.commit.clone(),
                );
                return Ok(());
            }
        }
        // A file at a commit that the Hub said does not exist.
        if is_commit(&effective) && self.manifest.absent.contains(&absent_key(&effective, name)) {
            return Err(FileMissing(format!(
                "{name} does not exist in {} at revision {effective}",
                self.source.repo
            ))
            .into());
        }
        // 2. Pinned: a copy already in place (copied by hand, or from an older
        //    embedscope) or in the Hugging Face cache is checked by hashing.
        if let Some(pin) = pin {
            if target.is_file() && pin.size.is_none_or(|s| file_len(&target) == s) {
                let hashes = hash_file(&target, matches!(pin.digest, Digest::GitBlobSha1(_)))?;
                if hashes.has(&pin.digest) {
                    self.record(name, revision, None, &hashes)?;
                    self.done(
                        name,
                        hashes.size,
                        Obtained::AlreadyThere,
                        pin.digest.clone(),
                        true,
                        None,
                    );
                    return Ok(());
                }
            }
            if let Some(hashes) = self.link_from_hf_cache(name, &pin.digest, pin.size)? {
                self.record(name, revision, None, &hashes)?;
                self.done(
                    name,
                    hashes.size,
                    Obtained::FromHfCache,
                    pin.digest.clone(),
                    true,
                    None,
                );
                return Ok(());
            }
        }
        // 3. At a commit, the Hugging Face cache's snapshot of that commit
        //    names each file's blob by its Hub ETag: checked like a download.
        //    (Pinned files were looked up by their pin above.)
        if is_commit(&effective)
            && let Some(hub) = &self.options.hub_cache
            && let Some(etag) = hub_cache::snapshot_etag(hub, &self.source.repo, &effective, name)
            && let Some(digest) = Digest::from_etag(&etag)
            && pin.is_none()
            && let Some(hashes) = self.link_from_hf_cache(name, &digest, None)?
        {
            self.record(name, revision, Some(effective.clone()), &hashes)?;
            self.done(
                name,
                hashes.size,
                Obtained::FromHfCache,
                digest,
                false,
                Some(effective),
            );
            return Ok(());
        }
        if self.options.offline {
            anyhow::bail!(
                "HF_HUB_OFFLINE is set and {name} of {} is not in {} (nor in the Hugging Face \
                 cache): unset HF_HUB_OFFLINE to download it",
                self.source.repo,
                self.dir.display()
            );
        }

        // 4. Ask the Hub what the file is at this revision.
        let url = self.url(revision, name);
        let meta = match (self.hub.head(&url), &entry) {
            (Ok(meta), _) => meta,
            // Offline with a copy verified earlier (at a branch): keep it.
            (Err(HubError::Network(err)), Some(e)) => {
                self.report.warnings.push(format!(
                    "could not ask {} whether {name} changed at {revision} ({err}); kept the \
                     installed copy{}",
                    self.options.endpoint,
                    e.commit
                        .as_deref()
                        .map(|c| format!(" from commit {c}"))
                        .unwrap_or_default()
                ));
                let checked = e.digest();
                self.done(
                    name,
                    e.size,
                    Obtained::AlreadyThere,
                    checked,
                    false,
                    e.commit.clone(),
                );
                return Ok(());
            }
            (Err(err), _) => {
                if err.is_missing_entry() && is_commit(&effective) {
                    self.manifest.absent.insert(absent_key(&effective, name));
                    self.manifest.save(self.dir)?;
                }
                return Err(err.explain(&self.source.repo, &effective, name, &url, self.options));
            }
        };
        let commit = meta.commit.clone();
        if let Some(commit) = &commit
            && !is_commit(revision)
            && !self.resolved.contains_key(revision)
        {
            self.resolved.insert(revision.to_string(), commit.clone());
            self.report
                .resolved
                .push((revision.to_string(), commit.clone()));
        }
        if let Some(moved) = &meta.moved_to
            && !self
                .report
                .warnings
                .iter()
                .any(|w| w.contains(moved.as_str()))
        {
            self.report.warnings.push(format!(
                "{} has moved to {moved}: pass --repo {moved} from now on",
                self.source.repo
            ));
        }

        // 5. What to check the bytes against.
        let expected = match (pin, &meta.digest) {
            (Some(pin), Some(advertised))
                if advertised.same_kind(&pin.digest) && *advertised != pin.digest =>
            {
                anyhow::bail!(
                    "{url} now serves {name} with {advertised}, but embedscope pins {}: refusing \
                     to download it (the repository changed, or a mirror serves other content). \
                     Nothing was changed in {}",
                    pin.digest,
                    self.dir.display()
                )
            }
            (Some(pin), _) => pin.digest.clone(),
            (None, Some(advertised)) => advertised.clone(),
            (None, None) => anyhow::bail!(
                "{url} gave no content hash for {name} (no X-Linked-Etag or git ETag), and none \
                 is pinned: refusing to install an unverified file. If HF_ENDPOINT points at a \
                 mirror, it must pass the Hub's ETag headers through"
            ),
        };
        let size = pin.and_then(|p| p.size).or(meta.size);

        // 6. Already there (e.g. a branch that did not move): compare.
        if target.is_file() {
            if let Some(e) = entry.as_ref().filter(|e| e.has(&expected)) {
                self.record(
                    name,
                    revision,
                    commit.clone().or(e.commit.clone()),
                    &e.hashes(),
                )?;
                self.done(
                    name,
                    e.size,
                    Obtained::AlreadyThere,
                    expected,
                    pin.is_some(),
                    commit,
                );
                return Ok(());
            }
            if size.is_none_or(|s| file_len(&target) == s) {
                let hashes = hash_file(&target, matches!(expected, Digest::GitBlobSha1(_)))?;
                if hashes.has(&expected) {
                    self.record(name, revision, commit.clone(), &hashes)?;
                    self.done(
                        name,
                        hashes.size,
                        Obtained::AlreadyThere,
                        expected,
                        pin.is_some(),
                        commit,
                    );
                    return Ok(());
                }
            }
        }
        // 7. The Hugging Face cache names blobs by their ETag.
        if let Some(hashes) = self.link_from_hf_cache(name, &expected, size)? {
            self.record(name, revision, commit.clone(), &hashes)?;
            self.done(
                name,
                hashes.size,
                Obtained::FromHfCache,
                expected,
                pin.is_some(),
                commit,
            );
            return Ok(());
        }
        // 8. Download.
        let (hashes, resumed_from) = self.download(name, &meta, &expected, size)?;
        self.record(name, revision, commit.clone(), &hashes)?;
        self.report.files.push(FetchedFile {
            name: name.to_string(),
            size: hashes.size,
            how: Obtained::Downloaded { resumed_from },
            checked: expected,
            pinned: pin.is_some(),
            commit,
        });
        Ok(())
    }

    /// Links (or copies) the Hugging Face cache's blob for `digest` into place
    /// after checking it. `None` when there is no such blob or it does not match.
    fn link_from_hf_cache(
        &mut self,
        name: &str,
        digest: &Digest,
        size: Option<u64>,
    ) -> anyhow::Result<Option<Hashes>> {
        let Some(hub) = &self.options.hub_cache else {
            return Ok(None);
        };
        let Some(blob) = hub_cache::cached_blob(hub, &self.source.repo, digest.hex()) else {
            return Ok(None);
        };
        if size.is_some_and(|s| file_len(&blob) != s) {
            return Ok(None);
        }
        let target = self.dir.join(name);
        let partial = partial_path(&target);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let _ = std::fs::remove_file(&partial);
        // A hard link costs no space; across file systems, a copy.
        if std::fs::hard_link(&blob, &partial).is_err() {
            std::fs::copy(&blob, &partial).with_context(|| {
                format!("cannot copy {} to {}", blob.display(), partial.display())
            })?;
        }
        let hashes = hash_file(&partial, matches!(digest, Digest::GitBlobSha1(_)))?;
        if !hashes.has(digest) {
            let _ = std::fs::remove_file(&partial);
            self.report.warnings.push(format!(
                "the Hugging Face cache's {} does not hold what its name says; downloaded {name} \
                 instead",
                blob.display()
            ));
            return Ok(None);
        }
        std::fs::rename(&partial, &target)
            .with_context(|| format!("cannot move {} into place", target.display()))?;
        Ok(Some(hashes))
    }

    /// Downloads into `<name>.incomplete` (resuming what is there), verifies,
    /// and renames into place. Returns the hashes and how many of the final
    /// bytes were already on disk before this run.
    fn download(
        &mut self,
        name: &str,
        meta: &Meta,
        expected: &Digest,
        size: Option<u64>,
    ) -> anyhow::Result<(Hashes, u64)> {
        let target = self.dir.join(name);
        let partial = partial_path(&target);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // A partial left by an older version of the file cannot be told apart
        // until the end: then it is dropped and the file fetched once afresh.
        let mut may_start_over = file_len(&partial) > 0;
        loop {
            let mut state = None;
            let mut received = 0u64;
            let mut failures = 0u32;
            loop {
                match self.attempt(name, meta, &partial, size, &mut state, &mut received) {
                    Ok(()) => break,
                    Err(Attempt::Fatal(e)) => return Err(e),
                    Err(Attempt::Interrupted(why)) => {
                        failures += 1;
                        if failures >= self.options.attempts.max(1) {
                            anyhow::bail!(
                                "the download of {name} stopped at {} of {} bytes ({why}); the \
                                 partial download is kept in {}: check the network and run the \
                                 command again to resume",
                                file_len(&partial),
                                size.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                                partial.display()
                            );
                        }
                        let pause = self.options.retry_pause * (1 << (failures - 1).min(5));
                        std::thread::sleep(pause);
                    }
                }
            }
            let (sha256, len) = match state.take() {
                Some((hasher, len)) => (hex(&hasher.finalize()), len),
                None => {
                    let h = hash_file(&partial, false)?;
                    (h.sha256, h.size)
                }
            };
            let git_sha1 = match expected {
                Digest::GitBlobSha1(_) => Some(git_blob_sha1_of(&partial)?),
                Digest::Sha256(_) => None,
            };
            let hashes = Hashes {
                size: len,
                sha256,
                git_sha1,
            };
            if hashes.has(expected) && size.is_none_or(|s| s == len) {
                std::fs::File::open(&partial)
                    .and_then(|f| f.sync_all())
                    .ok();
                std::fs::rename(&partial, &target).with_context(|| {
                    format!("cannot move the download into {}", target.display())
                })?;
                return Ok((hashes, len.saturating_sub(received)));
            }
            let _ = std::fs::remove_file(&partial);
            if std::mem::take(&mut may_start_over) {
                continue;
            }
            let got = match expected {
                Digest::Sha256(_) => Digest::Sha256(hashes.sha256.clone()),
                Digest::GitBlobSha1(_) => {
                    Digest::GitBlobSha1(hashes.git_sha1.clone().unwrap_or_default())
                }
            };
            anyhow::bail!(
                "{name} from {} has {got} ({len} bytes), expected {expected}{}: the download was \
                 corrupted or the server sent other content; nothing was installed. Run the \
                 command again; if it keeps failing, the repository or mirror serves a file that \
                 does not match its published hash",
                host_of(&meta.download_url),
                size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
            );
        }
    }

    /// One request: appends to `partial`, keeping `state` (the hash of the
    /// bytes in `partial` so far) in step with the file.
    fn attempt(
        &mut self,
        name: &str,
        meta: &Meta,
        partial: &Path,
        size: Option<u64>,
        state: &mut Option<(Sha256, u64)>,
        received: &mut u64,
    ) -> Result<(), Attempt> {
        let fatal = |e: anyhow::Error| Attempt::Fatal(e);
        let mut have = file_len(partial);
        if size.is_some_and(|s| have > s) {
            truncate(partial).map_err(fatal)?;
            have = 0;
        }
        if state.as_ref().is_none_or(|(_, len)| *len != have) {
            *state = Some(hash_prefix(partial, have).map_err(fatal)?);
        }
        if have > 0 && size == Some(have) {
            return Ok(());
        }
        let response = self
            .hub
            .get(&meta.download_url, meta.send_auth, have)
            .map_err(|e| Attempt::Interrupted(e.to_string()))?;
        let status = response.status().as_u16();
        match status {
            206 => {
                let range =
                    header(&response, "content-range").and_then(|v| parse_content_range(&v));
                let fits = have > 0
                    && range.is_some_and(|(start, end, total)| {
                        start == have
                            && total.is_none_or(|t| end + 1 == t && size.is_none_or(|s| s == t))
                    });
                if !fits {
                    // Not the bytes we asked for: start over without Range.
                    truncate(partial).map_err(fatal)?;
                    *state = Some((Sha256::new(), 0));
                    return Err(Attempt::Interrupted(format!(
                        "the server answered a range request with Content-Range {:?}",
                        header(&response, "content-range").unwrap_or_default()
                    )));
                }
            }
            200 => {
                if have > 0 {
                    // The server ignored Range and sends everything.
                    truncate(partial).map_err(fatal)?;
                    *state = Some((Sha256::new(), 0));
                    have = 0;
                }
            }
            416 => {
                truncate(partial).map_err(fatal)?;
                *state = Some((Sha256::new(), 0));
                return Err(Attempt::Interrupted(
                    "the server refused the range request".into(),
                ));
            }
            429 | 500..=599 => {
                return Err(Attempt::Interrupted(format!(
                    "{} answered {status}",
                    host_of(&meta.download_url)
                )));
            }
            _ => {
                return Err(fatal(anyhow::anyhow!(
                    "{} answered {status} to the download of {name}: the download link may have \
                     expired; run the command again (the partial download, if any, is kept)",
                    host_of(&meta.download_url)
                )));
            }
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(partial)
            .with_context(|| format!("cannot write {}", partial.display()))
            .map_err(fatal)?;
        let Some((hasher, done)) = state.as_mut() else {
            return Err(fatal(anyhow::anyhow!("internal: no hash state for {name}")));
        };
        debug_assert_eq!(*done, have);
        (self.progress)(name, have, size);
        let mut body = response.into_body().into_reader();
        let mut buffer = vec![0u8; CHUNK];
        loop {
            if let Err(cancelled) = self.cancel.check() {
                out.flush().ok();
                return Err(fatal(anyhow::Error::new(cancelled).context(format!(
                    "the download of {name} was cancelled; the partial download is kept in {} \
                     and the next run resumes it",
                    partial.display()
                ))));
            }
            let n = match body.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    out.flush().ok();
                    return Err(Attempt::Interrupted(e.to_string()));
                }
            };
            if size.is_some_and(|s| *done + n as u64 > s) {
                drop(out);
                let _ = std::fs::remove_file(partial);
                *state = None;
                return Err(fatal(anyhow::anyhow!(
                    "{} sent more than the {} bytes of {name}: nothing was installed; run the \
                     command again",
                    host_of(&meta.download_url),
                    size.unwrap_or_default()
                )));
            }
            if let Err(e) = out.write_all(&buffer[..n]) {
                // The file may hold part of this chunk: hash it again next time.
                *state = None;
                return Err(fatal(anyhow::Error::new(e).context(format!(
                    "cannot write {} (is the disk full?)",
                    partial.display()
                ))));
            }
            hasher.update(&buffer[..n]);
            *done += n as u64;
            *received += n as u64;
            (self.progress)(name, *done, size);
        }
        out.flush().map_err(|e| fatal(e.into()))?;
        if size.is_some_and(|s| *done < s) {
            return Err(Attempt::Interrupted(format!(
                "the connection closed after {} bytes",
                *done
            )));
        }
        Ok(())
    }
}

enum Attempt {
    /// Worth another try (resuming): the connection dropped, a 5xx, a range mix-up.
    Interrupted(String),
    Fatal(anyhow::Error),
}

// ---------------------------------------------------------------------------
// HTTP

/// What a metadata request learnt about a file.
#[derive(Clone, Debug)]
struct Meta {
    /// Where the bytes are: the Hub URL (after relative redirects) for git
    /// files, the CDN's `Location` for LFS files.
    download_url: String,
    /// Whether `download_url` is on the Hub's own host (gets the token).
    send_auth: bool,
    digest: Option<Digest>,
    size: Option<u64>,
    commit: Option<String>,
    /// The repository id after a rename redirect, when it changed.
    moved_to: Option<String>,
}

#[derive(Debug)]
enum HubError {
    Network(String),
    Status {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    Protocol(String),
}

impl HubError {
    fn is_missing_entry(&self) -> bool {
        match self {
            HubError::Status {
                status: 404, code, ..
            } => !matches!(code.as_deref(), Some("RepoNotFound" | "RevisionNotFound")),
            _ => false,
        }
    }

    /// The error the user reads: what happened and what to do.
    fn explain(
        self,
        repo: &str,
        revision: &str,
        name: &str,
        url: &str,
        options: &FetchOptions,
    ) -> anyhow::Error {
        let endpoint = &options.endpoint;
        let said = |message: &Option<String>| {
            message
                .as_deref()
                .map(|m| format!(" (the Hub said: {m})"))
                .unwrap_or_default()
        };
        let missing = self.is_missing_entry();
        match self {
            HubError::Network(err) => anyhow::anyhow!(
                "cannot reach {} for {name} ({err}): check the network connection and run the \
                 command again, or set HF_ENDPOINT to a mirror",
                host_of(url)
            ),
            HubError::Protocol(err) => anyhow::anyhow!("{url}: {err}"),
            HubError::Status {
                status,
                code,
                message,
            } => {
                let code = code.as_deref();
                if code == Some("GatedRepo") {
                    return if options.token.is_some() {
                        anyhow::anyhow!(
                            "{repo} is a gated model and the token in HF_TOKEN (or the Hugging Face \
                             token file) has no access to it: open {endpoint}/{repo} with the \
                             account the token belongs to and accept the licence, then run the \
                             command again{}",
                            said(&message)
                        )
                    } else {
                        anyhow::anyhow!(
                            "{repo} is a gated model: open {endpoint}/{repo}, log in and accept its \
                             licence, then create a read token at {endpoint}/settings/tokens and set \
                             HF_TOKEN to it (or run `huggingface-cli login`){}",
                            said(&message)
                        )
                    };
                }
                if missing {
                    return FileMissing(format!(
                        "{name} does not exist in {repo} at revision {revision} ({url} answered \
                         404): check --repo and --revision{}",
                        said(&message)
                    ))
                    .into();
                }
                match (status, code) {
                    (401, _)
                        if message.as_deref()
                            == Some("Invalid credentials in Authorization header") =>
                    {
                        anyhow::anyhow!(
                            "the Hub rejected the token in HF_TOKEN (or the Hugging Face token \
                             file): it is invalid or expired; create a new one at \
                             {endpoint}/settings/tokens"
                        )
                    }
                    (404, Some("RevisionNotFound")) => anyhow::anyhow!(
                        "revision {revision} does not exist in {repo}: check --revision (a branch \
                         such as main, a tag, a commit id, or refs/pr/N){}",
                        said(&message)
                    ),
                    (401 | 404, _) => anyhow::anyhow!(
                        "repository {repo} was not found on {endpoint}: check --repo (e.g. \
                         {DEFAULT_REPO}). If it is private or gated, set HF_TOKEN to a token with \
                         access{}{}",
                        if options.token.is_some() {
                            " (the token sent has none)"
                        } else {
                            ""
                        },
                        said(&message)
                    ),
                    (403, _) => anyhow::anyhow!(
                        "access to {repo} is forbidden{}: check that your token (HF_TOKEN) has read \
                         access to it",
                        said(&message)
                    ),
                    (429, _) => anyhow::anyhow!(
                        "the Hub is rate-limiting requests (429): wait a minute and run the command \
                         again{}",
                        said(&message)
                    ),
                    (500..=599, _) => anyhow::anyhow!(
                        "{} answered {status}: the Hub may be down; run the command again later{}",
                        host_of(url),
                        said(&message)
                    ),
                    _ => anyhow::anyhow!("{url} answered {status}{}", said(&message)),
                }
            }
        }
    }
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HubError::Network(e) | HubError::Protocol(e) => f.write_str(e),
            HubError::Status { status, .. } => write!(f, "HTTP {status}"),
        }
    }
}

struct Hub {
    /// Follows no redirect: the metadata is on the Hub's own answer.
    meta: ureq::Agent,
    /// Follows the CDN's own redirects; ureq never forwards `Authorization`
    /// across redirects (its default `RedirectAuthHeaders::Never`).
    data: ureq::Agent,
    endpoint_origin: Option<(String, String)>,
    token: Option<String>,
}

impl Hub {
    fn new(options: &FetchOptions) -> anyhow::Result<Self> {
        let user_agent = format!("embedscope/{}", env!("CARGO_PKG_VERSION"));
        let endpoint_origin = origin(&options.endpoint);
        // HTTP(S)_PROXY from the environment, except for a mirror on this
        // machine (a loopback endpoint and its CDN are reached directly).
        let loopback = endpoint_origin.as_ref().is_some_and(|(_, authority)| {
            let host = authority
                .rsplit_once(':')
                .map_or(authority.as_str(), |(h, _)| h);
            host == "localhost"
                || host.trim_matches(['[', ']']) == "::1"
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        let proxy = if loopback {
            None
        } else {
            ureq::Proxy::try_from_env()
        };
        let meta = ureq::Agent::config_builder()
            .proxy(proxy.clone())
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(user_agent.as_str())
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let data = ureq::Agent::config_builder()
            .proxy(proxy)
            .http_status_as_error(false)
            .max_redirects(10)
            .user_agent(user_agent.as_str())
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // A stalled connection fails after a minute and is resumed.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Self {
            meta,
            data,
            endpoint_origin,
            token: options.token.clone(),
        })
    }

    /// The token, for URLs on the Hub's own scheme, host and port only.
    fn auth_for(&self, url: &str) -> Option<String> {
        let token = self.token.as_ref()?;
        (self.endpoint_origin.is_some() && origin(url) == self.endpoint_origin)
            .then(|| format!("Bearer {token}"))
    }

    /// `HEAD` without following redirects, except relative ones (a renamed
    /// repository), as huggingface_hub's `get_hf_file_metadata` does.
    fn head(&self, url: &str) -> Result<Meta, HubError> {
        let mut current = url.to_string();
        for _ in 0..8 {
            let mut request = self
                .meta
                .head(&current)
                .header("Accept-Encoding", "identity");
            if let Some(auth) = self.auth_for(&current) {
                request = request.header("Authorization", auth);
            }
            let response = request
                .call()
                .map_err(|e| HubError::Network(e.to_string()))?;
            let status = response.status().as_u16();
            let digest = header(&response, "x-linked-etag")
                .or_else(|| header(&response, "etag"))
                .and_then(|v| Digest::from_etag(&v));
            let commit = header(&response, "x-repo-commit")
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| is_commit(c));
            if (300..400).contains(&status) {
                let location = header(&response, "location").ok_or_else(|| {
                    HubError::Protocol(format!("answered {status} without a Location"))
                })?;
                if let Some(next) = resolve_relative(&current, &location) {
                    current = next;
                    continue;
                }
                // An absolute Location: the content lives elsewhere (LFS on a CDN).
                let download_url = if location.starts_with("//") {
                    format!("{}:{location}", scheme_of(&current))
                } else {
                    location
                };
                let size = header(&response, "x-linked-size").and_then(|v| v.trim().parse().ok());
                return Ok(Meta {
                    send_auth: self.auth_for(&download_url).is_some(),
                    download_url,
                    digest,
                    size,
                    commit,
                    moved_to: moved_repo(url, &current),
                });
            }
            if (200..300).contains(&status) {
                let size = header(&response, "x-linked-size")
                    .or_else(|| header(&response, "content-length"))
                    .and_then(|v| v.trim().parse().ok());
                return Ok(Meta {
                    send_auth: self.auth_for(&current).is_some(),
                    moved_to: moved_repo(url, &current),
                    download_url: current,
                    digest,
                    size,
                    commit,
                });
            }
            return Err(HubError::Status {
                status,
                code: header(&response, "x-error-code"),
                message: header(&response, "x-error-message"),
            });
        }
        Err(HubError::Protocol("too many redirects".into()))
    }

    fn get(
        &self,
        url: &str,
        auth: bool,
        from: u64,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut request = self.data.get(url).header("Accept-Encoding", "identity");
        if from > 0 {
            request = request.header("Range", format!("bytes={from}-"));
        }
        if auth && let Some(value) = self.auth_for(url) {
            request = request.header("Authorization", value);
        }
        request.call()
    }
}

fn header<B>(response: &ureq::http::Response<B>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `<endpoint>/<repo>/resolve/<revision>/<file>`, with the revision escaped
/// whole (`refs/pr/15` → `refs%2Fpr%2F15`) and the file path segment-wise, as
/// huggingface_hub's `hf_hub_url` quotes them.
pub fn file_url(endpoint: &str, repo: &str, revision: &str, file: &str) -> String {
    format!(
        "{}/{repo}/resolve/{}/{}",
        endpoint.trim_end_matches('/'),
        percent_encode(revision, false),
        percent_encode(file, true)
    )
}

fn percent_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// (scheme, host:port) with the default port made explicit, lower-cased.
fn origin(url: &str) -> Option<(String, String)> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some((scheme, format!("{host}:{port}")))
}

fn scheme_of(url: &str) -> &str {
    url.split_once("://").map(|(s, _)| s).unwrap_or("https")
}

fn host_of(url: &str) -> String {
    origin(url)
        .map(|(_, authority)| {
            authority
                .trim_end_matches(":443")
                .trim_end_matches(":80")
                .to_string()
        })
        .unwrap_or_else(|| url.to_string())
}

/// The URL a relative `Location` points at, or `None` when it is absolute
/// (has a scheme or starts with `//`).
fn resolve_relative(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.starts_with("//") {
        return None;
    }
    let has_scheme = location.split_once(':').is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if has_scheme {
        return None;
    }
    let (scheme, rest) = base.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if location.starts_with('/') {
        return Some(format!("{scheme}://{authority}{location}"));
    }
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Some(format!("{scheme}://{authority}{dir}{location}"))
}

/// The repository id in a `/<repo>/resolve/...` URL.
fn repo_in_url(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = &rest[rest.find('/')?..];
    let (repo, _) = path.split_once("/resolve/")?;
    let repo = repo.trim_matches('/');
    // A mirror may serve the Hub under a prefix: keep the last two segments.
    let segments: Vec<&str> = repo.split('/').collect();
    (segments.len() >= 2).then(|| segments[segments.len() - 2..].join("/"))
}

fn moved_repo(asked: &str, answered: &str) -> Option<String> {
    let before = repo_in_url(asked)?;
    let after = repo_in_url(answered)?;
    (before != after).then_some(after)
}

/// `Content-Range: bytes <start>-<end>/<total or *>`.
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes")?.trim();
    let (range, total) = spec.split_once('/')?;
    let (start, end) = range.trim().split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (start <= end && total.is_none_or(|t| end < t)).then_some((start, end, total))
}

pub fn is_commit(revision: &str) -> bool {
    revision.len() == 40
        && revision
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A relative path made only of normal components.
fn safe_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(PARTIAL_SUFFIX);
    target.with_file_name(name)
}

fn absent_key(commit: &str, name: &str) -> String {
    format!("{commit}:{name}")
}

// ---------------------------------------------------------------------------
// Hashing

#[derive(Clone, Debug, PartialEq, Eq)]
struct Hashes {
    size: u64,
    sha256: String,
    git_sha1: Option<String>,
}

impl Hashes {
    fn has(&self, digest: &Digest) -> bool {
        match digest {
            Digest::Sha256(h) => self.sha256 == *h,
            Digest::GitBlobSha1(h) => self.git_sha1.as_deref() == Some(h),
        }
    }
}

/// SHA-256 (and the git blob SHA-1 when `git`) of a file, in one pass.
fn hash_file(path: &Path, git: bool) -> anyhow::Result<Hashes> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let size = file.metadata()?.len();
    let mut sha256 = Sha256::new();
    let mut sha1 = git.then(|| {
        let mut h = Sha1::new();
        h.update(format!("blob {size}\0").as_bytes());
        h
    });
    let mut buffer = vec![0u8; CHUNK];
    let mut read = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        sha256.update(&buffer[..n]);
        if let Some(h) = &mut sha1 {
            h.update(&buffer[..n]);
        }
        read += n as u64;
    }
    anyhow::ensure!(
        read == size,
        "{} changed while it was being read",
        path.display()
    );
    Ok(Hashes {
        size,
        sha256: hex(&sha256.finalize()),
        git_sha1: sha1.map(|h| hex(&h.finalize())),
    })
}

/// The git blob SHA-1 git and the Hub use as a file's id: `sha1("blob <len>\0" + bytes)`.
pub fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex(&h.finalize())
}

fn git_blob_sha1_of(path: &Path) -> anyhow::Result<String> {
    Ok(hash_file(path, true)?.git_sha1.expect("asked for"))
}

/// The SHA-256 state of the first `len` bytes of `path`.
fn hash_prefix(path: &Path, len: u64) -> anyhow::Result<(Sha256, u64)> {
    let mut hasher = Sha256::new();
    if len > 0 {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let copied = std::io::copy(&mut file.take(len), &mut hasher)?;
        anyhow::ensure!(
            copied == len,
            "{} shrank while it was being read",
            path.display()
        );
    }
    Ok((hasher, len))
}

pub fn sha256_of(path: &Path) -> anyhow::Result<String> {
    Ok(hash_file(path, false)?.sha256)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn truncate(path: &Path) -> anyhow::Result<()> {
    std::fs::File::create(path)
        .map(|_| ())
        .with_context(|| format!("cannot rewrite {}", path.display()))
}

fn modified(path: &Path) -> Option<(u64, u32)> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some((d.as_secs(), d.subsec_nanos()))
}

// ---------------------------------------------------------------------------
// The verified-files manifest and the folder lock

/// `.embedscope-fetch.json`: what was verified, so the next run can trust a
/// file that has not changed since (same size and modification time).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Manifest {
    repo: Option<String>,
    #[serde(default)]
    files: BTreeMap<String, Entry>,
    /// `<commit>:<file>` the Hub said does not exist (commits do not change).
    #[serde(default)]
    absent: std::collections::BTreeSet<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    revision: String,
    commit: Option<String>,
    size: u64,
    modified: Option<(u64, u32)>,
    sha256: String,
    git_sha1: Option<String>,
}

impl Entry {
    /// The file on disk is still the one that was verified.
    fn describes(&self, path: &Path) -> bool {
        file_len(path) == self.size && path.is_file() && modified(path) == self.modified
    }

    fn has(&self, digest: &Digest) -> bool {
        self.hashes().has(digest)
    }

    fn hashes(&self) -> Hashes {
        Hashes {
            size: self.size,
            sha256: self.sha256.clone(),
            git_sha1: self.git_sha1.clone(),
        }
    }

    fn digest(&self) -> Digest {
        match &self.git_sha1 {
            Some(h) => Digest::GitBlobSha1(h.clone()),
            None => Digest::Sha256(self.sha256.clone()),
        }
    }
}

impl Manifest {
    fn load(dir: &Path) -> Self {
        std::fs::read(dir.join(MANIFEST))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Written beside and renamed, so a crash never leaves half a manifest.
    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(MANIFEST);
        let temporary = dir.join(format!("{MANIFEST}.tmp"));
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Test helper for the resolver: marks `dir` as fetched from `repo`.
#[cfg(test)]
pub(crate) fn write_test_manifest(dir: &Path, repo: &str) {
    Manifest {
        repo: Some(repo.into()),
        ..Manifest::default()
    }
    .save(dir)
    .unwrap();
}

/// Two fetches into one folder would write the same partial files.
fn lock_folder(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `embedscope model fetch` is downloading into {}: wait for it to finish",
            dir.display()
        ),
        // A file system without locks: go on unguarded.
        Err(std::fs::TryLockError::Error(_)) => Ok(file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_read_as_huggingface_hub_normalises_them() {
        let sha = "99D28A652E6EC46629AB7047A0AC82C69B1FE11E0CE672C43AF65D3A9A3FC05D";
        assert_eq!(
            Digest::from_etag(&format!("\"{sha}\"")),
            Some(Digest::Sha256(sha.to_ascii_lowercase()))
        );
        let git = "3b18e512dba79e4c8300dd08aeb37f8e728b8dad";
        assert_eq!(
            Digest::from_etag(&format!("W/\"{git}\"")),
            Some(Digest::GitBlobSha1(git.into()))
        );
        // A CDN's own tags say nothing about the content.
        for other in [
            "\"d41d8cd98f00b204e9800998ecf8427e\"",
            "\"d41d8cd98f00b204e9800998ecf8427e-12\"",
            "",
            "\"zz18e512dba79e4c8300dd08aeb37f8e728b8dad\"",
        ] {
            assert_eq!(Digest::from_etag(other), None, "{other}");
        }
    }

    #[test]
    fn git_blob_sha1_matches_git_hash_object() {
        // `printf 'hello world\n' | git hash-object --stdin` and the empty blob.
        assert_eq!(
            git_blob_sha1(b"hello world\n"),
            "3b18e512dba79e4c8300dd08aeb37f8e728b8dad"
        );
        assert_eq!(
            git_blob_sha1(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello world\n").unwrap();
        let h = hash_file(&path, true).unwrap();
        assert_eq!(
            h.git_sha1.as_deref(),
            Some("3b18e512dba79e4c8300dd08aeb37f8e728b8dad")
        );
        assert_eq!(
            h.sha256,
            "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
        );
    }

    #[test]
    fn urls_quote_the_revision_whole_and_the_file_per_segment() {
        assert_eq!(
            file_url(
                "https://huggingface.co/",
                DEFAULT_REPO,
                "refs/pr/15",
                "model.safetensors"
            ),
            "https://huggingface.co/openai/clip-vit-base-patch32/resolve/refs%2Fpr%2F15/model.safetensors"
        );
        assert_eq!(
            file_url("http://m", "a/b", "v 1", "sub dir/x+y.json"),
            "http://m/a/b/resolve/v%201/sub%20dir/x%2By.json"
        );
    }

    #[test]
    fn only_relative_redirects_are_resolved() {
        let base = "https://huggingface.co/old/name/resolve/main/config.json?x=1";
        assert_eq!(
            resolve_relative(base, "/new/name/resolve/main/config.json").as_deref(),
            Some("https://huggingface.co/new/name/resolve/main/config.json")
        );
        assert_eq!(
            resolve_relative(base, "other.json").as_deref(),
            Some("https://huggingface.co/old/name/resolve/main/other.json")
        );
        for absolute in [
            "https://cdn-lfs.hf.co/repos/ab/cd?sig=1",
            "http://127.0.0.2:9/x",
            "//cdn.example/x",
        ] {
            assert_eq!(resolve_relative(base, absolute), None, "{absolute}");
        }
        assert_eq!(
            moved_repo(
                base,
                "https://huggingface.co/new/name/resolve/main/config.json"
            )
            .as_deref(),
            Some("new/name")
        );
        assert_eq!(moved_repo(base, base), None);
    }

    #[test]
    fn the_token_goes_to_the_hub_origin_only() {
        let mut options = FetchOptions::endpoint("https://huggingface.co");
        options.token = Some("hf_x".into());
        let hub = Hub::new(&options).unwrap();
        assert_eq!(
            hub.auth_for("https://huggingface.co/a/b/resolve/main/c")
                .as_deref(),
            Some("Bearer hf_x")
        );
        assert_eq!(
            hub.auth_for("https://huggingface.co:443/x").as_deref(),
            Some("Bearer hf_x")
        );
        for elsewhere in [
            "https://cdn-lfs.huggingface.co/x",
            "http://huggingface.co/x",
            "https://huggingface.co:8443/x",
            "https://huggingface.co.evil.example/x",
        ] {
            assert_eq!(hub.auth_for(elsewhere), None, "{elsewhere}");
        }
    }

    #[test]
    fn content_range_is_parsed_strictly() {
        assert_eq!(
            parse_content_range("bytes 10-19/20"),
            Some((10, 19, Some(20)))
        );
        assert_eq!(parse_content_range("bytes 10-19/*"), Some((10, 19, None)));
        assert_eq!(parse_content_range("bytes 10-20/20"), None);
        assert_eq!(parse_content_range("bytes */20"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn names_and_revisions_are_checked() {
        assert!(safe_relative("model.safetensors"));
        assert!(safe_relative("sub/model-00001-of-00002.safetensors"));
        for bad in ["", "../x", "/etc/passwd", "a/../../b", "a\\b", "./x"] {
            assert!(!safe_relative(bad), "{bad}");
        }
        assert!(is_commit(DEFAULT_REVISION));
        assert!(!is_commit("main"));
        assert!(!is_commit(&DEFAULT_REVISION.to_uppercase()));
        assert!(ModelSource::for_repo("not a repo", None).is_err());
        assert!(ModelSource::for_repo("a/b", Some("../../x")).is_err());
    }

    #[test]
    fn the_default_source_takes_pinned_weights_from_the_safetensors_pr() {
        let source = ModelSource::for_repo(DEFAULT_REPO, None).unwrap();
        assert_eq!(source.revision, DEFAULT_REVISION);
        let weights = source.files.iter().find(|f| f.name == WEIGHTS).unwrap();
        assert_eq!(weights.revision.as_deref(), Some(DEFAULT_WEIGHTS_REVISION));
        let pin = weights.pin.as_ref().unwrap();
        assert_eq!(pin.size, Some(605_157_884));
        assert!(matches!(pin.digest, Digest::Sha256(_)));
        assert!(
            source
                .files
                .iter()
                .filter(|f| f.name != WEIGHTS)
                .all(|f| f.pin.is_none())
        );
        // Another revision of the default repository: no pins, everything from it.
        let main = ModelSource::for_repo(DEFAULT_REPO, Some("main")).unwrap();
        assert!(
            main.files
                .iter()
                .all(|f| f.pin.is_none() && f.revision.is_none())
        );
        assert_eq!(main.revision, "main");
        // The pin table is keyed by (repo, revision, file): asking for the PR
        // ref by name gets the pin too.
        let pr = ModelSource::for_repo(DEFAULT_REPO, Some(DEFAULT_WEIGHTS_REVISION)).unwrap();
        assert_eq!(
            pr.files.iter().find(|f| f.name == WEIGHTS).unwrap().pin,
            weights.pin
        );
        let b16 = ModelSource::for_repo("openai/clip-vit-base-patch16", None).unwrap();
        assert_eq!(b16.revision, "main");
        let weights = b16.files.iter().find(|f| f.name == WEIGHTS).unwrap();
        assert_eq!(weights.revision.as_deref(), Some("refs/pr/4"));
        assert_eq!(weights.pin, None);
        let laion = ModelSource::for_repo("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", None).unwrap();
        assert!(
            laion
                .files
                .iter()
                .all(|f| f.revision.is_none() && f.pin.is_none())
        );
    }

    #[test]
    fn a_second_fetch_into_the_same_folder_is_refused_while_the_first_runs() {
        let dir = tempfile::tempdir().unwrap();
        let _first = lock_folder(dir.path()).unwrap();
        let err = lock_folder(dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("another `embedscope model fetch`"),
            "{err:#}"
        );
    }

    #[test]
    fn manifest_entries_go_stale_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{}").unwrap();
        let h = hash_file(&path, true).unwrap();
        let entry = Entry {
            revision: DEFAULT_REVISION.into(),
            commit: Some(DEFAULT_REVISION.into()),
            size: h.size,
            modified: modified(&path),
            sha256: h.sha256.clone(),
            git_sha1: h.git_sha1.clone(),
        };
        assert!(entry.describes(&path));
        assert!(entry.has(&Digest::GitBlobSha1(git_blob_sha1(b"{}"))));
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "{ }").unwrap();
        assert!(!entry.describes(&path));
    }
}
