//! `embedscope model fetch`: download a CLIP model folder from the Hugging
//! Face Hub into the user's cache, with progress, checking every file's SHA-256.
//!
//! Files are downloaded at a pinned revision (a commit id, so the bytes cannot
//! change under us), streamed to a temporary name in the target folder, hashed
//! while they arrive, and renamed into place only when the hash matches: an
//! interrupted or tampered download never leaves a file that looks complete.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::progress::CancelToken;

/// One file of a model folder.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    /// Lower-case hex SHA-256. `None`: no pin is known, and the hash the Hub
    /// advertises for the file (its `X-Linked-Etag`/`ETag`, which for Git-LFS
    /// files is the SHA-256 of the content) is checked instead.
    pub sha256: Option<String>,
}

/// Where a model folder comes from.
#[derive(Clone, Debug)]
pub struct ModelSource {
    /// Hub repository, e.g. `openai/clip-vit-base-patch32`.
    pub repo: String,
    /// A commit id of that repository.
    pub revision: String,
    pub files: Vec<SourceFile>,
}

/// The model `--embedder clip` uses by default.
pub const DEFAULT_MODEL_NAME: &str = "clip-vit-base-patch32";

impl ModelSource {
    /// `openai/clip-vit-base-patch32` at a fixed commit.
    ///
    /// The SHA-256 of `model.safetensors` at this commit could not be read on
    /// the machine this was written on (the Hub is unreachable from it), so it
    /// is checked against the Hub's own LFS hash; set a pin here once known.
    pub fn default_clip() -> Self {
        let file = |name: &str| SourceFile {
            name: name.into(),
            sha256: None,
        };
        Self {
            repo: "openai/clip-vit-base-patch32".into(),
            revision: "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268".into(),
            files: vec![
                file("config.json"),
                file("preprocessor_config.json"),
                file("tokenizer.json"),
                file("model.safetensors"),
            ],
        }
    }

    fn url(&self, endpoint: &str, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            endpoint.trim_end_matches('/'),
            self.repo,
            self.revision,
            file
        )
    }
}

/// The Hub's address: `HF_ENDPOINT` (as Hugging Face's own tools read it, for
/// mirrors), else huggingface.co.
pub fn hub_endpoint() -> String {
    std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into())
}

/// Where fetched models live: `<cache>/models/<name>`.
pub fn default_model_dir() -> anyhow::Result<PathBuf> {
    Ok(crate::cache::default_cache_dir()?
        .join("models")
        .join(DEFAULT_MODEL_NAME))
}

/// `dir` if it holds a complete model folder.
pub fn installed_model(dir: &Path) -> Option<PathBuf> {
    let complete = ["config.json", "model.safetensors"]
        .iter()
        .all(|f| dir.join(f).is_file());
    complete.then(|| dir.to_path_buf())
}

/// Download progress: file name, bytes so far, total bytes if known.
pub type FetchProgress<'a> = &'a dyn Fn(&str, u64, Option<u64>);

/// Downloads every file of `source` from `endpoint` into `dir`. Files already
/// there with the right hash are kept.
pub fn fetch_model(
    source: &ModelSource,
    endpoint: &str,
    dir: &Path,
    progress: FetchProgress,
    cancel: &CancelToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for file in &source.files {
        let target = dir.join(&file.name);
        if let (Some(pin), true) = (&file.sha256, target.is_file())
            && sha256_of(&target)? == *pin
        {
            progress(&file.name, 1, Some(1));
            continue;
        }
        let url = source.url(endpoint, &file.name);
        let response = agent.get(&url).call().with_context(|| {
            format!("cannot reach {url}: check the network, or set HF_ENDPOINT to a mirror")
        })?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "{url} answered {status}: the file is not available at revision {}",
            source.revision
        );
        let advertised = ["x-linked-etag", "etag"]
            .iter()
            .find_map(|h| response.headers().get(*h))
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.trim_start_matches("W/")
                    .trim_matches('"')
                    .to_ascii_lowercase()
            })
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
        let expected = match (&file.sha256, advertised) {
            (Some(pin), _) => pin.clone(),
            (None, Some(hub)) => hub,
            (None, None) => anyhow::bail!(
                "{url} gave no SHA-256 to check the download against, and none is pinned; \
                 refusing to install an unverified file"
            ),
        };
        let total = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let partial = dir.join(format!(".{}.part-{}", file.name, std::process::id()));
        let result = download_to(
            response.into_body().into_reader(),
            &partial,
            &file.name,
            total,
            progress,
            cancel,
        )
        .and_then(|actual| {
            anyhow::ensure!(
                actual == expected,
                "{} from {url} has SHA-256 {actual}, expected {expected}: the download was \
                 corrupted or the file changed; nothing was installed",
                file.name
            );
            std::fs::rename(&partial, &target)
                .with_context(|| format!("cannot move the download into {}", target.display()))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result?;
    }
    Ok(())
}

fn download_to(
    mut body: impl Read,
    partial: &Path,
    name: &str,
    total: Option<u64>,
    progress: FetchProgress,
    cancel: &CancelToken,
) -> anyhow::Result<String> {
    let mut out = std::fs::File::create(partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        cancel.check()?;
        let n = body
            .read(&mut buffer)
            .context("the download was interrupted")?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])
            .with_context(|| format!("cannot write {}", partial.display()))?;
        done += n as u64;
        progress(name, done, total);
    }
    if let Some(total) = total {
        anyhow::ensure!(
            done == total,
            "the download of {name} stopped at {done} of {total} bytes"
        );
    }
    out.sync_all()?;
    Ok(hex(&hasher.finalize()))
}

pub fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// A tiny HTTP/1.1 server on 127.0.0.1 serving `root` at any
    /// `/…/resolve/<rev>/<file>` path, one connection at a time.
    fn serve(root: PathBuf, advertise: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                        break;
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let name = path.rsplit('/').next().unwrap_or("");
                match std::fs::read(root.join(name)) {
                    Ok(body) => {
                        let etag = if advertise {
                            format!("X-Linked-Etag: \"{}\"\r\n", hex(&Sha256::digest(&body)))
                        } else {
                            String::new()
                        };
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{etag}Connection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(&body);
                    }
                    Err(_) => {
                        let _ = stream.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                }
            }
        });
        address
    }

    fn fetch_quietly(source: &ModelSource, endpoint: &str, dir: &Path) -> anyhow::Result<()> {
        fetch_model(source, endpoint, dir, &|_, _, _| {}, &CancelToken::new())
    }

    fn fixture_source() -> (PathBuf, ModelSource) {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures.join("manifest.json")).unwrap())
                .unwrap();
        let files = [
            "config.json",
            "preprocessor_config.json",
            "tokenizer.json",
            "model.safetensors",
        ]
        .iter()
        .map(|name| {
            // The pins come from the fixture manifest, written by the generator.
            let sha = manifest["files"][format!("tiny/{name}")]["sha256"]
                .as_str()
                .unwrap_or_else(|| panic!("manifest has no sha256 for tiny/{name}"))
                .to_string();
            SourceFile {
                name: name.to_string(),
                sha256: Some(sha),
            }
        })
        .collect();
        (
            fixtures.join("tiny"),
            ModelSource {
                repo: "test/tiny-clip".into(),
                revision: "0123456789abcdef".into(),
                files,
            },
        )
    }

    #[test]
    fn fetches_a_model_folder_with_progress_and_checks_hashes() {
        let (root, source) = fixture_source();
        let endpoint = serve(root.clone(), false);
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("models/tiny");
        let seen = std::sync::Mutex::new(Vec::new());
        fetch_model(
            &source,
            &endpoint,
            &dir,
            &|name, done, total| seen.lock().unwrap().push((name.to_string(), done, total)),
            &CancelToken::new(),
        )
        .unwrap();
        for file in &source.files {
            assert_eq!(
                std::fs::read(dir.join(&file.name)).unwrap(),
                std::fs::read(root.join(&file.name)).unwrap()
            );
        }
        let seen = seen.into_inner().unwrap();
        let weights = std::fs::metadata(root.join("model.safetensors"))
            .unwrap()
            .len();
        assert!(seen.contains(&("model.safetensors".into(), weights, Some(weights))));
        assert!(installed_model(&dir).is_some());
        // Nothing but the four files: no temporary leftovers.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
        // The folder loads as a model.
        crate::embed::clip::ModelDir::open(&dir).unwrap();
    }

    #[test]
    fn a_wrong_hash_installs_nothing_and_says_why() {
        let (root, mut source) = fixture_source();
        source.files[3].sha256 = Some("0".repeat(64));
        let endpoint = serve(root, false);
        let out = tempfile::tempdir().unwrap();
        let err = fetch_quietly(&source, &endpoint, out.path()).unwrap_err();
        assert!(format!("{err:#}").contains("expected 0000"), "{err:#}");
        assert!(!out.path().join("model.safetensors").exists());
        let leftovers: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains(".part"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn without_a_pin_the_hub_hash_is_checked_and_its_absence_refused() {
        let (root, mut source) = fixture_source();
        for file in &mut source.files {
            file.sha256 = None;
        }
        let out = tempfile::tempdir().unwrap();
        let endpoint = serve(root.clone(), true);
        fetch_quietly(&source, &endpoint, out.path()).unwrap();
        assert!(installed_model(out.path()).is_some());

        let bare = serve(root, false);
        let out = tempfile::tempdir().unwrap();
        let err = fetch_quietly(&source, &bare, out.path()).unwrap_err();
        assert!(format!("{err:#}").contains("unverified"), "{err:#}");
    }

    #[test]
    fn a_missing_file_names_the_url_and_status() {
        let (root, mut source) = fixture_source();
        source.files[0].name = "no-such-file.json".into();
        let endpoint = serve(root, false);
        let out = tempfile::tempdir().unwrap();
        let err = fetch_quietly(&source, &endpoint, out.path()).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("no-such-file.json") && message.contains("404"),
            "{message}"
        );
    }
}
