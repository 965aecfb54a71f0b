//! The pod watch: one thread per watch call, `fieldSelector=spec.nodeName=<node>` (the only
//! pod watch the Node authorizer allows a node), forwarding each event into the task's input.
//! It ends with the stream (server timeout, error, 410 Gone); the task then re-lists and starts
//! the next one from the list's resourceVersion.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use super::input::{Shared, WatchItem};
use crate::kube::ApiClient;

/// The pod collection path restricted to this node, as list and watch must use it.
pub fn pods_on_node_path(node: &str) -> String {
    format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{node}")
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    type_: String,
    object: serde_json::Value,
}

/// Start watching from `resource_version`; events are tagged with `generation`.
pub(crate) fn spawn_watch(
    client: ApiClient,
    node: &str,
    resource_version: &str,
    generation: u64,
    server_timeout: Duration,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let path = format!(
        "{}&watch=true&resourceVersion={resource_version}&timeoutSeconds={}",
        pods_on_node_path(node),
        server_timeout.as_secs().max(1)
    );
    std::thread::Builder::new()
        .name("mirror-watch".into())
        .spawn(move || {
            if let Err(e) = run(&client, &path, generation, server_timeout, &shared) {
                tracing::debug!(error = %e, "pod watch ended");
            }
            shared.push_watch(WatchItem::Ended(generation));
        })?;
    Ok(())
}

fn run(
    client: &ApiClient,
    path: &str,
    generation: u64,
    server_timeout: Duration,
    shared: &Shared,
) -> Result<(), String> {
    let stream = client
        .watch(path, server_timeout + Duration::from_secs(15))
        .map_err(|e| e.to_string())?;
    for line in stream.lines() {
        let line = line.map_err(|e| format!("read watch stream: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event =
            serde_json::from_str(&line).map_err(|e| format!("decode watch event: {e}"))?;
        let item = match event.type_.as_str() {
            "ADDED" | "MODIFIED" => {
                let pod: Pod = serde_json::from_value(event.object)
                    .map_err(|e| format!("decode watched pod: {e}"))?;
                WatchItem::Upsert(generation, Box::new(pod))
            }
            "DELETED" => {
                let pod: Pod = serde_json::from_value(event.object)
                    .map_err(|e| format!("decode watched pod: {e}"))?;
                WatchItem::Deleted(generation, Box::new(pod))
            }
            "BOOKMARK" => continue,
            other => return Err(format!("watch {other}: {}", event.object)),
        };
        if shared.lock().stop {
            return Ok(());
        }
        shared.push_watch(item);
    }
    Ok(())
}
