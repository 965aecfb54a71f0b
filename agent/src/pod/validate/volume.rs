//! Validation of `spec.volumes`: one source per volume, the sources podvisor supports
//! (hostPath, emptyDir, downwardAPI) checked field by field, API-backed sources refused.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Volume;

use super::{Errors, check_quantity, is_dns_label};

/// Validates volumes and returns the name → volume map for mount checks.
pub(super) fn validate_volumes<'a>(
    volumes: &'a [Volume],
    errs: &mut Errors,
) -> BTreeMap<&'a str, &'a Volume> {
    let mut by_name = BTreeMap::new();
    for (i, v) in volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        if !is_dns_label(&v.name) {
            errs.push(
                format!("{path}.name"),
                format!("{:?} is not a DNS label", v.name),
            );
        }
        if by_name.insert(v.name.as_str(), v).is_some() {
            errs.push(
                format!("{path}.name"),
                format!("duplicate volume name {:?}", v.name),
            );
        }
        let refused: &[(&str, bool)] = &[
            ("secret", v.secret.is_some()),
            ("configMap", v.config_map.is_some()),
            ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
            ("projected", v.projected.is_some()),
            ("ephemeral", v.ephemeral.is_some()),
            ("csi", v.csi.is_some()),
        ];
        let unsupported: &[(&str, bool)] = &[
            ("nfs", v.nfs.is_some()),
            ("iscsi", v.iscsi.is_some()),
            ("image", v.image.is_some()),
            ("fc", v.fc.is_some()),
            ("rbd", v.rbd.is_some()),
            ("cephfs", v.cephfs.is_some()),
            ("gitRepo", v.git_repo.is_some()),
            ("glusterfs", v.glusterfs.is_some()),
            ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
            ("azureDisk", v.azure_disk.is_some()),
            ("azureFile", v.azure_file.is_some()),
            ("cinder", v.cinder.is_some()),
            ("flexVolume", v.flex_volume.is_some()),
            ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ];
        let supported = [
            v.host_path.is_some(),
            v.empty_dir.is_some(),
            v.downward_api.is_some(),
        ];
        let count = supported.iter().filter(|b| **b).count()
            + refused.iter().filter(|(_, b)| *b).count()
            + unsupported.iter().filter(|(_, b)| *b).count();
        if count > 1 {
            errs.push(path.clone(), "may not specify more than one volume type");
        }
        for (kind, _) in refused.iter().filter(|(_, b)| *b) {
            errs.push(format!("{path}.{kind}"), "static pods cannot use API-backed volumes (secrets, configMaps, service account tokens, PVCs); use hostPath");
        }
        for (kind, _) in unsupported.iter().filter(|(_, b)| *b) {
            errs.push(
                format!("{path}.{kind}"),
                "volume type not supported by podvisor",
            );
        }
        if let Some(hp) = v.host_path.as_ref() {
            if !hp.path.starts_with('/') {
                errs.push(format!("{path}.hostPath.path"), "must be an absolute path");
            }
            if hp.path.split('/').any(|c| c == "..") {
                errs.push(format!("{path}.hostPath.path"), "must not contain '..'");
            }
            if !matches!(
                hp.type_.as_deref().unwrap_or(""),
                "" | "DirectoryOrCreate"
                    | "Directory"
                    | "FileOrCreate"
                    | "File"
                    | "Socket"
                    | "CharDevice"
                    | "BlockDevice"
            ) {
                errs.push(format!("{path}.hostPath.type"), "must be one of \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice");
            }
        }
        if let Some(ed) = v.empty_dir.as_ref() {
            if !matches!(ed.medium.as_deref(), None | Some("" | "Memory")) {
                errs.push(format!("{path}.emptyDir.medium"), "must be \"\" or Memory");
            }
            if let Some(q) = ed.size_limit.as_ref() {
                check_quantity(&format!("{path}.emptyDir.sizeLimit"), &q.0, errs);
            }
        }
        if let Some(d) = v.downward_api.as_ref() {
            if d.default_mode.is_some_and(|m| !(0..=0o777).contains(&m)) {
                errs.push(
                    format!("{path}.downwardAPI.defaultMode"),
                    "must be between 0 and 0777",
                );
            }
            for (j, item) in d.items.iter().flatten().enumerate() {
                let ip = format!("{path}.downwardAPI.items[{j}]");
                if item.path.is_empty()
                    || item.path.starts_with('/')
                    || item.path.split('/').any(|c| c == "..")
                {
                    errs.push(format!("{ip}.path"), "must be a relative path without '..'");
                }
                if item.resource_field_ref.is_some() {
                    errs.push(
                        format!("{ip}.resourceFieldRef"),
                        "not supported by podvisor",
                    );
                }
                match item.field_ref.as_ref() {
                    Some(f) if is_volume_field_path(&f.field_path) => {}
                    Some(f) => errs.push(
                        format!("{ip}.fieldRef.fieldPath"),
                        format!("{:?} is not supported", f.field_path),
                    ),
                    None => errs.push(format!("{ip}.fieldRef"), "required"),
                }
            }
        }
    }
    by_name
}

/// Field paths a downwardAPI volume may expose.
fn is_volume_field_path(p: &str) -> bool {
    matches!(
        p,
        "metadata.name"
            | "metadata.namespace"
            | "metadata.uid"
            | "metadata.labels"
            | "metadata.annotations"
    ) || p.starts_with("metadata.labels['")
        || p.starts_with("metadata.annotations['")
}
