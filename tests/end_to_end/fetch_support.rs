//! A local stand-in for the Hugging Face Hub and its CDN, answering as the
//! real ones do (see `src/embed/clip/fetch.rs`): std only, one thread per
//! connection, `Connection: close` on every answer.
//!
//! * The Hub, on 127.0.0.1:<port>, serves `/<org>/<name>/resolve/<rev>/<file>`
//!   for `GET` and `HEAD`: git files `200` with `ETag: "<git blob SHA-1>"` and
//!   `X-Repo-Commit`; LFS files `302` to the CDN with `X-Linked-Etag:
//!   "<SHA-256>"`, `X-Linked-Size`, `X-Repo-Commit` and, like the real Hub, an
//!   `ETag` that is the git SHA-1 of the LFS *pointer* file; `401 GatedRepo`
//!   without a token and `403 GatedRepo` with a wrong one; `401 RepoNotFound`;
//!   `404 RevisionNotFound` / `EntryNotFound`; a relative `307` for a renamed
//!   repository.
//! * The CDN, on a second loopback address (127.0.0.2:<port>; 127.0.0.1 on a
//!   second port where 127.0.0.2 cannot be bound), serves content-addressed
//!   objects with its own ETag (not the SHA-256) and honours `Range` with `206`
//!   and `Content-Range`, or `416`.
//! * Knobs cut a CDN body short, corrupt a file's bytes, make the CDN ignore
//!   `Range` or mislabel its `Content-Range`, and make ETags weak.
//!
//! Every request is logged (server, method, path, headers) for the tests to count.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Hub,
    Cdn,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub server: Server,
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A file of a commit: kept in git, or in LFS (served through the CDN).
#[derive(Clone, Debug)]
pub struct File {
    pub name: String,
    pub bytes: Vec<u8>,
    pub lfs: bool,
}

pub fn git(name: &str, bytes: &[u8]) -> File {
    File {
        name: name.into(),
        bytes: bytes.to_vec(),
        lfs: false,
    }
}

pub fn lfs(name: &str, bytes: &[u8]) -> File {
    File {
        name: name.into(),
        bytes: bytes.to_vec(),
        lfs: true,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn git_sha1_hex(bytes: &[u8]) -> String {
    use sha1::Sha1;
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The next `times` CDN downloads of `file` stop after `after` bytes, while
/// `Content-Length` announces the whole body.
#[derive(Clone, Debug)]
pub struct Cut {
    pub file: String,
    pub after: usize,
    pub times: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Knobs {
    pub cut: Option<Cut>,
    /// Files whose bytes are served with one byte flipped (headers unchanged).
    pub corrupt: BTreeSet<String>,
    /// The CDN answers a `Range` request with `200` and the whole body.
    pub ignore_range: bool,
    /// The CDN answers a `Range` request with `206` and a range that starts
    /// at 0 instead (bytes and `Content-Range` agree).
    pub wrong_content_range: bool,
    /// The Hub sends weak ETags (`W/"..."`).
    pub weak_etags: bool,
}

#[derive(Default)]
struct Repo {
    /// Branch, tag or ref name (and every commit id) → commit.
    refs: BTreeMap<String, String>,
    commits: BTreeMap<String, BTreeMap<String, File>>,
    /// Gated: only this token gets through.
    gate: Option<String>,
}

#[derive(Default)]
struct State {
    repos: BTreeMap<String, Repo>,
    renamed: BTreeMap<String, String>,
    /// CDN objects by SHA-256: (file name, bytes).
    objects: BTreeMap<String, (String, Vec<u8>)>,
    log: Vec<Request>,
    knobs: Knobs,
}

pub struct FakeHub {
    /// `http://127.0.0.1:<port>`: pass as the endpoint.
    pub endpoint: String,
    /// `http://127.0.0.2:<port>`.
    pub cdn: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    addresses: Vec<SocketAddr>,
}

impl FakeHub {
    pub fn start() -> Self {
        let hub = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        // A second host for the CDN, so "same host" checks see a different one.
        let cdn = TcpListener::bind("127.0.0.2:0")
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .expect("bind the CDN");
        let addresses = vec![hub.local_addr().unwrap(), cdn.local_addr().unwrap()];
        let endpoint = format!("http://{}", addresses[0]);
        let cdn_url = format!("http://{}", addresses[1]);
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        for (listener, server) in [(hub, Server::Hub), (cdn, Server::Cdn)] {
            let state = state.clone();
            let stop = stop.clone();
            let cdn_url = cdn_url.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = state.clone();
                    let cdn_url = cdn_url.clone();
                    std::thread::spawn(move || {
                        let _ = handle(stream, server, &state, &cdn_url);
                    });
                }
            });
        }
        Self {
            endpoint,
            cdn: cdn_url,
            state,
            stop,
            addresses,
        }
    }

    /// Adds a commit of `repo` with `files`; `main` points at it.
    pub fn add_commit(&self, repo: &str, commit: &str, files: &[File]) {
        let mut state = self.state.lock().unwrap();
        for file in files.iter().filter(|f| f.lfs) {
            state.objects.insert(
                sha256_hex(&file.bytes),
                (file.name.clone(), file.bytes.clone()),
            );
        }
        let entry = state.repos.entry(repo.to_string()).or_default();
        entry.commits.insert(
            commit.to_string(),
            files.iter().map(|f| (f.name.clone(), f.clone())).collect(),
        );
        entry.refs.insert(commit.to_string(), commit.to_string());
        entry.refs.insert("main".into(), commit.to_string());
    }

    /// Points a branch, tag or ref (`main`, `refs/pr/15`) at a commit.
    pub fn set_ref(&self, repo: &str, name: &str, commit: &str) {
        let mut state = self.state.lock().unwrap();
        let entry = state.repos.get_mut(repo).expect("add_commit first");
        entry.refs.insert(name.to_string(), commit.to_string());
    }

    /// Makes `repo` gated: only `Authorization: Bearer <token>` gets through.
    pub fn gate(&self, repo: &str, token: &str) {
        let mut state = self.state.lock().unwrap();
        state.repos.get_mut(repo).expect("add_commit first").gate = Some(token.into());
    }

    /// Requests for `old` get a relative 307 to `new`.
    pub fn rename(&self, old: &str, new: &str) {
        let mut state = self.state.lock().unwrap();
        state.renamed.insert(old.into(), new.into());
    }

    pub fn set(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.state.lock().unwrap().knobs);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().log.clear();
    }

    pub fn count(&self, server: Server, method: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.server == server && r.method == method)
            .count()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for address in &self.addresses {
            let _ = TcpStream::connect(address);
        }
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then close (Content-Length unchanged).
    cut_at: Option<usize>,
}

impl Answer {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut_at: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        let body = format!("{{\"error\":\"{message}\"}}").into_bytes();
        let mut answer = Self::new(status)
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
            .header("Content-Type", "application/json");
        answer.body = body;
        answer
    }
}

fn handle(
    stream: TcpStream,
    server: Server,
    state: &Mutex<State>,
    cdn: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let request = Request {
        server,
        method: method.clone(),
        path: path.clone(),
        headers,
    };
    let answer = {
        let mut state = state.lock().unwrap();
        state.log.push(request.clone());
        match server {
            Server::Hub => hub_answer(&mut state, &request, cdn),
            Server::Cdn => cdn_answer(&mut state, &request),
        }
    };
    send(stream, &method, answer)
}

fn send(mut stream: TcpStream, method: &str, answer: Answer) -> std::io::Result<()> {
    let reason = match answer.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !answer
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", answer.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let end = answer
            .cut_at
            .unwrap_or(answer.body.len())
            .min(answer.body.len());
        stream.write_all(&answer.body[..end])?;
    }
    stream.flush()?;
    stream.shutdown(Shutdown::Both)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn corrupt(bytes: &mut [u8]) {
    if let Some(b) = bytes.get_mut(bytes.len() / 2) {
        *b ^= 0x5a;
    }
}

fn hub_answer(state: &mut State, request: &Request, cdn: &str) -> Answer {
    let path = request.path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segments.len() != 5 || segments[2] != "resolve" {
        return Answer::error(404, "EntryNotFound", "Not a resolve URL");
    }
    let repo = format!("{}/{}", segments[0], segments[1]);
    let (raw_revision, raw_file) = (segments[3], segments[4]);
    if let Some(new) = state.renamed.get(&repo) {
        // A relative Location, as the Hub sends for renamed repositories.
        return Answer::new(307).header(
            "Location",
            format!("/{new}/resolve/{raw_revision}/{raw_file}"),
        );
    }
    let revision = percent_decode(raw_revision);
    let file = percent_decode(raw_file);
    let weak = state.knobs.weak_etags;
    let corrupt_it = state.knobs.corrupt.contains(&file);
    let Some(entry) = state.repos.get(&repo) else {
        return Answer::error(401, "RepoNotFound", "Repository not found");
    };
    if let Some(token) = &entry.gate {
        match request.header("authorization") {
            None => {
                return Answer::error(
                    401,
                    "GatedRepo",
                    &format!(
                        "Access to model {repo} is restricted. You must have access to it and be \
                         authenticated to access it. Please log in."
                    ),
                );
            }
            Some(auth) if auth != format!("Bearer {token}") => {
                return Answer::error(
                    403,
                    "GatedRepo",
                    &format!(
                        "Access to model {repo} is restricted and you are not in the authorized list."
                    ),
                );
            }
            Some(_) => {}
        }
    }
    let Some(commit) = entry.refs.get(&revision) else {
        return Answer::error(
            404,
            "RevisionNotFound",
            &format!("Invalid rev id: {revision}"),
        );
    };
    let Some(found) = entry.commits.get(commit).and_then(|files| files.get(&file)) else {
        return Answer::error(404, "EntryNotFound", "Entry not found")
            .header("X-Repo-Commit", commit.clone());
    };
    let tag = |value: String| {
        if weak {
            format!("W/\"{value}\"")
        } else {
            format!("\"{value}\"")
        }
    };
    if found.lfs {
        let sha = sha256_hex(&found.bytes);
        let pointer = format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {}\n",
            found.bytes.len()
        );
        let mut answer = Answer::new(302)
            .header(
                "Location",
                format!(
                    "{cdn}/repos/{}/{sha}?X-Amz-Signature=fake&file={file}",
                    &sha[..2]
                ),
            )
            .header("X-Linked-Etag", tag(sha.clone()))
            .header("X-Linked-Size", found.bytes.len().to_string())
            .header("X-Repo-Commit", commit.clone())
            .header("ETag", tag(git_sha1_hex(pointer.as_bytes())));
        answer.body = format!("Found. Redirecting to {cdn}").into_bytes();
        return answer;
    }
    let mut body = found.bytes.clone();
    if corrupt_it {
        corrupt(&mut body);
    }
    let mut answer = Answer::new(200)
        .header("ETag", tag(git_sha1_hex(&found.bytes)))
        .header("X-Repo-Commit", commit.clone())
        .header("Content-Type", "application/json");
    answer.body = body;
    answer
}

fn cdn_answer(state: &mut State, request: &Request) -> Answer {
    let path = request.path.split('?').next().unwrap_or("");
    let sha = path.rsplit('/').next().unwrap_or("");
    let Some((name, bytes)) = state.objects.get(sha).cloned() else {
        return Answer::new(403).header("Content-Type", "application/xml");
    };
    let mut body = bytes.clone();
    if state.knobs.corrupt.contains(&name) {
        corrupt(&mut body);
    }
    let total = body.len();
    // The CDN's own tag: an MD5-like multipart ETag, not the SHA-256.
    let etag = format!("\"{}-1\"", &git_sha1_hex(&bytes)[..32]);
    let cut = match &mut state.knobs.cut {
        Some(cut) if cut.file == name && cut.times > 0 && request.method == "GET" => {
            cut.times -= 1;
            Some(cut.after)
        }
        _ => None,
    };
    let range = request
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            let start: usize = a.parse().ok()?;
            let end: Option<usize> = if b.is_empty() {
                None
            } else {
                Some(b.parse().ok()?)
            };
            Some((start, end))
        });
    let mut answer = match range {
        Some(_) if state.knobs.ignore_range => {
            let mut a = Answer::new(200);
            a.body = body;
            a
        }
        Some((start, _)) if start >= total => {
            return Answer::new(416).header("Content-Range", format!("bytes */{total}"));
        }
        Some((start, end)) => {
            let end = end.unwrap_or(total - 1).min(total - 1);
            // A broken cache: answers with (and labels) a range from 0.
            let (start, end) = if state.knobs.wrong_content_range {
                (0, end - start)
            } else {
                (start, end)
            };
            let mut a =
                Answer::new(206).header("Content-Range", format!("bytes {start}-{end}/{total}"));
            a.body = body[start..=end].to_vec();
            a
        }
        None => {
            let mut a = Answer::new(200);
            a.body = body;
            a
        }
    };
    answer = answer
        .header("ETag", etag)
        .header("Accept-Ranges", "bytes")
        .header("Content-Type", "binary/octet-stream");
    answer.cut_at = cut;
    answer
}
