//! The manifest watcher: inotify on the manifest directory as a hint, a re-list of the
//! directory as the truth, a periodic full rescan, and a per-file debounce. It keeps the
//! desired set ([`DesiredSet`]) and hands every new value to a sink (the supervisor).
//!
//! [`Reloader`] is the level-triggered part (list, read what changed, decide) and can be
//! driven directly; [`Watcher`] runs it on a thread, woken by inotify (inotify(7)):
//! `IN_Q_OVERFLOW` means events were lost, so rescan everything; `IN_DELETE_SELF`,
//! `IN_MOVE_SELF` and `IN_IGNORED` mean the watched directory is gone or replaced, so the
//! watch is re-created (retried until the directory exists again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use super::desired::{DesiredSet, OnInvalid, Scan, decide};
use super::error::ManifestError;
use super::source::{self, FileStamp};
use crate::pod::{NodeInfo, StaticPod, identity, load};

/// Settings of the watcher.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The manifest directory, or a single manifest file.
    pub path: PathBuf,
    /// This node (name, labels, taints).
    pub node: NodeInfo,
    /// Full rescan period (the design's default is 20 s).
    pub rescan_interval: Duration,
    /// Quiet time after the last event on a file before it is read (about 100 ms).
    pub debounce: Duration,
    /// What an invalid edit does to a running pod.
    pub on_invalid: OnInvalid,
}

impl WatchConfig {
    /// The design's defaults for `path` and `node`.
    pub fn new(path: impl Into<PathBuf>, node: NodeInfo) -> Self {
        WatchConfig {
            path: path.into(),
            node,
            rescan_interval: Duration::from_secs(20),
            debounce: Duration::from_millis(100),
            on_invalid: OnInvalid::KeepLastGood,
        }
    }
}

/// A file is read at the latest this long after its first unsettled event, even if its
/// events never stop (so a file rewritten forever still converges).
const MAX_SETTLE: Duration = Duration::from_secs(1);

struct Cached {
    stamp: Option<FileStamp>,
    outcome: Result<StaticPod, ManifestError>,
}

/// The level-triggered reload: list the path, re-read changed files, decide the desired set.
pub struct Reloader {
    config: WatchConfig,
    cache: HashMap<PathBuf, Cached>,
    seen: HashMap<String, String>,
    warned_unsupported: HashSet<PathBuf>,
    missing_logged: bool,
    reported: BTreeMap<PathBuf, String>,
    desired: DesiredSet,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cache holds whole pods; the paths and the desired UIDs say enough.
        f.debug_struct("Reloader")
            .field("path", &self.config.path)
            .field("cached", &self.cache.keys().collect::<Vec<_>>())
            .field("desired", &self.desired.uids())
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader with an empty desired set.
    pub fn new(config: WatchConfig) -> Self {
        Reloader {
            config,
            cache: HashMap::new(),
            seen: HashMap::new(),
            warned_unsupported: HashSet::new(),
            missing_logged: false,
            reported: BTreeMap::new(),
            desired: DesiredSet::default(),
        }
    }

    /// The current desired set.
    pub fn desired(&self) -> &DesiredSet {
        &self.desired
    }

    /// Re-lists and re-decides. Files in `settling` (events still arriving) keep their last
    /// outcome; files in `force` are re-read even if their stamp looks unchanged; others are
    /// re-read when their stamp changed.
    pub fn rescan(&mut self, settling: &HashSet<PathBuf>, force: &HashSet<PathBuf>) -> &DesiredSet {
        let listing = match source::list(&self.config.path) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(path = %self.config.path.display(), error = %e, "list manifest directory");
                return &self.desired;
            }
        };
        if listing.missing && !self.missing_logged {
            tracing::info!(path = %self.config.path.display(), "manifest path does not exist: no static pods until it is created");
        }
        self.missing_logged = listing.missing;
        for f in &listing.unsupported {
            if self.warned_unsupported.insert(f.clone()) {
                tracing::warn!(file = %f.display(), "ignoring file: manifests must end in .yaml, .yml or .json");
            }
        }
        let mut scan: Scan = BTreeMap::new();
        for path in &listing.manifests {
            if settling.contains(path) {
                if let Some(c) = self.cache.get(path) {
                    scan.insert(path.clone(), c.outcome.clone());
                }
                continue;
            }
            let stamp = source::stamp(path).ok();
            let fresh = match self.cache.get(path) {
                Some(c) => c.stamp.is_some() && c.stamp == stamp && !force.contains(path),
                None => false,
            };
            if !fresh {
                let outcome = self.read_one(path);
                self.cache.insert(path.clone(), Cached { stamp, outcome });
            }
            if let Some(c) = self.cache.get(path) {
                scan.insert(path.clone(), c.outcome.clone());
            }
        }
        let listed: HashSet<&PathBuf> = listing.manifests.iter().collect();
        self.cache.retain(|p, _| listed.contains(p));
        let live: HashSet<String> = self
            .cache
            .values()
            .filter_map(|c| c.outcome.as_ref().ok().map(|p| p.uid.clone()))
            .collect();
        let kept: HashSet<String> = self.desired.pods.values().map(|p| p.uid.clone()).collect();
        self.seen
            .retain(|uid, _| live.contains(uid) || kept.contains(uid));
        self.desired = decide(&self.desired, &scan, self.config.on_invalid);
        self.log_problems();
        &self.desired
    }

    fn read_one(&mut self, path: &Path) -> Result<StaticPod, ManifestError> {
        let bytes = source::read_manifest(path)?;
        let now = identity::rfc3339(SystemTime::now());
        let seen = &self.seen;
        let result = load(path, &bytes, &self.config.node, &|uid| {
            seen.get(uid).cloned().unwrap_or_else(|| now.clone())
        });
        if let Ok(pod) = &result {
            let seen_at = pod
                .pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(identity::CONFIG_SEEN))
                .cloned()
                .unwrap_or(now);
            self.seen.entry(pod.uid.clone()).or_insert(seen_at);
            for w in &pod.warnings {
                tracing::warn!(file = %path.display(), "{w}");
            }
        }
        result
    }

    /// Logs each problem once per distinct message.
    fn log_problems(&mut self) {
        let now: BTreeMap<PathBuf, String> = self
            .desired
            .problems
            .iter()
            .map(|(p, pr)| (p.clone(), pr.to_string()))
            .collect();
        for (p, msg) in &now {
            if self.reported.get(p) != Some(msg) {
                tracing::warn!(file = %p.display(), "{msg}");
            }
        }
        self.reported = now;
    }
}

/// The watcher thread: owns the inotify instance and a [`Reloader`]; calls the sink with
/// the desired set after the first scan and whenever it changes. Stops when dropped.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    /// Write end of the wake-up pipe: closing it wakes the thread's poll(2) at once.
    wake: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching. `sink` runs on the watcher thread.
    pub fn spawn<F>(config: WatchConfig, sink: F) -> io::Result<Watcher>
    where
        F: FnMut(&DesiredSet) + Send + 'static,
    {
        let inotify = Inotify::init()?;
        let (wake_rx, wake_tx) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("manifest-watch".to_owned())
            .spawn(move || run(config, inotify, wake_rx, flag, sink))?;
        Ok(Watcher {
            stop,
            wake: Some(wake_tx),
            thread: Some(thread),
        })
    }

    /// Starts watching and returns the desired sets on a channel (first scan, then each change).
    pub fn spawn_channel(
        config: WatchConfig,
    ) -> io::Result<(Watcher, std::sync::mpsc::Receiver<DesiredSet>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let w = Watcher::spawn(config, move |set: &DesiredSet| {
            let _ = tx.send(set.clone());
        })?;
        Ok((w, rx))
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        drop(self.wake.take()); // EOF on the pipe wakes the watcher's poll
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The directory watched and, in single-file mode, the one name that matters. A path that
/// is a file, or is missing and named like a manifest, is watched through its parent
/// directory (inotify on the file itself would lose it at the first atomic rename).
fn watch_target(path: &Path) -> (PathBuf, Option<OsString>) {
    let named_like_manifest = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| source::classify(n) == source::Candidate::Manifest);
    let single_file = path.is_file() || (!path.exists() && named_like_manifest);
    match (single_file, path.parent()) {
        (true, Some(parent)) => {
            let dir = if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent.to_owned()
            };
            (dir, path.file_name().map(OsString::from))
        }
        _ => (path.to_owned(), None),
    }
}

fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::ATTRIB
        | WatchMask::CREATE
        | WatchMask::MODIFY
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
}

/// Per-file debounce state: first and last unsettled event.
struct Pending {
    first: Instant,
    last: Instant,
    /// Quiet time wanted after `last`: short once the writer closed or renamed the file,
    /// the full debounce while it is still being written (`IN_MODIFY`, `IN_CREATE`).
    quiet: Duration,
}

/// Quiet time after `IN_CLOSE_WRITE`, `IN_MOVED_TO`, deletes and renames: none, the file
/// is complete, so it is read at once (the design's "running within milliseconds"). Events
/// that arrived together are still handled together: they come in one read.
const SETTLE_COMPLETE: Duration = Duration::ZERO;

/// How often a missing directory is looked for again (inotify cannot watch what is not there).
const RETRY_MISSING: Duration = Duration::from_millis(50);

fn run<F: FnMut(&DesiredSet)>(
    config: WatchConfig,
    mut inotify: Inotify,
    wake: OwnedFd,
    stop: Arc<AtomicBool>,
    mut sink: F,
) {
    let path = config.path.clone();
    let (mut dir, mut only) = watch_target(&path);
    let debounce = config.debounce;
    let rescan_interval = config.rescan_interval;
    let mut reloader = Reloader::new(config);
    let mut wd: Option<WatchDescriptor> = None;
    let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
    let mut next_full = Instant::now();
    let mut last_sent: Option<DesiredSet> = None;
    let mut buffer = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        if wd.is_none() {
            (dir, only) = watch_target(&path);
            if let Ok(w) = inotify.watches().add(&dir, mask()) {
                wd = Some(w);
                next_full = Instant::now(); // it (re)appeared: rescan now
            }
        }
        let now = Instant::now();
        let settled_at = |p: &Pending| (p.last + p.quiet).min(p.first + MAX_SETTLE);
        let next_settle = pending.values().map(settled_at).min();
        let mut deadline = next_full;
        if wd.is_none() {
            deadline = deadline.min(now + RETRY_MISSING);
        }
        if let Some(s) = next_settle {
            deadline = deadline.min(s);
        }
        wait_readable(&inotify, &wake, deadline.saturating_duration_since(now));
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut full = false;
        match inotify.read_events(&mut buffer) {
            Ok(events) => {
                for ev in events {
                    if ev.mask.contains(EventMask::Q_OVERFLOW) {
                        full = true;
                    }
                    if ev.mask.intersects(
                        EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF,
                    ) {
                        // The watched directory is gone or moved: drop the watch (a moved
                        // directory would keep reporting under its old name) and re-create it.
                        // Events of an older, already dropped watch (the IN_IGNORED our own
                        // removal causes) are ignored: watch descriptors are not reused soon.
                        if wd.as_ref() == Some(&ev.wd) {
                            if let Some(w) = wd.take() {
                                let _ = inotify.watches().remove(w);
                            }
                            full = true;
                        }
                        continue;
                    }
                    if wd.as_ref() != Some(&ev.wd) {
                        continue;
                    }
                    if let Some(name) = ev.name {
                        if only.as_deref().is_some_and(|o| o != name) {
                            continue;
                        }
                        let path = dir.join(name);
                        let t = Instant::now();
                        let writing = ev.mask.intersects(EventMask::MODIFY | EventMask::CREATE);
                        let quiet = if writing { debounce } else { SETTLE_COMPLETE };
                        pending
                            .entry(path)
                            .and_modify(|p| {
                                p.last = t;
                                p.quiet = quiet;
                            })
                            .or_insert(Pending {
                                first: t,
                                last: t,
                                quiet,
                            });
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::warn!(error = %e, "read inotify events; falling back to rescans");
                full = true;
            }
        }
        let now = Instant::now();
        if now >= next_full {
            full = true;
        }
        let due: HashSet<PathBuf> = pending
            .iter()
            .filter(|(_, p)| settled_at(p) <= now)
            .map(|(k, _)| k.clone())
            .collect();
        if !full && due.is_empty() {
            continue;
        }
        pending.retain(|k, _| !due.contains(k));
        let settling: HashSet<PathBuf> = pending.keys().cloned().collect();
        let desired = reloader.rescan(&settling, &due);
        if last_sent.as_ref() != Some(desired) {
            sink(desired);
            last_sent = Some(desired.clone());
        }
        if full {
            next_full = now + rescan_interval;
        }
    }
}

/// Waits up to `timeout` for inotify events or the wake-up pipe (poll(2)).
fn wait_readable(inotify: &Inotify, wake: &OwnedFd, timeout: Duration) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use std::os::fd::AsFd;
    let ts = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let fd = inotify.as_fd();
    let mut fds = [
        PollFd::new(&fd, PollFlags::IN),
        PollFd::new(wake, PollFlags::IN),
    ];
    // EINTR or any other failure just means we look again a little early.
    let _ = poll(&mut fds, Some(&ts));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pod(image: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: {image}\n"
        )
    }

    #[test]
    fn rescan_without_events_notices_changed_files_and_settling_files_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("p.yaml");
        std::fs::write(&f, pod("busybox:1")).expect("write");
        let mut r = Reloader::new(WatchConfig::new(
            dir.path(),
            NodeInfo::new("n", BTreeMap::new(), vec![]),
        ));
        let none = HashSet::new();
        let uid1 = r
            .rescan(&none, &none)
            .pods
            .get(&f)
            .expect("pod")
            .uid
            .clone();
        // an edit with no event (as after IN_Q_OVERFLOW): the stamp changed, so it is re-read
        std::fs::write(&f, pod("busybox:22")).expect("edit");
        let uid2 = r
            .rescan(&none, &none)
            .pods
            .get(&f)
            .expect("pod")
            .uid
            .clone();
        assert_ne!(uid1, uid2);
        // while a file is settling (events still arriving) its last outcome is kept
        std::fs::write(&f, pod("busybox:333")).expect("edit");
        let settling: HashSet<PathBuf> = [f.clone()].into();
        assert_eq!(
            r.rescan(&settling, &none)
                .pods
                .get(&f)
                .map(|p| p.uid.clone()),
            Some(uid2.clone())
        );
        let uid3 = r
            .rescan(&none, &settling)
            .pods
            .get(&f)
            .expect("pod")
            .uid
            .clone();
        assert_ne!(uid3, uid2);
        // config.seen stays the same for an unchanged UID across re-reads
        let seen = |r: &Reloader| {
            r.desired()
                .pods
                .get(&f)
                .and_then(|p| p.pod.metadata.annotations.clone())
                .and_then(|a| a.get(identity::CONFIG_SEEN).cloned())
        };
        let before = seen(&r);
        let _ = r.rescan(&none, &settling);
        assert_eq!(seen(&r), before);
    }
}
