//! `/metrics`: Prometheus text rendered from the status store.
//!
//! Gauges are computed from the current snapshot at each scrape (pods by phase, restart
//! counts, manifests in error); the start latency histogram accumulates in the store.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::store::StatusStore;

type Labels = Vec<(String, String)>;

/// Renders the metrics in the Prometheus/OpenMetrics text format.
pub fn render(store: &StatusStore) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("podvisor");

    let phases = Family::<Labels, Gauge>::default();
    for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
        phases
            .get_or_create(&vec![("phase".to_string(), phase.to_string())])
            .set(0);
    }
    let restarts = Family::<Labels, Counter>::default();
    store.with_pods(|pods| {
        for entry in pods {
            let status = entry.pod.status.as_ref();
            let phase = status
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into());
            phases
                .get_or_create(&vec![("phase".to_string(), phase)])
                .inc();
            let meta = &entry.pod.metadata;
            let all = status.into_iter().flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            });
            for c in all {
                let labels = vec![
                    (
                        "namespace".to_string(),
                        meta.namespace.clone().unwrap_or_default(),
                    ),
                    ("pod".to_string(), meta.name.clone().unwrap_or_default()),
                    ("container".to_string(), c.name.clone()),
                ];
                restarts
                    .get_or_create(&labels)
                    .inc_by(u64::try_from(c.restart_count).unwrap_or(0));
            }
        }
    });
    registry.register("pods", "Static pods by phase", phases);
    registry.register(
        "container_restarts",
        "Container restarts since the pod was created",
        restarts,
    );
    let errors = Gauge::<i64>::default();
    errors.set(i64::try_from(store.manifest_errors().len()).unwrap_or(i64::MAX));
    registry.register(
        "manifest_errors",
        "Manifests that currently fail to load",
        errors,
    );
    registry.register(
        "pod_start_latency_seconds",
        "Manifest seen to first workload process running",
        store.start_latency().clone(),
    );
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}
