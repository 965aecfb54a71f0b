//! The effects before a pod's containers start, computed elsewhere as data: write the pod's
//! managed files (`etc-hosts`, `resolv.conf`, `hostname`), make `shm/` and each container's
//! empty termination log, and prepare every volume (hostPath checks and creation, emptyDir
//! directories, downwardAPI files). Mounting tmpfs (`shm/`, Memory emptyDirs) and creating
//! namespaces stay with the supervisor, which owns mounts and processes.

use std::io;
use std::path::Path;

use super::volumes::{self, VolumePlan};
use super::{PodContext, PodFiles, TranslateError, pod_files, termination_log_path};
use crate::pod::StaticPod;

fn write_atomic(path: &Path, content: &str) -> io::Result<()> {
    let tmp = path.with_extension("podvisor-tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

/// Prepares the pod directory and volumes. `node_hosts`/`node_resolv` are the node's
/// `/etc/hosts` and `/etc/resolv.conf` text. Returns the files written and the volume plans.
pub fn prepare_pod(
    pod: &StaticPod,
    ctx: &PodContext,
    node_hosts: &str,
    node_resolv: &str,
) -> Result<(PodFiles, Vec<VolumePlan>), TranslateError> {
    let io_err = |what: String| {
        move |e: io::Error| TranslateError::Prepare {
            message: format!("{what}: {e}"),
        }
    };
    let dir = &ctx.pod_dir;
    std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    let files = pod_files(pod, ctx, node_hosts, node_resolv);
    for (name, content) in [
        ("etc-hosts", &files.etc_hosts),
        ("resolv.conf", &files.resolv_conf),
        ("hostname", &files.hostname),
    ] {
        let path = dir.join(name);
        write_atomic(&path, content).map_err(io_err(format!("write {}", path.display())))?;
    }
    let shm = dir.join("shm");
    std::fs::create_dir_all(&shm).map_err(io_err(format!("create {}", shm.display())))?;
    let spec = pod.pod.spec.clone().unwrap_or_default();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        let log = termination_log_path(ctx, &c.name);
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("create {}", parent.display())))?;
        }
        std::fs::write(&log, "").map_err(io_err(format!("create {}", log.display())))?;
    }
    let plans = volumes::plan_volumes(&pod.pod, ctx)?;
    for plan in &plans {
        volumes::prepare_volume(plan)?;
    }
    Ok((files, plans))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{NodeInfo, load};
    use std::collections::BTreeMap;

    #[test]
    fn prepares_files_logs_and_volumes_in_a_temp_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = tmp.path().join("host");
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {{app: x}}\nspec:\n  hostAliases: [{{ip: 10.1.1.1, hostnames: [db]}}]\n  containers:\n  - name: c\n    image: i\n  volumes:\n  - name: data\n    hostPath: {{path: {}/data, type: DirectoryOrCreate}}\n  - name: conf\n    hostPath: {{path: {}/etc/app.conf, type: FileOrCreate}}\n  - name: scratch\n    emptyDir: {{}}\n  - name: info\n    downwardAPI:\n      items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]\n",
            host.display(),
            host.display()
        );
        let node = NodeInfo::new("n1", BTreeMap::new(), vec![]);
        let pod = load(Path::new("/m/p.yaml"), text.as_bytes(), &node, &|_| {
            String::new()
        })
        .expect("valid");
        let mut ctx = PodContext::new(tmp.path().join("pods").join(&pod.uid));
        ctx.pod_ip = "10.88.0.5".to_owned();
        let (files, plans) = prepare_pod(&pod, &ctx, "", "nameserver 1.1.1.1\n").expect("prepared");
        let read = |p: &str| std::fs::read_to_string(ctx.pod_dir.join(p)).expect(p);
        assert_eq!(read("etc-hosts"), files.etc_hosts);
        assert!(
            files.etc_hosts.contains("10.88.0.5\tp-n1\n")
                && files.etc_hosts.contains("10.1.1.1\tdb\n"),
            "{}",
            files.etc_hosts
        );
        assert_eq!(read("resolv.conf"), "nameserver 1.1.1.1\n");
        assert_eq!(read("hostname"), "p-n1\n");
        assert_eq!(read("containers/c/termination-log"), "");
        assert!(ctx.pod_dir.join("shm").is_dir());
        assert!(host.join("data").is_dir() && host.join("etc/app.conf").is_file());
        assert!(ctx.pod_dir.join("volumes/scratch").is_dir());
        assert_eq!(read("volumes/info/labels"), "app=\"x\"");
        assert_eq!(plans.len(), 4);
    }
}
