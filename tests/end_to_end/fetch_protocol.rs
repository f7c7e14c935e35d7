//! `embedscope model fetch` against a local server that answers like the
//! Hugging Face Hub and its CDN (tests/fetch_support). Declared from the test
//! binary's root (`mod fetch_support; mod fetch_protocol;`).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::fetch_support::{self, FakeHub, File, Server, git, git_sha1_hex, lfs, sha256_hex};
use embedscope::embed::clip::fetch::{
    self, Digest, FetchOptions, FetchReport, FileKind, ModelSource, Obtained, Pin, SourceFile,
};
use embedscope::embed::clip::hub_cache;
use embedscope::progress::{CancelToken, is_cancelled};

const REPO: &str = "test-org/tiny-clip";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const COMMIT2: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// Deterministic bytes that do not compress or repeat.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A CLIP-shaped repository: three git files and 2.5 MB of LFS weights
/// (bigger than the 1 MiB read chunk, so progress and resume have steps).
fn clip_files(seed: u64) -> Vec<File> {
    vec![
        git("config.json", format!("{{\"seed\":{seed}}}").as_bytes()),
        git("preprocessor_config.json", b"{\"crop_size\":224}"),
        git("tokenizer.json", &noise(40_000, seed + 1)),
        lfs("model.safetensors", &noise(2_500_000, seed + 2)),
    ]
}

fn options(hub: &FakeHub) -> FetchOptions {
    FetchOptions {
        attempts: 3,
        retry_pause: Duration::from_millis(10),
        ..FetchOptions::endpoint(&hub.endpoint)
    }
}

fn source(repo: &str, revision: &str) -> ModelSource {
    ModelSource::for_repo(repo, Some(revision)).unwrap()
}

fn run(source: &ModelSource, options: &FetchOptions, dir: &Path) -> anyhow::Result<FetchReport> {
    fetch::fetch_model(source, options, dir, &|_, _, _| {}, &CancelToken::new())
}

fn assert_installed(dir: &Path, files: &[File]) {
    for file in files {
        assert_eq!(
            std::fs::read(dir.join(&file.name)).unwrap(),
            file.bytes,
            "{}",
            file.name
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".incomplete") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn error_of(result: anyhow::Result<FetchReport>) -> String {
    format!("{:#}", result.expect_err("the fetch should fail"))
}

#[test]
fn a_whole_fetch_follows_the_hub_protocol() {
    let hub = FakeHub::start();
    assert!(
        hub.cdn.starts_with("http://127.0.0.2:") || !cfg!(target_os = "linux"),
        "the CDN must be on another host: {}",
        hub.cdn
    );
    let files = clip_files(1);
    hub.add_commit(REPO, COMMIT, &files);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("models/tiny-clip");
    let mut options = options(&hub);
    options.token = Some("hf_secret".into());
    let seen = Mutex::new(Vec::new());
    let report = fetch::fetch_model(
        &source(REPO, COMMIT),
        &options,
        &dir,
        &|name, done, total| seen.lock().unwrap().push((name.to_string(), done, total)),
        &CancelToken::new(),
    )
    .unwrap();

    assert_installed(&dir, &files);
    assert!(fetch::installed_model(&dir).is_some());
    assert_eq!(fetch::installed_repo(&dir).as_deref(), Some(REPO));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(
        report.downloaded_bytes(),
        files.iter().map(|f| f.bytes.len() as u64).sum::<u64>()
    );
    // Each file was checked against what the Hub advertises: git files by git
    // blob SHA-1 (ETag), the LFS file by SHA-256 (X-Linked-Etag).
    for (file, fetched) in files.iter().zip(&report.files) {
        assert_eq!(fetched.name, file.name);
        assert_eq!(fetched.how, Obtained::Downloaded { resumed_from: 0 });
        assert_eq!(fetched.commit.as_deref(), Some(COMMIT));
        let want = if file.lfs {
            Digest::Sha256(sha256_hex(&file.bytes))
        } else {
            Digest::GitBlobSha1(git_sha1_hex(&file.bytes))
        };
        assert_eq!(fetched.checked, want, "{}", file.name);
    }
    // Progress: the weights' total and final position, in steps.
    let seen = seen.into_inner().unwrap();
    let weights: Vec<_> = seen
        .iter()
        .filter(|(n, _, _)| n == "model.safetensors")
        .collect();
    assert!(weights.len() >= 3, "{weights:?}");
    assert_eq!(weights.last().unwrap().1, 2_500_000);
    assert!(weights.iter().all(|(_, _, t)| *t == Some(2_500_000)));

    // The wire: a HEAD (never following the CDN redirect) then a GET per file;
    // the token went to the Hub only, never to the CDN.
    let requests = hub.requests();
    let hub_heads: Vec<_> = requests
        .iter()
        .filter(|r| r.server == Server::Hub && r.method == "HEAD")
        .collect();
    assert_eq!(hub_heads.len(), 4);
    assert!(
        hub_heads
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer hf_secret"))
    );
    assert!(
        hub_heads
            .iter()
            .all(|r| r.header("accept-encoding") == Some("identity"))
    );
    let cdn: Vec<_> = requests
        .iter()
        .filter(|r| r.server == Server::Cdn)
        .collect();
    assert_eq!(cdn.len(), 1, "only the weights come from the CDN: {cdn:?}");
    assert_eq!(cdn[0].method, "GET");
    assert_eq!(
        cdn[0].header("authorization"),
        None,
        "the token leaked to the CDN"
    );
    assert!(cdn[0].path.contains(&sha256_hex(&files[3].bytes)));
    // Git files are read from the Hub itself, with the token.
    assert_eq!(hub.count(Server::Hub, "GET"), 3);
}

#[test]
fn a_second_run_downloads_nothing_and_needs_no_network_at_a_commit() {
    let hub = FakeHub::start();
    let files = clip_files(2);
    hub.add_commit(REPO, COMMIT, &files);
    let out = tempfile::tempdir().unwrap();
    let src = source(REPO, COMMIT);
    run(&src, &options(&hub), out.path()).unwrap();

    hub.clear_requests();
    let report = run(&src, &options(&hub), out.path()).unwrap();
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
    assert!(report.files.iter().all(|f| f.how == Obtained::AlreadyThere));
    assert_eq!(report.downloaded_bytes(), 0);

    // With the server gone entirely.
    let mut gone = options(&hub);
    gone.endpoint = "http://127.0.0.1:9".into();
    run(&src, &gone, out.path()).unwrap();
    assert_installed(out.path(), &files);

    // A file changed on disk is verified again (and replaced).
    std::fs::write(out.path().join("config.json"), b"{\"edited\":1}").unwrap();
    hub.clear_requests();
    let report = run(&src, &options(&hub), out.path()).unwrap();
    assert_installed(out.path(), &files);
    assert_eq!(hub.count(Server::Hub, "GET"), 1, "{:?}", hub.requests());
    assert_eq!(hub.count(Server::Cdn, "GET"), 0);
    assert!(matches!(report.files[0].how, Obtained::Downloaded { .. }));
}

#[test]
fn a_branch_is_resolved_to_a_commit_and_rechecked_cheaply() {
    let hub = FakeHub::start();
    let files = clip_files(3);
    hub.add_commit(REPO, COMMIT, &files);
    let out = tempfile::tempdir().unwrap();
    let src = source(REPO, "main");
    let report = run(&src, &options(&hub), out.path()).unwrap();
    assert_eq!(
        report.resolved,
        vec![("main".to_string(), COMMIT.to_string())]
    );
    // After the first answer, files are asked for at the commit, not at `main`.
    let paths: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.server == Server::Hub && r.method == "HEAD")
        .map(|r| r.path)
        .collect();
    assert!(paths[0].contains("/resolve/main/"), "{paths:?}");
    assert!(
        paths[1..]
            .iter()
            .all(|p| p.contains(&format!("/resolve/{COMMIT}/"))),
        "{paths:?}"
    );

    // Second run: one HEAD to learn where main is now, nothing downloaded.
    hub.clear_requests();
    let report = run(&src, &options(&hub), out.path()).unwrap();
    assert_eq!(hub.count(Server::Hub, "HEAD"), 1, "{:?}", hub.requests());
    assert_eq!(
        hub.count(Server::Hub, "GET") + hub.count(Server::Cdn, "GET"),
        0
    );
    assert_eq!(report.downloaded_bytes(), 0);

    // main moves: only what changed is downloaded.
    let mut next = files.clone();
    next[0] = git("config.json", b"{\"seed\":\"new\"}");
    hub.add_commit(REPO, COMMIT2, &next);
    hub.clear_requests();
    let report = run(&src, &options(&hub), out.path()).unwrap();
    assert_eq!(
        report.resolved,
        vec![("main".to_string(), COMMIT2.to_string())]
    );
    assert_installed(out.path(), &next);
    assert_eq!(hub.count(Server::Hub, "GET"), 1);
    assert_eq!(hub.count(Server::Cdn, "GET"), 0);

    // Hub unreachable on a branch: keep what is installed, and say so.
    let mut gone = options(&hub);
    gone.endpoint = "http://127.0.0.1:9".into();
    let report = run(&src, &gone, out.path()).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("kept the installed copy")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn an_interrupted_download_resumes_with_range() {
    let hub = FakeHub::start();
    let files = clip_files(4);
    hub.add_commit(REPO, COMMIT, &files);
    hub.set(|k| {
        k.cut = Some(fetch_support::Cut {
            file: "model.safetensors".into(),
            after: 1_100_000,
            times: 1,
        })
    });
    let out = tempfile::tempdir().unwrap();
    let report = run(&source(REPO, COMMIT), &options(&hub), out.path()).unwrap();
    assert_installed(out.path(), &files);
    let cdn: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.server == Server::Cdn)
        .collect();
    assert_eq!(cdn.len(), 2, "{cdn:?}");
    assert_eq!(cdn[0].header("range"), None);
    let range = cdn[1].header("range").expect("the retry asks for the rest");
    let from: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(from > 0 && from <= 1_100_000, "{range}");
    assert!(report.files.iter().any(|f| f.name == "model.safetensors"));
}

#[test]
fn a_failed_run_keeps_the_partial_and_the_next_run_resumes_it() {
    let hub = FakeHub::start();
    let files = clip_files(5);
    hub.add_commit(REPO, COMMIT, &files);
    hub.set(|k| {
        k.cut = Some(fetch_support::Cut {
            file: "model.safetensors".into(),
            after: 700_000,
            times: 100,
        })
    });
    let out = tempfile::tempdir().unwrap();
    let mut opts = options(&hub);
    opts.attempts = 1;
    let message = error_of(run(&source(REPO, COMMIT), &opts, out.path()));
    assert!(message.contains("partial download is kept"), "{message}");
    assert!(message.contains("run the command again"), "{message}");
    let partial = out.path().join("model.safetensors.incomplete");
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert_eq!(kept, 700_000);
    assert!(!out.path().join("model.safetensors").exists());

    hub.set(|k| k.cut = None);
    hub.clear_requests();
    let report = run(&source(REPO, COMMIT), &options(&hub), out.path()).unwrap();
    assert_installed(out.path(), &files);
    let cdn: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.server == Server::Cdn)
        .collect();
    assert_eq!(cdn.len(), 1);
    assert_eq!(cdn[0].header("range"), Some("bytes=700000-"));
    let weights = report
        .files
        .iter()
        .find(|f| f.name == "model.safetensors")
        .unwrap();
    assert_eq!(
        weights.how,
        Obtained::Downloaded {
            resumed_from: 700_000
        }
    );
    assert_eq!(report.downloaded_bytes(), 2_500_000 - 700_000);
}

#[test]
fn a_server_that_ignores_range_makes_the_download_restart() {
    let hub = FakeHub::start();
    let files = clip_files(6);
    hub.add_commit(REPO, COMMIT, &files);
    hub.set(|k| k.ignore_range = true);
    let out = tempfile::tempdir().unwrap();
    // A partial left by an earlier run: the first 600 kB, correct.
    std::fs::write(
        out.path().join("model.safetensors.incomplete"),
        &files[3].bytes[..600_000],
    )
    .unwrap();
    let report = run(&source(REPO, COMMIT), &options(&hub), out.path()).unwrap();
    assert_installed(out.path(), &files);
    let cdn: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.server == Server::Cdn)
        .collect();
    assert_eq!(cdn.len(), 1, "{cdn:?}");
    assert_eq!(cdn[0].header("range"), Some("bytes=600000-"));
    // The 200 carried the whole file, which replaced the partial.
    assert_eq!(
        report.files[3].how,
        Obtained::Downloaded { resumed_from: 0 }
    );
    assert_eq!(
        report.downloaded_bytes(),
        files.iter().map(|f| f.bytes.len() as u64).sum::<u64>()
    );
}

#[test]
fn a_range_answer_that_starts_elsewhere_is_dropped() {
    let hub = FakeHub::start();
    let files = clip_files(6);
    hub.add_commit(REPO, COMMIT, &files);
    // The first download stops at 700 kB; the resume gets bytes from 0.
    hub.set(|k| {
        k.wrong_content_range = true;
        k.cut = Some(fetch_support::Cut {
            file: "model.safetensors".into(),
            after: 700_000,
            times: 1,
        });
    });
    let out = tempfile::tempdir().unwrap();
    run(&source(REPO, COMMIT), &options(&hub), out.path()).unwrap();
    assert_installed(out.path(), &files);
    let cdn: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.server == Server::Cdn)
        .collect();
    let ranges: Vec<_> = cdn.iter().map(|r| r.header("range")).collect();
    assert_eq!(ranges, [None, Some("bytes=700000-"), None], "{cdn:?}");
}

#[test]
fn a_stale_partial_from_other_content_is_dropped_and_fetched_afresh() {
    let hub = FakeHub::start();
    let files = clip_files(7);
    hub.add_commit(REPO, COMMIT, &files);
    let out = tempfile::tempdir().unwrap();
    std::fs::write(
        out.path().join("model.safetensors.incomplete"),
        noise(900_000, 99),
    )
    .unwrap();
    let report = run(&source(REPO, COMMIT), &options(&hub), out.path()).unwrap();
    assert_installed(out.path(), &files);
    let weights = report
        .files
        .iter()
        .find(|f| f.name == "model.safetensors")
        .unwrap();
    assert_eq!(weights.how, Obtained::Downloaded { resumed_from: 0 });
}

#[test]
fn a_wrong_body_installs_nothing() {
    for bad in ["model.safetensors", "tokenizer.json"] {
        let hub = FakeHub::start();
        let files = clip_files(8);
        hub.add_commit(REPO, COMMIT, &files);
        hub.set(|k| {
            k.corrupt.insert(bad.into());
        });
        let out = tempfile::tempdir().unwrap();
        let message = error_of(run(&source(REPO, COMMIT), &options(&hub), out.path()));
        assert!(
            message.contains(bad) && message.contains("nothing was installed"),
            "{message}"
        );
        let kind = if bad.ends_with("safetensors") {
            "SHA-256"
        } else {
            "git blob SHA-1"
        };
        assert!(message.contains(&format!("expected {kind}")), "{message}");
        assert!(!out.path().join(bad).exists());
        assert!(!out.path().join(format!("{bad}.incomplete")).exists());
    }
}

#[test]
fn pins_are_checked_and_a_hub_that_advertises_other_content_is_refused_early() {
    let hub = FakeHub::start();
    let files = clip_files(9);
    hub.add_commit(REPO, COMMIT, &files);
    let right = Pin {
        digest: Digest::Sha256(sha256_hex(&files[3].bytes)),
        size: Some(files[3].bytes.len() as u64),
    };
    let mut src = source(REPO, COMMIT);
    src.files[3].pin = Some(right.clone());
    let out = tempfile::tempdir().unwrap();
    let report = run(&src, &options(&hub), out.path()).unwrap();
    assert!(report.files[3].pinned);
    assert_installed(out.path(), &files);

    let mut wrong = src.clone();
    wrong.files[3].pin = Some(Pin {
        digest: Digest::Sha256("0".repeat(64)),
        size: None,
    });
    let out = tempfile::tempdir().unwrap();
    hub.clear_requests();
    let message = error_of(run(&wrong, &options(&hub), out.path()));
    assert!(
        message.contains("embedscope pins SHA-256 0000"),
        "{message}"
    );
    assert_eq!(
        hub.count(Server::Cdn, "GET"),
        0,
        "refused before downloading"
    );
    assert!(!out.path().join("model.safetensors").exists());

    // A pinned file already in place is verified by hashing, without the Hub.
    let copied = tempfile::tempdir().unwrap();
    for f in &files {
        std::fs::write(copied.path().join(&f.name), &f.bytes).unwrap();
    }
    let pinned_only = ModelSource {
        repo: REPO.into(),
        revision: COMMIT.into(),
        files: vec![src.files[3].clone()],
    };
    let mut gone = options(&hub);
    gone.endpoint = "http://127.0.0.1:9".into();
    let report = run(&pinned_only, &gone, copied.path()).unwrap();
    assert_eq!(report.files[0].how, Obtained::AlreadyThere);
}

#[test]
fn gated_repositories_say_to_accept_the_licence_and_set_hf_token() {
    let hub = FakeHub::start();
    let files = clip_files(10);
    hub.add_commit(REPO, COMMIT, &files);
    hub.gate(REPO, "hf_good");
    let out = tempfile::tempdir().unwrap();
    let message = error_of(run(&source(REPO, COMMIT), &options(&hub), out.path()));
    assert!(message.contains("gated"), "{message}");
    assert!(message.contains("accept its licence"), "{message}");
    assert!(message.contains("HF_TOKEN"), "{message}");

    let mut bad = options(&hub);
    bad.token = Some("hf_wrong".into());
    let message = error_of(run(&source(REPO, COMMIT), &bad, out.path()));
    assert!(message.contains("has no access"), "{message}");

    let mut good = options(&hub);
    good.token = Some("hf_good".into());
    run(&source(REPO, COMMIT), &good, out.path()).unwrap();
    assert_installed(out.path(), &files);
    let cdn: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.server == Server::Cdn)
        .collect();
    assert!(cdn.iter().all(|r| r.header("authorization").is_none()));
}

#[test]
fn missing_repositories_revisions_and_files_name_what_to_check() {
    let hub = FakeHub::start();
    let files = clip_files(11);
    hub.add_commit(REPO, COMMIT, &files);
    let out = tempfile::tempdir().unwrap();

    let message = error_of(run(
        &source("nobody/nothing", "main"),
        &options(&hub),
        out.path(),
    ));
    assert!(
        message.contains("repository nobody/nothing was not found"),
        "{message}"
    );
    assert!(message.contains("--repo"), "{message}");

    let message = error_of(run(&source(REPO, "v9"), &options(&hub), out.path()));
    assert!(message.contains("revision v9 does not exist"), "{message}");
    assert!(message.contains("--revision"), "{message}");

    let mut src = source(REPO, COMMIT);
    src.files
        .push(SourceFile::new("vocab.json", FileKind::Required));
    let message = error_of(run(&src, &options(&hub), out.path()));
    assert!(message.contains("vocab.json does not exist"), "{message}");
    assert!(message.contains("check --repo and --revision"), "{message}");
    assert!(message.contains("404"), "{message}");

    // A missing optional file is a warning, and at a commit it is not asked for again.
    let mut src = source(REPO, COMMIT);
    src.files
        .push(SourceFile::new("vocab.json", FileKind::Optional));
    let report = run(&src, &options(&hub), out.path()).unwrap();
    assert!(
        report.warnings.iter().any(|w| w.contains("no vocab.json")),
        "{:?}",
        report.warnings
    );
    hub.clear_requests();
    run(&src, &options(&hub), out.path()).unwrap();
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());

    let message = error_of(run(
        &source(REPO, COMMIT),
        &FetchOptions::endpoint("http://127.0.0.1:9"),
        &out.path().join("x"),
    ));
    assert!(message.contains("cannot reach 127.0.0.1:9"), "{message}");
}

#[test]
fn a_renamed_repository_is_followed_through_its_relative_redirect() {
    let hub = FakeHub::start();
    let files = clip_files(12);
    hub.add_commit("new-org/tiny-clip", COMMIT, &files);
    hub.rename(REPO, "new-org/tiny-clip");
    let out = tempfile::tempdir().unwrap();
    let mut opts = options(&hub);
    opts.token = Some("hf_secret".into());
    let report = run(&source(REPO, "main"), &opts, out.path()).unwrap();
    assert_installed(out.path(), &files);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("--repo new-org/tiny-clip")),
        "{:?}",
        report.warnings
    );
    let requests = hub.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.path.starts_with("/new-org/tiny-clip/resolve/"))
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.server == Server::Hub)
            .all(|r| r.header("authorization") == Some("Bearer hf_secret"))
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.server == Server::Cdn)
            .all(|r| r.header("authorization").is_none())
    );
}

#[test]
fn a_sharded_repository_gets_the_index_and_every_shard() {
    let hub = FakeHub::start();
    let shard1 = noise(1_500_000, 21);
    let shard2 = noise(700_000, 22);
    let index = br#"{"metadata":{"total_size":2200000},"weight_map":{"a.weight":"model-00001-of-00002.safetensors","b.weight":"model-00002-of-00002.safetensors","c.weight":"model-00001-of-00002.safetensors"}}"#;
    let files = vec![
        git("config.json", b"{}"),
        git("preprocessor_config.json", b"{}"),
        git("tokenizer.json", b"{}"),
        git("model.safetensors.index.json", index),
        lfs("model-00001-of-00002.safetensors", &shard1),
        lfs("model-00002-of-00002.safetensors", &shard2),
    ];
    hub.add_commit(REPO, COMMIT, &files);
    let out = tempfile::tempdir().unwrap();
    let report = run(&source(REPO, COMMIT), &options(&hub), out.path()).unwrap();
    assert_installed(out.path(), &files);
    assert!(fetch::installed_model(out.path()).is_some());
    assert_eq!(report.files.len(), 6);
    // A second run at the commit asks nothing, not even about model.safetensors.
    hub.clear_requests();
    run(&source(REPO, COMMIT), &options(&hub), out.path()).unwrap();
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
}

#[test]
fn a_repository_with_only_pytorch_weights_says_so() {
    let hub = FakeHub::start();
    hub.add_commit(
        REPO,
        COMMIT,
        &[
            git("config.json", b"{}"),
            lfs("pytorch_model.bin", &noise(1000, 3)),
        ],
    );
    let out = tempfile::tempdir().unwrap();
    let message = error_of(run(&source(REPO, COMMIT), &options(&hub), out.path()));
    assert!(
        message.contains("only PyTorch weights (pytorch_model.bin)"),
        "{message}"
    );
    assert!(message.contains("--revision refs/pr/"), "{message}");
}

#[test]
fn the_default_model_takes_its_weights_from_the_safetensors_pr_ref() {
    // The real default source, against a fake openai/clip-vit-base-patch32
    // whose weights (not the real ones) sit on refs/pr/15: the pin refuses
    // them before any byte is downloaded, and the error says why.
    let hub = FakeHub::start();
    let mut files = clip_files(13);
    files.pop();
    hub.add_commit(fetch::DEFAULT_REPO, fetch::DEFAULT_REVISION, &files);
    let mut pr = files.clone();
    pr.push(lfs("model.safetensors", &noise(3000, 5)));
    hub.add_commit(fetch::DEFAULT_REPO, COMMIT2, &pr);
    hub.set_ref(fetch::DEFAULT_REPO, "main", fetch::DEFAULT_REVISION);
    hub.set_ref(fetch::DEFAULT_REPO, "refs/pr/15", COMMIT2);
    let out = tempfile::tempdir().unwrap();
    let message = error_of(run(
        &ModelSource::default_clip(),
        &options(&hub),
        out.path(),
    ));
    assert!(
        message.contains("embedscope pins SHA-256 99d28a65"),
        "{message}"
    );
    let heads: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.method == "HEAD")
        .map(|r| r.path)
        .collect();
    assert!(
        heads
            .iter()
            .any(|p| p.ends_with("/resolve/refs%2Fpr%2F15/model.safetensors")),
        "{heads:?}"
    );
    assert!(
        heads.iter().any(|p| p.contains(fetch::DEFAULT_REVISION)),
        "{heads:?}"
    );
    assert_eq!(hub.count(Server::Cdn, "GET"), 0);
    // The configs and tokenizer did install, checked against the git ETags.
    assert_installed(out.path(), &files);
}

#[test]
fn cancelling_keeps_the_partial_for_the_next_run() {
    let hub = FakeHub::start();
    let files = clip_files(14);
    hub.add_commit(REPO, COMMIT, &files);
    let out = tempfile::tempdir().unwrap();
    let cancel = CancelToken::new();
    let err = fetch::fetch_model(
        &source(REPO, COMMIT),
        &options(&hub),
        out.path(),
        &|name, done, _| {
            if name == "model.safetensors" && done >= 1 << 20 {
                cancel.cancel();
            }
        },
        &cancel,
    )
    .unwrap_err();
    assert!(is_cancelled(&err), "{err:#}");
    let kept = std::fs::metadata(out.path().join("model.safetensors.incomplete"))
        .unwrap()
        .len();
    assert!(kept >= 1 << 20, "{kept}");
    hub.clear_requests();
    run(&source(REPO, COMMIT), &options(&hub), out.path()).unwrap();
    assert_installed(out.path(), &files);
    let cdn: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.server == Server::Cdn)
        .collect();
    assert_eq!(
        cdn[0].header("range"),
        Some(format!("bytes={kept}-").as_str())
    );
}

#[test]
fn blobs_in_the_hugging_face_cache_are_reused_instead_of_downloaded() {
    let hub = FakeHub::start();
    let files = clip_files(15);
    hub.add_commit(REPO, COMMIT, &files);
    let hf = tempfile::tempdir().unwrap();
    let blobs = hub_cache::repo_cache_folder(hf.path(), REPO).join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(sha256_hex(&files[3].bytes)), &files[3].bytes).unwrap();
    // A blob whose content does not match its name is not used.
    std::fs::write(
        blobs.join(git_sha1_hex(&files[2].bytes)),
        noise(files[2].bytes.len(), 77),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut opts = options(&hub);
    opts.hub_cache = Some(hf.path().to_path_buf());
    let report = run(&source(REPO, COMMIT), &opts, out.path()).unwrap();
    assert_installed(out.path(), &files);
    assert_eq!(report.files[3].how, Obtained::FromHfCache);
    assert!(matches!(report.files[2].how, Obtained::Downloaded { .. }));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("does not hold what its name says"))
    );
    assert_eq!(hub.count(Server::Cdn, "GET"), 0);
}

#[test]
fn offline_mode_uses_only_what_is_on_disk() {
    let hub = FakeHub::start();
    let files = clip_files(16);
    hub.add_commit(REPO, COMMIT, &files);
    let out = tempfile::tempdir().unwrap();
    let mut offline = options(&hub);
    offline.offline = true;
    let message = error_of(run(&source(REPO, COMMIT), &offline, out.path()));
    assert!(message.contains("HF_HUB_OFFLINE"), "{message}");
    assert!(hub.requests().is_empty());
    run(&source(REPO, COMMIT), &options(&hub), out.path()).unwrap();
    hub.clear_requests();
    run(&source(REPO, COMMIT), &offline, out.path()).unwrap();
    assert!(hub.requests().is_empty());
}

#[test]
fn weak_etags_are_accepted() {
    let hub = FakeHub::start();
    let files = clip_files(17);
    hub.add_commit(REPO, COMMIT, &files);
    hub.set(|k| k.weak_etags = true);
    let out = tempfile::tempdir().unwrap();
    run(&source(REPO, COMMIT), &options(&hub), out.path()).unwrap();
    assert_installed(out.path(), &files);
}

#[test]
fn a_complete_hugging_face_snapshot_at_the_commit_installs_offline() {
    let hub = FakeHub::start();
    let files = clip_files(18);
    hub.add_commit(REPO, COMMIT, &files);
    // The layout huggingface_hub writes: blobs named by ETag, snapshot symlinks.
    let hf = tempfile::tempdir().unwrap();
    let root = hub_cache::repo_cache_folder(hf.path(), REPO);
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    std::fs::create_dir_all(root.join("snapshots").join(COMMIT)).unwrap();
    for f in &files {
        let etag = if f.lfs {
            sha256_hex(&f.bytes)
        } else {
            git_sha1_hex(&f.bytes)
        };
        std::fs::write(root.join("blobs").join(&etag), &f.bytes).unwrap();
        std::os::unix::fs::symlink(
            format!("../../blobs/{etag}"),
            root.join("snapshots").join(COMMIT).join(&f.name),
        )
        .unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let mut opts = options(&hub);
    opts.hub_cache = Some(hf.path().to_path_buf());
    opts.offline = true;
    let report = run(&source(REPO, COMMIT), &opts, out.path()).unwrap();
    assert_installed(out.path(), &files);
    assert!(
        report.files.iter().all(|f| f.how == Obtained::FromHfCache),
        "{report:?}"
    );
    assert!(hub.requests().is_empty());
    // A snapshot blob that does not hold what its name says is not taken.
    let out = tempfile::tempdir().unwrap();
    std::fs::write(
        root.join("blobs").join(git_sha1_hex(&files[0].bytes)),
        b"{\"x\":1}",
    )
    .unwrap();
    let message = error_of(run(&source(REPO, COMMIT), &opts, out.path()));
    assert!(
        message.contains("config.json") && message.contains("HF_HUB_OFFLINE"),
        "{message}"
    );
}
