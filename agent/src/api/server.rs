//! The local API: HTTP/1.1 + JSON on a unix socket (`<state>/agent.sock`), served by
//! `tiny_http` (which listens on unix sockets since 0.12).
//!
//! Endpoints: `GET /healthz`, `/pods`, `/pods/<name>`, `/pods/<name>/logs`, `/events`,
//! `/metrics`; `POST /pods/<name>/exec` and `POST /exec/<session>/stdin` (wire format in
//! [`crate::exec::wire`]), each on its own thread. Requests are answered on the accept thread from snapshots of the
//! [`StatusStore`], except logs, which get their own thread (a follow can last long).
//! A follow is streamed over the raw connection after an `Upgrade: podvisor-logs`
//! response, because tiny_http's chunked encoder holds back output until 8 KiB.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tiny_http::{Header, Method, Request, Response, Server};

use super::metrics;
use super::query::{parse_since, split_url};
use super::store::{LookupError, PodEntry, StatusStore, pick_container};
use crate::exec::session::{Sessions, serve_exec, serve_input};
use crate::logs::file::{PodLogDir, attempts};
use crate::logs::reader::{ReadOptions, follow, read_logs};

/// The protocol name of a streamed log follow.
pub const FOLLOW_PROTOCOL: &str = "podvisor-logs";

/// How often a log follow looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// An error starting the API.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process answers on the socket.
    #[error("another podvisor agent is serving on {0}")]
    InUse(PathBuf),
    /// Creating the directory, removing a stale socket or binding failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// A running API server; [`ApiServer::stop`] (or drop) ends it and removes the socket.
pub struct ApiServer {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
    socket: PathBuf,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Binds `socket` (replacing a stale one) and serves `store` on a background thread,
    /// without `exec` (it answers 501).
    pub fn start(socket: &Path, store: StatusStore) -> Result<Self, ServeError> {
        Self::start_with_runtime(socket, store, None)
    }

    /// As [`ApiServer::start`], with `exec` into the containers of the runtime state root
    /// `runtime_root`.
    pub fn start_with_runtime(
        socket: &Path,
        store: StatusStore,
        runtime_root: Option<PathBuf>,
    ) -> Result<Self, ServeError> {
        let io = |what| {
            move |source| ServeError::Io {
                what,
                path: socket.to_path_buf(),
                source,
            }
        };
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(io("create directory for"))?;
        }
        if socket.exists() {
            if UnixStream::connect(socket).is_ok() {
                return Err(ServeError::InUse(socket.to_path_buf()));
            }
            std::fs::remove_file(socket).map_err(io("remove stale socket"))?;
        }
        let server = Server::http_unix(socket)
            .map_err(|e| io("listen on")(io::Error::other(e.to_string())))?;
        let server = Arc::new(server);
        let thread = {
            let server = server.clone();
            std::thread::Builder::new()
                .name("api".into())
                .spawn(move || accept_loop(&server, &store, runtime_root.as_deref()))
                .map_err(io("spawn api thread for"))?
        };
        Ok(Self {
            server,
            thread: Some(thread),
            socket: socket.to_path_buf(),
        })
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops accepting, waits for the accept thread and removes the socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(server: &Server, store: &StatusStore, runtime_root: Option<&Path>) {
    let sessions = Sessions::default();
    for request in server.incoming_requests() {
        let (segments, _) = split_url(request.url());
        if *request.method() == Method::Post {
            serve_post(request, &segments, store, runtime_root, &sessions);
        } else if matches!(segments.as_slice(), [pods, _, logs] if pods == "pods" && logs == "logs")
        {
            let store = store.clone();
            let spawned = std::thread::Builder::new()
                .name("api-logs".into())
                .spawn(move || serve_logs(request, &store));
            if let Err(e) = spawned {
                tracing::warn!("spawn log thread: {e}");
            }
        } else {
            let response = route(&request, store);
            if let Err(e) = request.respond(response) {
                tracing::debug!("api response: {e}");
            }
        }
    }
}

/// `POST`: exec (output and input connections), each on its own thread.
fn serve_post(
    request: Request,
    segments: &[String],
    store: &StatusStore,
    runtime_root: Option<&Path>,
    sessions: &Sessions,
) {
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (pod, token) = match segments.as_slice() {
        ["pods", pod, "exec"] => (Some(pod.to_string()), None),
        ["exec", token, "stdin"] => (None, Some(token.to_string())),
        _ => return respond(request, error(405, "POST is only for exec")),
    };
    let Some(root) = runtime_root.map(Path::to_path_buf) else {
        return respond(request, error(501, "exec is not available on this server"));
    };
    let (store, sessions) = (store.clone(), sessions.clone());
    let spawned = std::thread::Builder::new()
        .name("api-exec".into())
        .spawn(move || match (pod, token) {
            (Some(pod), _) => serve_exec(request, &pod, &store, &root, &sessions),
            (None, Some(token)) => serve_input(request, &token, &sessions),
            (None, None) => {}
        });
    if let Err(e) = spawned {
        tracing::warn!("spawn exec thread: {e}");
    }
}

type Reply = Response<io::Cursor<Vec<u8>>>;

/// The body of `GET /pods`, as the API server's `PodList`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PodList<'a> {
    api_version: &'static str,
    kind: &'static str,
    items: Vec<&'a k8s_openapi::api::core::v1::Pod>,
}

/// Sets `Content-Type` (the values here are ASCII constants, which tiny_http accepts).
fn typed<R: io::Read>(mut response: Response<R>, content_type: &str) -> Response<R> {
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        response.add_header(h);
    }
    response
}

fn json<T: serde::Serialize>(code: u16, value: &T) -> Reply {
    let body = serde_json::to_vec_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
    typed(
        Response::from_data(body).with_status_code(code),
        "application/json",
    )
}

fn error(code: u16, message: &str) -> Reply {
    json(code, &serde_json::json!({ "error": message }))
}

fn lookup_error(e: &LookupError) -> Reply {
    match e {
        LookupError::NotFound(_) => error(404, &e.to_string()),
        LookupError::Ambiguous { .. } => error(409, &e.to_string()),
    }
}

fn route(request: &Request, store: &StatusStore) -> Reply {
    if *request.method() != Method::Get {
        return error(405, "only GET is supported");
    }
    let (segments, query) = split_url(request.url());
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["healthz"] => typed(Response::from_string("ok\n"), "text/plain"),
        // Serialized from the store as it is: a copy (or a JSON tree) of every pod per
        // request would be megabytes of small allocations at 200 pods, each poll.
        ["pods"] => store.with_pods(|pods| {
            json(
                200,
                &PodList {
                    api_version: "v1",
                    kind: "PodList",
                    items: pods.map(|e| &e.pod).collect(),
                },
            )
        }),
        ["pods", name] => match store.pod(name) {
            Ok(p) => json(200, &p.pod),
            Err(e) => lookup_error(&e),
        },
        ["events"] => json(200, &store.events(query.get("pod").map(String::as_str))),
        ["metrics"] => match metrics::render(store) {
            Ok(text) => typed(
                Response::from_string(text),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            Err(e) => error(500, &format!("encode metrics: {e}")),
        },
        _ => error(404, &format!("no such endpoint: /{}", segments.join("/"))),
    }
}

/// What a log request resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// `namespace/name` of the pod.
    pub pod_key: String,
    /// The container.
    pub container: String,
    /// The run (restart count) whose log is read.
    pub attempt: u32,
    /// `<n>.log` of that run.
    pub path: PathBuf,
}

/// Resolves pod, container (default: the `kubectl.kubernetes.io/default-container`
/// annotation, else the first app container) and run (the latest, or with `previous`
/// the one before) to a log file.
pub fn resolve_log(
    entry: &PodEntry,
    container: Option<&str>,
    previous: bool,
) -> Result<LogTarget, (u16, String)> {
    let pod_name = entry.pod.metadata.name.clone().unwrap_or_default();
    let container = pick_container(&entry.pod, container)?;
    let dir = PodLogDir::from_path(entry.log_dir.clone());
    let runs = attempts(&dir.container_dir(&container)).unwrap_or_default();
    let pick = if previous {
        runs.iter().rev().nth(1)
    } else {
        runs.last()
    };
    let Some(&attempt) = pick else {
        let msg = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod_name}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{pod_name}\" has no logs yet")
        };
        return Err((400, msg));
    };
    Ok(LogTarget {
        pod_key: entry.key(),
        path: dir.log_path(&container, attempt),
        container,
        attempt,
    })
}

/// Whether the container run `target` is still running according to the store.
fn still_running(store: &StatusStore, target: &LogTarget) -> bool {
    let Ok(entry) = store.pod(&target.pod_key) else {
        return false;
    };
    let status = entry.pod.status.unwrap_or_default();
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .any(|c| {
            c.name == target.container
                && u32::try_from(c.restart_count).ok() == Some(target.attempt)
                && c.state.as_ref().is_some_and(|s| s.running.is_some())
        })
}

fn serve_logs(request: Request, store: &StatusStore) {
    let (segments, query) = split_url(request.url());
    let name = segments.get(1).cloned().unwrap_or_default();
    let flag = |k: &str| {
        query
            .get(k)
            .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
    };
    let entry = match store.pod(&name) {
        Ok(e) => e,
        Err(e) => return respond(request, lookup_error(&e)),
    };
    let target = match resolve_log(
        &entry,
        query.get("container").map(String::as_str),
        flag("previous"),
    ) {
        Ok(t) => t,
        Err((code, msg)) => return respond(request, error(code, &msg)),
    };
    let mut opts = ReadOptions {
        timestamps: flag("timestamps"),
        ..Default::default()
    };
    if let Some(tail) = query.get("tail").filter(|t| t.as_str() != "-1") {
        match tail.parse() {
            Ok(n) => opts.tail = Some(n),
            Err(_) => return respond(request, error(400, &format!("bad tail {tail:?}"))),
        }
    }
    if let Some(since) = query.get("since") {
        match parse_since(since, SystemTime::now()) {
            Some(t) => opts.since = Some(t),
            None => {
                return respond(
                    request,
                    error(
                        400,
                        &format!("bad since {since:?}: use 5m, 1h30m or an RFC 3339 time"),
                    ),
                );
            }
        }
    }
    if !flag("follow") {
        let mut body = Vec::new();
        return match read_logs(&target.path, &opts, &mut body) {
            Ok(_) => respond(request, typed(Response::from_data(body), "text/plain")),
            Err(e) => respond(
                request,
                error(500, &format!("read {}: {e}", target.path.display())),
            ),
        };
    }
    let mut stream = request.upgrade(FOLLOW_PROTOCOL, typed(Response::empty(200), "text/plain"));
    let result = read_logs(&target.path, &opts, &mut stream).and_then(|file| {
        stream.flush()?;
        follow(&target.path, file, &opts, &mut stream, FOLLOW_POLL, &|| {
            still_running(store, &target)
        })
    });
    if let Err(e) = result {
        tracing::debug!("log follow of {}: {e}", target.path.display());
    }
}

fn respond(request: Request, response: Reply) {
    if let Err(e) = request.respond(response) {
        tracing::debug!("api response: {e}");
    }
}
