//! The manifest watcher on a real temporary directory with a real inotify: after each step
//! the desired set it reports is right. Waits are bounded (a step fails after 10 s without
//! the expected set), never sleeps used as assertions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use podvisor::manifest::watch::{WatchConfig, Watcher};
use podvisor::manifest::{DesiredSet, Problem};
use podvisor::pod::{NodeInfo, load};

const STEP_TIMEOUT: Duration = Duration::from_secs(10);

fn node() -> NodeInfo {
    NodeInfo::new("n1", BTreeMap::new(), vec![])
}

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {image}\n"
    )
}

/// The UID `text` gets at `path` (what the watcher must report).
fn uid(path: &Path, text: &str) -> String {
    load(path, text.as_bytes(), &node(), &|_| String::new())
        .expect("valid")
        .uid
}

struct Harness {
    rx: Receiver<DesiredSet>,
    last: Option<DesiredSet>,
    history: Vec<DesiredSet>,
    sends: usize,
    _watcher: Watcher,
}

impl Harness {
    fn start(path: &Path) -> Harness {
        let (tx, rx) = channel();
        let mut config = WatchConfig::new(path, node());
        config.rescan_interval = Duration::from_secs(3600); // inotify must do the work
        let watcher = Watcher::spawn(config, move |set: &DesiredSet| {
            let _ = tx.send(set.clone());
        })
        .expect("spawn watcher");
        Harness {
            rx,
            last: None,
            history: Vec::new(),
            sends: 0,
            _watcher: watcher,
        }
    }

    /// Waits (bounded) until the reported set satisfies `want`; returns it.
    fn wait(&mut self, step: &str, want: impl Fn(&DesiredSet) -> bool) -> DesiredSet {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(last) = self.last.as_ref().filter(|l| want(l)) {
                return last.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(set) => {
                    self.sends += 1;
                    self.history.push(set.clone());
                    self.last = Some(set);
                }
                Err(_) => panic!(
                    "step {step:?}: desired set not reached within {STEP_TIMEOUT:?}; last: {:?}",
                    self.last.as_ref().map(DesiredSet::uids)
                ),
            }
        }
    }

    /// Waits until the set is exactly `want` (path → UID).
    fn expect(&mut self, step: &str, want: &[(&Path, &str)]) -> DesiredSet {
        let want: BTreeMap<PathBuf, String> = want
            .iter()
            .map(|(p, u)| (p.to_path_buf(), (*u).to_owned()))
            .collect();
        self.wait(step, |s| s.uids() == want)
    }
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    std::fs::write(&tmp, text).expect("write tmp");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn watcher_reports_the_right_desired_set_after_each_step() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("manifests");
    let a = dir.join("a.yaml");
    let b = dir.join("b.yaml");
    let c = dir.join("c.yaml");
    let d = dir.join("d.yaml");
    let mut h = Harness::start(&dir);

    // missing directory: no pods
    h.expect("missing directory", &[]);
    // the directory appears with a file in it
    std::fs::create_dir(&dir).expect("mkdir");
    let a1 = pod("a", "busybox:1");
    std::fs::write(&a, &a1).expect("write a");
    h.expect("create", &[(&a, &uid(&a, &a1))]);

    // edit in place (truncate + write)
    let a2 = pod("a", "busybox:2");
    std::fs::write(&a, &a2).expect("edit a");
    h.expect("edit in place", &[(&a, &uid(&a, &a2))]);

    // atomic rename over the file (what kubeadm and editors do)
    let a3 = pod("a", "busybox:3");
    write_atomic(&a, &a3);
    h.expect("atomic rename", &[(&a, &uid(&a, &a3))]);

    // editor leftovers are ignored; a real new file proves the watcher looked
    for junk in [
        ".a.yaml.swp",
        "a.yaml~",
        "4913",
        "a.yaml.bak",
        "a.yaml.dpkg-new",
    ] {
        std::fs::write(dir.join(junk), pod("junk", "busybox:9")).expect("junk");
    }
    let b1 = pod("b", "busybox:1");
    std::fs::write(&b, &b1).expect("write b");
    let set = h.expect(
        "swap files + new file",
        &[(&a, &uid(&a, &a3)), (&b, &uid(&b, &b1))],
    );
    assert!(
        set.problems.is_empty(),
        "leftovers must not be reported: {:?}",
        set.problems
    );

    // delete
    std::fs::remove_file(&b).expect("rm b");
    h.expect("delete", &[(&a, &uid(&a, &a3))]);

    // rename inside the directory: the path is part of the UID
    std::fs::rename(&a, &c).expect("mv a c");
    h.expect("rename", &[(&c, &uid(&c, &a3))]);

    // an invalid edit keeps the last good pod and reports the error
    std::fs::write(&c, "apiVersion: v1\nkind: Pod\nmetadata: [\n").expect("break c");
    let set = h.wait("invalid edit reported", |s| s.problems.contains_key(&c));
    assert_eq!(
        set.uids().get(&c),
        Some(&uid(&c, &a3)),
        "last good pod kept"
    );
    assert!(matches!(
        set.problems.get(&c),
        Some(Problem::Invalid {
            kept_uid: Some(_),
            ..
        })
    ));
    std::fs::write(&c, &a1).expect("fix c");
    h.expect("fixed", &[(&c, &uid(&c, &a1))]);

    // directory removed and re-created
    std::fs::remove_dir_all(&dir).expect("rm -r");
    h.expect("directory removed", &[]);
    std::fs::create_dir(&dir).expect("mkdir again");
    let d1 = pod("d", "busybox:1");
    std::fs::write(&d, &d1).expect("write d");
    h.expect("directory re-created", &[(&d, &uid(&d, &d1))]);

    // directory replaced by a rename (the watch on the old inode must be dropped)
    let old = root.path().join("manifests.old");
    std::fs::rename(&dir, &old).expect("mv dir away");
    h.expect("directory moved away", &[]);
    std::fs::create_dir(&dir).expect("new dir");
    std::fs::write(&d, &d1).expect("write d in new dir");
    h.expect("new directory", &[(&d, &uid(&d, &d1))]);
    std::fs::write(old.join("d.yaml"), pod("d", "busybox:old")).expect("edit in old dir");
    let d2 = pod("d", "busybox:2");
    std::fs::write(&d, &d2).expect("edit d");
    h.expect("only the new directory counts", &[(&d, &uid(&d, &d2))]);

    // a file written in two chunks (no close in between) is parsed once, complete
    let seen_before = h.history.len();
    let chunked = pod("d", "busybox:chunked");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&d).expect("open d");
        let (head, tail) = chunked.split_at(chunked.len() / 2);
        f.write_all(head.as_bytes()).expect("chunk 1");
        f.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(30)); // the writer pauses mid-file
        f.write_all(tail.as_bytes()).expect("chunk 2");
    }
    h.expect("chunked write", &[(&d, &uid(&d, &chunked))]);
    assert!(
        h.history[seen_before..]
            .iter()
            .all(|s| !s.problems.contains_key(&d)),
        "the half-written file must not have been parsed"
    );

    // latency from a completed write to the reported set (printed, not asserted)
    let mut latencies = Vec::new();
    for i in 0..20 {
        let text = pod("d", &format!("busybox:lat{i}"));
        let want = uid(&d, &text);
        let t = Instant::now();
        write_atomic(&d, &text);
        h.wait("latency", |s| s.uids().get(&d) == Some(&want));
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "write → desired set: median {:?}, max {:?} over {} atomic writes",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );

    // 1000 rapid edits: the set converges on the last content
    let sends_before = h.sends;
    let mut last = String::new();
    for i in 0..1000 {
        last = pod("d", &format!("busybox:{i}"));
        if i % 2 == 0 {
            std::fs::write(&d, &last).expect("rapid edit");
        } else {
            write_atomic(&d, &last);
        }
    }
    h.expect("1000 rapid edits", &[(&d, &uid(&d, &last))]);
    let reported = h.sends - sends_before;
    println!("1000 rapid edits → {reported} desired-set updates");
    assert!(
        reported < 1000,
        "debounce must coalesce bursts ({reported} updates)"
    );
}

#[test]
fn single_file_mode_and_unsupported_names() {
    let root = tempfile::tempdir().expect("tempdir");
    let f = root.path().join("only.yaml");
    let p1 = pod("only", "busybox:1");
    std::fs::write(&f, &p1).expect("write");
    std::fs::write(root.path().join("other.yaml"), pod("other", "busybox:1")).expect("write other");
    let mut h = Harness::start(&f);
    h.expect("single file", &[(&f, &uid(&f, &p1))]);
    let p2 = pod("only", "busybox:2");
    write_atomic(&f, &p2);
    h.expect("single file replaced", &[(&f, &uid(&f, &p2))]);
    std::fs::remove_file(&f).expect("rm");
    h.expect("single file deleted", &[]);
    std::fs::write(&f, &p1).expect("re-create");
    h.expect("single file re-created", &[(&f, &uid(&f, &p1))]);
}
