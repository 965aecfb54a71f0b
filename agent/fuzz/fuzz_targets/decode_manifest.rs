//! Coverage-guided fuzzing of the manifest pipeline: bytes → decode → default → validate →
//! identity → node selection → OCI translation. Must never panic, hang or exhaust memory.
//! Run: `scripts/fuzz-manifest [SECONDS]` (nightly via RUSTC_BOOTSTRAP, see the script).
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use podvisor::pod::{NodeInfo, load};
use podvisor::translate::{self, ContainerInput, ImageDefaults, PodContext};

fuzz_target!(|data: &[u8]| {
    let node = NodeInfo::new("fuzz-node", BTreeMap::new(), vec![]);
    let Ok(pod) = load(Path::new("/m/fuzz.yaml"), data, &node, &|_| String::new()) else {
        return;
    };
    let ctx = PodContext::new("/pods/x");
    let image = ImageDefaults {
        cmd: vec!["sh".into()],
        ..Default::default()
    };
    let rootfs = PathBuf::from("/rootfs");
    let read = |_: &Path| Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    let input = ContainerInput {
        image: Some(&image),
        rootfs: &rootfs,
        passwd: "",
        group: "",
        read_file: &read,
    };
    let spec = pod.pod.spec.clone().unwrap_or_default();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        let _ = translate::container_spec(&pod, c, &input, &ctx);
    }
});
