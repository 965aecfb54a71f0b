//! The task's view of the pods bound to this node: the last list, its own answers (create,
//! patch, delete) and the watch events. Watch events can arrive after the task already stored
//! a newer answer of its own (the DELETED event of a mirror it just replaced, say), so an event
//! is applied only if its resourceVersion is newer than anything seen for that pod name — or
//! than the list it follows. resourceVersions are opaque to clients in principle; every API
//! server backed by etcd gives integers, and when one does not parse the event is applied.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Pod;

use super::decide::PodKey;

/// Pods on this node by `(namespace, name)`, with per-name resourceVersion floors.
#[derive(Debug, Default)]
pub struct PodCache {
    pods: BTreeMap<PodKey, Pod>,
    floor: HashMap<PodKey, u64>,
    list_rv: u64,
}

fn rv(pod: &Pod) -> Option<u64> {
    pod.metadata.resource_version.as_deref()?.parse().ok()
}

/// `(namespace, name)` of an API pod.
pub fn key_of(pod: &Pod) -> PodKey {
    let m = &pod.metadata;
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

impl PodCache {
    /// Replace everything with a list taken at `list_rv`.
    pub fn replace(&mut self, pods: Vec<Pod>, list_rv: Option<&str>) {
        self.list_rv = list_rv.and_then(|v| v.parse().ok()).unwrap_or(0);
        self.floor.clear();
        self.pods = pods.into_iter().map(|p| (key_of(&p), p)).collect();
    }

    /// Store an answer of the API server to our own request (always the latest we know).
    pub fn put(&mut self, pod: Pod) {
        let key = key_of(&pod);
        self.raise(&key, rv(&pod));
        self.pods.insert(key, pod);
    }

    /// Forget a pod we deleted (or found gone); `answer` is the deleted object if returned.
    pub fn forget(&mut self, key: &PodKey, answer: Option<&Pod>) {
        if let Some(old) = self.pods.remove(key) {
            self.raise(key, rv(&old));
        }
        self.raise(key, answer.and_then(rv));
    }

    /// Apply a watched ADDED/MODIFIED; false when it is older than what we know.
    pub fn watched_upsert(&mut self, pod: Pod) -> bool {
        let key = key_of(&pod);
        if !self.is_new(&key, &pod) {
            return false;
        }
        self.put(pod);
        true
    }

    /// Apply a watched DELETED; false when it is about an older incarnation.
    pub fn watched_delete(&mut self, pod: &Pod) -> bool {
        let key = key_of(pod);
        if !self.is_new(&key, pod) {
            return false;
        }
        self.forget(&key, Some(pod));
        true
    }

    /// The pod under `key`.
    pub fn get(&self, key: &PodKey) -> Option<&Pod> {
        self.pods.get(key)
    }

    /// All pods, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&PodKey, &Pod)> {
        self.pods.iter()
    }

    fn is_new(&self, key: &PodKey, pod: &Pod) -> bool {
        let floor = self.floor.get(key).copied().unwrap_or(0).max(self.list_rv);
        rv(pod).is_none_or(|v| v > floor)
    }

    fn raise(&mut self, key: &PodKey, rv: Option<u64>) {
        if let Some(v) = rv {
            let f = self.floor.entry(key.clone()).or_insert(0);
            *f = (*f).max(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(uid: &str, rv: u64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("etcd-n1".into()),
                namespace: Some("kube-system".into()),
                uid: Some(uid.into()),
                resource_version: Some(rv.to_string()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }
    fn uid_of(c: &PodCache) -> Option<String> {
        c.get(&("kube-system".into(), "etcd-n1".into()))
            .and_then(|p| p.metadata.uid.clone())
    }

    #[test]
    fn late_delete_of_a_replaced_mirror_does_not_remove_its_successor() {
        let mut c = PodCache::default();
        c.replace(vec![pod("p1", 5)], Some("5"));
        c.forget(&key_of(&pod("p1", 5)), None); // we deleted p1 ...
        c.put(pod("p2", 7)); // ... and created p2
        assert!(!c.watched_delete(&pod("p1", 6)), "DELETED p1 arrives late");
        assert!(
            !c.watched_upsert(pod("p2", 7)),
            "our own create echoed back"
        );
        assert_eq!(uid_of(&c).as_deref(), Some("p2"));
    }

    #[test]
    fn late_modified_of_a_deleted_pod_does_not_resurrect_it() {
        let mut c = PodCache::default();
        c.replace(vec![], Some("1"));
        c.put(pod("p1", 3));
        c.forget(&key_of(&pod("p1", 3)), Some(&pod("p1", 4)));
        assert!(!c.watched_upsert(pod("p1", 3)));
        assert_eq!(uid_of(&c), None);
    }

    #[test]
    fn newer_events_apply_and_events_older_than_the_list_do_not() {
        let mut c = PodCache::default();
        c.replace(vec![pod("p1", 10)], Some("12"));
        assert!(!c.watched_upsert(pod("p0", 11)), "older than the list");
        assert!(c.watched_upsert(pod("p1", 13)));
        assert!(c.watched_delete(&pod("p1", 14)));
        assert_eq!(uid_of(&c), None);
        assert!(
            c.watched_upsert(pod("p9", 20)),
            "re-created by someone else"
        );
        assert_eq!(uid_of(&c).as_deref(), Some("p9"));
    }

    #[test]
    fn unparsable_resource_versions_are_applied() {
        let mut c = PodCache::default();
        let mut p = pod("p1", 1);
        p.metadata.resource_version = Some("opaque".into());
        assert!(c.watched_upsert(p.clone()));
        assert!(c.watched_delete(&p));
    }
}
