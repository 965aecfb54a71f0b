//! The pod's QoS class as the kubelet computes it (`GetPodQOS`), and the OOM score
//! adjustment it gives each container (`GetContainerOOMScoreAdjust`).

use k8s_openapi::api::core::v1::{Container, Pod};

use super::quantity::Quantity;

/// Kubernetes QoS classes; each is a level of the cgroup tree (`pods/<qos>/pod<uid>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum QosClass {
    /// Every container has equal CPU and memory requests and limits.
    Guaranteed,
    /// Some request or limit, not Guaranteed.
    Burstable,
    /// No CPU or memory requests or limits at all.
    BestEffort,
}

impl QosClass {
    /// The class as Kubernetes writes it in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }

    /// The cgroup level name (`guaranteed`, `burstable`, `besteffort`).
    pub fn cgroup_dir(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "guaranteed",
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "besteffort",
        }
    }
}

/// The OOM score adjustment the kubelet gives Guaranteed and node-critical pods.
pub const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
/// The OOM score adjustment of BestEffort pods.
pub const BESTEFFORT_OOM_SCORE_ADJ: i32 = 1000;

fn quantity(c: &Container, requests: bool, name: &str) -> Option<Quantity> {
    let r = c.resources.as_ref()?;
    let map = if requests {
        r.requests.as_ref()
    } else {
        r.limits.as_ref()
    }?;
    Quantity::parse(&map.get(name)?.0).ok()
}

/// The QoS class of a (defaulted) pod.
pub fn pod_qos(pod: &Pod) -> QosClass {
    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        for res in ["cpu", "memory"] {
            let req = quantity(c, true, res).filter(|q| q.milli_value() > 0);
            let lim = quantity(c, false, res).filter(|q| q.milli_value() > 0);
            any |= req.is_some() || lim.is_some();
            match (req, lim) {
                (Some(r), Some(l)) if r == l => {}
                (None, Some(_)) => {} // requests default to limits
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

/// True for a static pod with `priorityClassName: system-node-critical` (every static pod
/// is critical to the kubelet; node-critical ones are the last the OOM killer picks).
pub fn is_node_critical(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.priority_class_name.as_deref())
        == Some("system-node-critical")
}

/// `oom_score_adj` for a container, given the node's memory capacity in bytes.
pub fn oom_score_adj(pod: &Pod, container: &Container, memory_capacity: i64) -> i32 {
    if is_node_critical(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match pod_qos(pod) {
        QosClass::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => BESTEFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {
            let request = quantity(container, true, "memory")
                .map(|q| q.value())
                .unwrap_or(0);
            let capacity = memory_capacity.max(1);
            let adj = 1000 - (1000i128 * i128::from(request) / i128::from(capacity));
            let adj = i32::try_from(adj).unwrap_or(i32::MIN);
            if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
                1000 + GUARANTEED_OOM_SCORE_ADJ
            } else if adj == BESTEFFORT_OOM_SCORE_ADJ {
                adj - 1
            } else {
                adj
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: &[&str], critical: bool) -> Pod {
        let mut text = String::from("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n");
        if critical {
            text.push_str("  priorityClassName: system-node-critical\n");
        }
        text.push_str("  containers:\n");
        for (i, r) in resources.iter().enumerate() {
            text.push_str(&format!(
                "  - name: c{i}\n    image: i\n    resources: {r}\n"
            ));
        }
        let mut p = crate::manifest::decode(std::path::Path::new("/q.yaml"), text.as_bytes())
            .expect("decodes")
            .pod;
        crate::pod::defaults::apply_defaults(&mut p);
        p
    }

    #[test]
    fn qos_class_table() {
        let table: &[(&[&str], QosClass)] = &[
            (&["{}"], QosClass::BestEffort),
            (&["{}", "{}"], QosClass::BestEffort),
            (&["{limits: {cpu: 1, memory: 1Gi}}"], QosClass::Guaranteed),
            (
                &["{limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 1000m, memory: 1Gi}}"],
                QosClass::Guaranteed,
            ),
            (
                &["{limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 500m}}"],
                QosClass::Burstable,
            ),
            (&["{limits: {cpu: 1}}"], QosClass::Burstable),
            (&["{requests: {memory: 1Gi}}"], QosClass::Burstable),
            (
                &["{limits: {cpu: 1, memory: 1Gi}}", "{}"],
                QosClass::Burstable,
            ),
        ];
        for (res, want) in table {
            assert_eq!(pod_qos(&pod(res, false)), *want, "{res:?}");
        }
    }

    #[test]
    fn oom_score_adj_table() {
        let gib = 1i64 << 30;
        let cap = 4 * gib;
        let adj = |res: &str, critical: bool| {
            let p = pod(&[res], critical);
            let c = p
                .spec
                .as_ref()
                .map(|s| s.containers[0].clone())
                .expect("container");
            oom_score_adj(&p, &c, cap)
        };
        assert_eq!(adj("{}", false), 1000);
        assert_eq!(adj("{limits: {cpu: 1, memory: 1Gi}}", false), -997);
        assert_eq!(adj("{requests: {memory: 1Gi}}", false), 750);
        assert_eq!(
            adj("{requests: {memory: 1Ki}}", false),
            999,
            "never equal to BestEffort"
        );
        assert_eq!(
            adj("{requests: {memory: 8Gi}}", false),
            3,
            "never below Guaranteed + 1000"
        );
        assert_eq!(adj("{requests: {cpu: 100m}}", false), 999);
        assert_eq!(
            adj("{requests: {memory: 1Gi}}", true),
            -997,
            "node-critical static pods"
        );
        assert_eq!(adj("{}", true), -997);
    }
}
