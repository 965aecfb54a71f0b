//! Property-based fuzzing of the manifest pipeline (decode → default → validate → identity
//! → translate): arbitrary bytes and mutated real manifests must give a value or an error,
//! never a panic. (The cargo-fuzz target in `agent/fuzz/` drives the same entry point with
//! coverage guidance; this runs in every `cargo test`.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use podvisor::pod::{NodeInfo, load};
use podvisor::translate::{self, ContainerInput, ImageDefaults, PodContext};
use proptest::prelude::*;

fn fixtures() -> &'static [Vec<u8>] {
    static FIXTURES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    FIXTURES.get_or_init(load_fixtures)
}

fn load_fixtures() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/manifests");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    out.sort();
    out
}

/// Runs the whole pure pipeline on `bytes`.
fn pipeline(bytes: &[u8]) {
    let node = NodeInfo::new("fuzz-node", BTreeMap::new(), vec![]);
    let Ok(pod) = load(Path::new("/m/fuzz.yaml"), bytes, &node, &|_| String::new()) else {
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
    let _ = translate::pod_files(&pod, &ctx, "", "");
}

/// A mutation of a fixture: overwrite, insert or delete a byte range.
fn mutate(base: &[u8], pos: usize, len: usize, kind: u8, fill: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    if v.is_empty() {
        return fill.to_vec();
    }
    let pos = pos % v.len();
    let end = (pos + len).min(v.len());
    match kind % 3 {
        0 => {
            for (i, b) in v[pos..end].iter_mut().enumerate() {
                *b = fill.get(i % fill.len().max(1)).copied().unwrap_or(b' ');
            }
        }
        1 => {
            v.splice(pos..pos, fill.iter().copied());
        }
        _ => {
            v.drain(pos..end);
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        pipeline(&bytes);
    }

    #[test]
    fn yaml_shaped_text_never_panics(text in "(apiVersion: v1\nkind: Pod\n)?([a-zA-Z:{}\\[\\],&*!|>'\"#\\- \n0-9.$()]{0,400})") {
        pipeline(text.as_bytes());
    }

    #[test]
    fn mutated_real_manifests_never_panic(
        which in 0usize..16,
        pos in any::<usize>(),
        len in 0usize..64,
        kind in any::<u8>(),
        fill in proptest::collection::vec(prop_oneof![
            Just(b' '), Just(b'\n'), Just(b':'), Just(b'-'), Just(b'&'), Just(b'*'), Just(b'{'), Just(b'['),
            Just(b'"'), Just(b'0'), Just(b'$'), Just(b'('), any::<u8>()
        ], 0..32),
    ) {
        let fx = fixtures();
        let base = &fx[which % fx.len()];
        pipeline(&mutate(base, pos, len, kind, &fill));
    }
}
