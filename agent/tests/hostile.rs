//! Hostile input: every bad file gives a clear error naming the file, nothing panics or
//! hangs, and the good file next to them still gives its pod.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use podvisor::manifest::watch::{Reloader, WatchConfig};
use podvisor::manifest::{ManifestError, Problem};
use podvisor::pod::NodeInfo;

const GOOD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: good\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n";

fn alias_bomb() -> String {
    let mut s = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
    let mut prev = "a";
    for n in names {
        s.push_str(&format!(
            "{n}: &{n} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
        prev = n;
    }
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: bomb\n  annotations:\n    x: y\n{s}")
}

fn hostile_files() -> Vec<(&'static str, Vec<u8>)> {
    let mut garbage = Vec::with_capacity(4096);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push((x & 0xff) as u8);
    }
    let mut big = GOOD.as_bytes().to_vec();
    big.extend(std::iter::repeat_n(b'#', 11 * 1024 * 1024));
    let deep_flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut deep_block = String::new();
    for i in 0..1000 {
        deep_block.push_str(&" ".repeat(i));
        deep_block.push_str("a:\n");
    }
    let deep_json = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    vec![
        ("empty.yaml", Vec::new()),
        ("blank.yaml", b"   \n\n# only a comment\n".to_vec()),
        ("garbage.yaml", garbage),
        ("big.yaml", big),
        ("bomb.yaml", alias_bomb().into_bytes()),
        ("deep-flow.yaml", deep_flow.into_bytes()),
        ("deep-block.yaml", deep_block.into_bytes()),
        ("deep.json", deep_json.into_bytes()),
        (
            "kind.yaml",
            b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n".to_vec(),
        ),
        (
            "noname.yaml",
            GOOD.replace("  name: good\n", "  labels: {a: b}\n")
                .into_bytes(),
        ),
        ("multi.yaml", format!("{GOOD}---\n{GOOD}").into_bytes()),
        ("scalar.yaml", b"just a string\n".to_vec()),
        ("list.yaml", b"- a\n- b\n".to_vec()),
        (
            "tabs.yaml",
            b"apiVersion: v1\nkind: Pod\nmetadata:\n\tname: x\n".to_vec(),
        ),
        (
            "nulls.yaml",
            b"apiVersion: v1\nkind: Pod\nmetadata: null\nspec: null\n".to_vec(),
        ),
        (
            "badtypes.yaml",
            b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\nspec:\n  containers: {a: 1}\n"
                .to_vec(),
        ),
        ("nokind.json", b"{\"metadata\":{\"name\":\"x\"}}".to_vec()),
        (
            "truncated.json",
            b"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\"".to_vec(),
        ),
    ]
}

#[test]
fn hostile_files_give_clear_errors_and_leave_good_files_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("good.yaml"), GOOD).expect("write");
    for (name, bytes) in hostile_files() {
        std::fs::write(dir.path().join(name), bytes).expect("write");
    }
    let node = NodeInfo::new("n1", BTreeMap::new(), vec![]);
    let mut reloader = Reloader::new(WatchConfig::new(dir.path(), node));
    let set = reloader.rescan(&HashSet::new(), &HashSet::new()).clone();
    assert_eq!(
        set.pods.len(),
        1,
        "only the good file runs: {:?}",
        set.pods.keys().collect::<Vec<_>>()
    );
    assert!(set.pods.contains_key(&dir.path().join("good.yaml")));
    let err = |name: &str| -> ManifestError {
        match set.problems.get(&dir.path().join(name)) {
            Some(Problem::Invalid {
                error,
                kept_uid: None,
            }) => error.clone(),
            other => panic!("{name}: {other:?}"),
        }
    };
    let expect = |name: &str, check: &dyn Fn(&ManifestError) -> bool, text: &str| {
        let e = err(name);
        let msg = e.to_string();
        assert!(check(&e), "{name}: unexpected error {e:?}");
        assert!(
            msg.contains(name),
            "{name}: message does not name the file: {msg}"
        );
        assert!(msg.contains(text), "{name}: message lacks {text:?}: {msg}");
    };
    expect(
        "empty.yaml",
        &|e| matches!(e, ManifestError::Empty { .. }),
        "empty",
    );
    expect(
        "blank.yaml",
        &|e| matches!(e, ManifestError::Empty { .. }),
        "empty",
    );
    expect(
        "garbage.yaml",
        &|e| matches!(e, ManifestError::Syntax { .. }),
        "UTF-8",
    );
    expect(
        "big.yaml",
        &|e| matches!(e, ManifestError::TooLarge { .. }),
        "over the limit",
    );
    expect(
        "bomb.yaml",
        &|e| matches!(e, ManifestError::Syntax { .. }),
        "YAML",
    );
    expect(
        "deep-flow.yaml",
        &|e| matches!(e, ManifestError::Syntax { .. }),
        "YAML",
    );
    expect(
        "deep-block.yaml",
        &|e| matches!(e, ManifestError::Syntax { .. }),
        "YAML",
    );
    expect(
        "deep.json",
        &|e| matches!(e, ManifestError::Syntax { .. }),
        "recursion",
    );
    expect(
        "kind.yaml",
        &|e| matches!(e, ManifestError::WrongKind { .. }),
        "\"Secret\"",
    );
    expect(
        "noname.yaml",
        &|e| matches!(e, ManifestError::Invalid { .. }),
        "metadata.name: required",
    );
    expect(
        "multi.yaml",
        &|e| matches!(e, ManifestError::MultipleDocuments { count: 2, .. }),
        "2 YAML documents",
    );
    expect(
        "scalar.yaml",
        &|e| matches!(e, ManifestError::WrongKind { .. }),
        "kind",
    );
    expect(
        "list.yaml",
        &|e| matches!(e, ManifestError::WrongKind { .. }),
        "kind",
    );
    expect(
        "tabs.yaml",
        &|e| matches!(e, ManifestError::Syntax { .. }),
        "YAML",
    );
    expect(
        "nulls.yaml",
        &|e| matches!(e, ManifestError::Invalid { .. }),
        "metadata.name",
    );
    expect(
        "badtypes.yaml",
        &|e| matches!(e, ManifestError::Invalid { .. }),
        "spec.containers",
    );
    expect(
        "nokind.json",
        &|e| matches!(e, ManifestError::WrongKind { .. }),
        "kind",
    );
    expect(
        "truncated.json",
        &|e| matches!(e, ManifestError::Syntax { .. }),
        "JSON",
    );
}

#[test]
fn each_hostile_file_alone_fails_without_panicking() {
    let node = NodeInfo::new("n1", BTreeMap::new(), vec![]);
    for (name, bytes) in hostile_files() {
        let path = Path::new("/m").join(name);
        let r = std::panic::catch_unwind(|| {
            podvisor::pod::load(&path, &bytes, &node, &|_| String::new())
        });
        match r {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => panic!("{name} was accepted"),
            Err(_) => panic!("{name} panicked"),
        }
    }
}
