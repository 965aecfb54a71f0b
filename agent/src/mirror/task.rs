//! The mirror task: one thread that interprets `decide`'s actions against the API server,
//! keeps the Node and its Lease alive, patches statuses and sends events. It reads the input
//! store and never blocks its writers; while the API server is down it backs off and
//! catches up from the latest snapshot (nothing queues up but the bounded event queue).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::backoff::Backoff;
use super::cache::PodCache;
use super::config::{MirrorConfig, MirrorError};
use super::decide::{Action, DeleteReason, DesiredMirror, ObservedPod, PodKey, decide};
use super::events::{EventLimiter, event_object};
use super::input::{MirrorHandle, Shared, StaticPodState, WatchItem};
use super::log_once::LogOnce;
use super::pod::{mirror_hash, mirror_pod, status_contains, status_json, status_patch};
use super::watch::{pods_on_node_path, spawn_watch};
use crate::kube::{ApiClient, KubeError};

/// The patch type of status patches (conditions merge by type).
pub(super) const STRATEGIC: &str = "application/strategic-merge-patch+json";

/// Start the mirror task on its own thread.
pub fn spawn(
    client: ApiClient,
    config: MirrorConfig,
) -> std::io::Result<(MirrorHandle, JoinHandle<()>)> {
    let shared = Shared::new(config.timing.event_queue);
    let handle = MirrorHandle {
        shared: Arc::clone(&shared),
    };
    let task = Task::new(client, config, shared);
    let thread = std::thread::Builder::new()
        .name("mirror".into())
        .spawn(move || task.run())?;
    Ok((handle, thread))
}

#[derive(Debug)]
pub(super) struct Sent {
    uid: String,
    body: Value,
    at: Instant,
}

pub(super) struct Task {
    pub(super) client: ApiClient,
    pub(super) cfg: MirrorConfig,
    pub(super) shared: Arc<Shared>,
    pub(super) desired: BTreeMap<PodKey, StaticPodState>,
    pub(super) desired_version: u64,
    pub(super) node_uid: Option<String>,
    pub(super) lease: Option<Lease>,
    pub(super) lease_due: Instant,
    pub(super) node_status_due: Instant,
    pub(super) mirrors: PodCache,
    pub(super) list_due: Instant,
    pub(super) watch_gen: u64,
    pub(super) watch_running: bool,
    pub(super) watch_started: Instant,
    pub(super) sent: HashMap<PodKey, Sent>,
    pub(super) hold: HashMap<PodKey, Instant>,
    pub(super) status_due: Option<Instant>,
    pub(super) event_due: Option<Instant>,
    pub(super) limiter: EventLimiter,
    pub(super) backoff: Backoff,
    pub(super) retry_at: Option<Instant>,
    pub(super) log: LogOnce,
}

impl Task {
    fn new(client: ApiClient, cfg: MirrorConfig, shared: Arc<Shared>) -> Self {
        let now = Instant::now();
        let t = &cfg.timing;
        Self {
            limiter: EventLimiter::new(t.event_burst, t.event_interval, now),
            backoff: Backoff::new(t.backoff_min, t.backoff_max),
            client,
            shared,
            desired: BTreeMap::new(),
            desired_version: u64::MAX,
            node_uid: None,
            lease: None,
            lease_due: now,
            node_status_due: now,
            mirrors: PodCache::default(),
            list_due: now,
            watch_gen: 0,
            watch_running: false,
            watch_started: now,
            sent: HashMap::new(),
            hold: HashMap::new(),
            status_due: None,
            event_due: None,
            retry_at: None,
            log: LogOnce::default(),
            cfg,
        }
    }

    fn run(mut self) {
        loop {
            let deadline = self.next_deadline();
            let mut state = self.shared.wait(deadline);
            if state.stop {
                return;
            }
            if state.pods_version != self.desired_version {
                self.desired = state.pods.clone();
                self.desired_version = state.pods_version;
            }
            let items: Vec<WatchItem> = state.watch.drain(..).collect();
            let overflow = std::mem::take(&mut state.watch_overflow);
            drop(state);
            self.apply_watch(items, overflow);
            let now = Instant::now();
            if self.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            match self.sync(now) {
                Ok(()) => {
                    self.retry_at = None;
                    self.backoff.reset();
                    self.log.ok("sync");
                }
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    self.log
                        .failed("sync", &e.key(), &format_args!("{e} (retry in {delay:?})"));
                    self.retry_at = Some(now + delay);
                    if matches!(e, MirrorError::Kube(KubeError::Transport { .. })) {
                        // The watch connection may be dead without knowing it (a blackholed
                        // server): abandon it; the next successful pass re-lists and re-watches.
                        self.watch_gen += 1;
                        self.watch_running = false;
                        self.list_due = now;
                    }
                }
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        if let Some(t) = self.retry_at {
            return t;
        }
        [
            Some(self.lease_due),
            Some(self.node_status_due),
            Some(self.list_due),
            self.status_due,
            self.event_due,
        ]
        .into_iter()
        .flatten()
        .chain(self.hold.values().copied())
        .min()
        .unwrap_or_else(|| Instant::now() + self.cfg.timing.resync)
    }

    fn apply_watch(&mut self, items: Vec<WatchItem>, overflow: bool) {
        if overflow {
            self.list_due = Instant::now();
        }
        for item in items {
            match item {
                WatchItem::Upsert(g, pod) if g == self.watch_gen => {
                    self.mirrors.watched_upsert(*pod);
                }
                WatchItem::Deleted(g, pod) if g == self.watch_gen => {
                    self.mirrors.watched_delete(&pod);
                }
                WatchItem::Ended(g) if g == self.watch_gen => {
                    self.watch_running = false;
                    self.list_due = self
                        .list_due
                        .min(self.watch_started + Duration::from_secs(1));
                }
                _ => {}
            }
        }
    }

    /// One pass: node, list if due, reconcile, statuses (first: they are what people watch),
    /// then lease and node heartbeats, then events.
    fn sync(&mut self, now: Instant) -> Result<(), MirrorError> {
        self.ensure_node()?;
        if now >= self.list_due {
            self.list(now)?;
        }
        self.reconcile(now)?;
        self.sync_statuses(now)?;
        if now >= self.lease_due {
            self.renew_lease()?;
            self.lease_due = now + self.cfg.timing.lease_renew;
        }
        if now >= self.node_status_due {
            self.patch_node_status()?;
            self.node_status_due = now + self.cfg.timing.node_status;
        }
        self.send_events(now)?;
        Ok(())
    }

    /// An answer from the API server is logged once and tolerated; no answer aborts the pass.
    pub(super) fn soft<T>(
        &mut self,
        what: &str,
        r: Result<T, KubeError>,
    ) -> Result<Option<T>, MirrorError> {
        match r {
            Ok(v) => {
                self.log.ok(what);
                Ok(Some(v))
            }
            Err(e @ KubeError::Api { .. }) => {
                self.log.failed(what, &e.log_key(), &e);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn list(&mut self, now: Instant) -> Result<(), MirrorError> {
        let list: k8s_openapi::List<Pod> =
            self.client.get(&pods_on_node_path(&self.cfg.node_name))?;
        self.mirrors
            .replace(list.items, list.metadata.resource_version.as_deref());
        self.list_due = now + self.cfg.timing.resync;
        if !self.watch_running {
            let rv = list.metadata.resource_version.unwrap_or_default();
            self.watch_gen += 1;
            self.watch_started = now;
            let spawned = spawn_watch(
                self.client.clone(),
                &self.cfg.node_name,
                &rv,
                self.watch_gen,
                self.cfg.timing.watch_timeout,
                Arc::clone(&self.shared),
            );
            match spawned {
                Ok(()) => self.watch_running = true,
                Err(e) => {
                    tracing::warn!("mirror: start pod watch thread: {e}; relying on re-lists")
                }
            }
        }
        Ok(())
    }

    fn reconcile(&mut self, now: Instant) -> Result<(), MirrorError> {
        let Some(node_uid) = self.node_uid.clone() else {
            return Ok(());
        };
        self.hold.retain(|_, t| *t > now);
        let desired = self
            .desired
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    DesiredMirror {
                        hash: p.config_hash.clone(),
                        terminal: p.terminal(),
                    },
                )
            })
            .collect();
        let observed = self
            .mirrors
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    ObservedPod {
                        uid: p.metadata.uid.clone().unwrap_or_default(),
                        mirror_hash: mirror_hash(p).map(str::to_owned),
                        deleting: p.metadata.deletion_timestamp.is_some(),
                    },
                )
            })
            .collect();
        for action in decide(&desired, &observed) {
            match action {
                Action::Create(key) if !self.hold.contains_key(&key) => {
                    self.create(&key, &node_uid, now)?
                }
                Action::Create(_) => {}
                Action::Delete { key, uid, reason } => self.delete(&key, &uid, reason, now)?,
                Action::NameTaken(key) => {
                    self.log.failed(&format!("name-taken/{}/{}", key.0, key.1), "taken", &format_args!(
                        "pod {}/{} on this node is not a mirror pod: cannot mirror the static pod", key.0, key.1
                    ));
                }
            }
        }
        Ok(())
    }

    fn create(&mut self, key: &PodKey, node_uid: &str, now: Instant) -> Result<(), MirrorError> {
        let Some(sp) = self.desired.get(key) else {
            return Ok(());
        };
        let body = mirror_pod(&sp.pod, &sp.config_hash, &self.cfg.node_name, node_uid);
        let what = format!("create/{}/{}", key.0, key.1);
        match self
            .client
            .post::<Pod>(&format!("/api/v1/namespaces/{}/pods", key.0), &body)
        {
            Ok(pod) => {
                self.log.ok(&what);
                tracing::info!(pod = %key.1, namespace = %key.0, "created mirror pod");
                self.sent.remove(key);
                self.mirrors.put(pod);
            }
            Err(e) if e.is_conflict() => self.list_due = now,
            r => {
                if self.soft(&what, r)?.is_none() {
                    // Refused (e.g. the Node UID changed): hold this pod and re-check the node.
                    self.hold
                        .insert(key.clone(), now + self.cfg.timing.status_resend);
                    self.node_status_due = now;
                }
            }
        }
        Ok(())
    }

    fn delete(
        &mut self,
        key: &PodKey,
        uid: &str,
        reason: DeleteReason,
        now: Instant,
    ) -> Result<(), MirrorError> {
        let path = format!("/api/v1/namespaces/{}/pods/{}", key.0, key.1);
        let options = json!({
            "apiVersion": "v1", "kind": "DeleteOptions",
            "gracePeriodSeconds": 0, "preconditions": { "uid": uid },
        });
        match self.client.delete::<Value>(&path, &options) {
            Ok(answer) => {
                tracing::info!(pod = %key.1, namespace = %key.0, ?reason, "deleted mirror pod");
                // The answer is the deleted Pod (or a Status); its resourceVersion raises the floor.
                let pod = serde_json::from_value::<Pod>(answer).ok();
                self.mirrors.forget(key, pod.as_ref());
            }
            Err(e) if e.is_not_found() => {
                self.mirrors.forget(key, None);
            }
            Err(e) if e.is_conflict() => self.list_due = now,
            r => {
                self.soft(&format!("delete/{}/{}", key.0, key.1), r)?;
            }
        }
        Ok(())
    }

    fn sync_statuses(&mut self, now: Instant) -> Result<(), MirrorError> {
        let resend = self.cfg.timing.status_resend;
        self.status_due = None;
        let desired = &self.desired;
        self.sent.retain(|k, _| desired.contains_key(k));
        let mut work = Vec::new();
        for (key, sp) in &self.desired {
            let (Some(status), Some(mirror)) = (&sp.status, self.mirrors.get(key)) else {
                continue;
            };
            if mirror_hash(mirror) != Some(sp.config_hash.as_str())
                || mirror.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let uid = mirror.metadata.uid.clone().unwrap_or_default();
            let ours = status_json(status);
            let api = mirror
                .status
                .as_ref()
                .map(status_json)
                .unwrap_or(Value::Null);
            if status_contains(&api, &ours) {
                continue;
            }
            if let Some(s) = self
                .sent
                .get(key)
                .filter(|s| s.uid == uid && s.body == ours)
            {
                if now < s.at + resend {
                    let due = s.at + resend;
                    self.status_due = Some(self.status_due.map_or(due, |d| d.min(due)));
                    continue;
                }
            }
            work.push((key.clone(), uid, ours));
        }
        for (key, uid, ours) in work {
            let path = format!("/api/v1/namespaces/{}/pods/{}/status", key.0, key.1);
            let result = self
                .client
                .patch::<Pod>(&path, STRATEGIC, &status_patch(&uid, &ours));
            // Measured after the answer, so a re-send is never sooner than `resend` after it.
            let at = Instant::now();
            match result {
                Ok(pod) => {
                    let api = pod.status.as_ref().map(status_json).unwrap_or(Value::Null);
                    if !status_contains(&api, &ours) {
                        let due = at + resend;
                        self.status_due = Some(self.status_due.map_or(due, |d| d.min(due)));
                    }
                    self.mirrors.put(pod);
                }
                Err(e) if e.is_not_found() => {
                    self.mirrors.forget(&key, None);
                }
                Err(e) if e.is_conflict() => self.list_due = now,
                r => {
                    self.soft(&format!("status/{}/{}", key.0, key.1), r)?;
                }
            }
            self.sent.insert(
                key,
                Sent {
                    uid,
                    body: ours,
                    at,
                },
            );
        }
        Ok(())
    }

    fn send_events(&mut self, now: Instant) -> Result<(), MirrorError> {
        self.event_due = None;
        loop {
            let Some(pending) = self.shared.lock().events.pop() else {
                return Ok(());
            };
            if !self.limiter.admit(now) {
                self.event_due = Some(self.limiter.next_token(now));
                self.shared.lock().events.unpop(pending);
                return Ok(());
            }
            let key = &pending.event.pod;
            let uid = match (self.mirrors.get(key), self.desired.get(key)) {
                (Some(m), _) => m.metadata.uid.clone().unwrap_or_default(),
                (None, Some(sp)) => sp.config_hash.clone(),
                (None, None) => String::new(),
            };
            let body = event_object(&pending, &uid, &self.cfg.node_name);
            let path = format!("/api/v1/namespaces/{}/events", key.0);
            match self.client.post::<Value>(&path, &body) {
                Err(e @ KubeError::Transport { .. }) => {
                    self.shared.lock().events.unpop(pending);
                    return Err(e.into());
                }
                r => {
                    self.soft("events", r)?;
                }
            }
        }
    }
}
