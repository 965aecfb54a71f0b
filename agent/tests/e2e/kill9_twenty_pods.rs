//! The agent killed with SIGKILL while 20 pods run, then started again (issue 5, "Must
//! show"): no container restarts, no lost or repeated log line, exits that happened while
//! no agent ran applied by the restart policy, and the re-adoption time printed.
//!
//! 17 "counter" pods print a numbered sequence (`seq 1`, `seq 2`, …) every 100 ms; three
//! "exit" pods (restartPolicy Always, OnFailure, Never) wait for a file in their hostPath
//! directory and then exit with code 1 once (a second run of the Always and OnFailure ones
//! sees its `done` file and keeps running). The file is created while the agent is dead.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    IMAGE, Outcome, World, container, ensure, phase, pod_yaml, processes_with, uid, wait_for,
};

const COUNTERS: usize = 17;
const POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];

fn counter_script(marker: &str) -> String {
    format!(
        "trap 'exit 0' TERM; : {marker}; i=0; while true; do i=$((i+1)); echo \"seq $i\"; sleep 0.1; done"
    )
}

fn exit_script(marker: &str) -> String {
    format!(
        "trap 'exit 0' TERM; : {marker}; if [ -e /t/done ]; then echo second run; while true; do sleep 0.2; done; fi; \
         echo waiting; while [ ! -e /t/go ]; do sleep 0.1; done; touch /t/done; echo exiting 1; exit 1"
    )
}

fn exit_pod(name: &str, policy: &str, dir: &Path, marker: &str) -> String {
    let spec = format!(
        "  restartPolicy: {policy}\n  volumes:\n  - name: t\n    hostPath: {{path: {}, type: Directory}}\n",
        dir.display()
    );
    let c = format!(
        "  - name: c\n    image: {IMAGE}\n    imagePullPolicy: Never\n    command: [\"/bin/sh\", \"-c\", {}]\n    volumeMounts:\n    - {{name: t, mountPath: /t}}\n",
        serde_json::to_string(&exit_script(marker)).unwrap()
    );
    pod_yaml(name, &spec, &c)
}

fn counter_pod(name: &str, marker: &str) -> String {
    let c = format!(
        "  - name: c\n    image: {IMAGE}\n    imagePullPolicy: Never\n    command: [\"/bin/sh\", \"-c\", {}]\n",
        serde_json::to_string(&counter_script(marker)).unwrap()
    );
    pod_yaml(name, "", &c)
}

/// The numbers of the complete `seq N` stdout lines of a CRI log file.
fn logged_numbers(path: &Path) -> Result<Vec<u64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut out = Vec::new();
    for line in complete.lines() {
        let mut parts = line.splitn(4, ' ');
        let (_ts, stream, tag, body) = (parts.next(), parts.next(), parts.next(), parts.next());
        if stream != Some("stdout") || tag != Some("F") {
            return Err(format!(
                "{}: not a full stdout line: {line:?}",
                path.display()
            ));
        }
        let n = body
            .and_then(|b| b.strip_prefix("seq "))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("{}: unexpected line {line:?}", path.display()))?;
        out.push(n);
    }
    Ok(out)
}

/// `1, 2, …, n` exactly: no gap, no duplicate.
fn check_sequence(name: &str, nums: &[u64]) -> Outcome {
    for (i, n) in nums.iter().enumerate() {
        if *n != i as u64 + 1 {
            let around = &nums[i.saturating_sub(2)..(i + 3).min(nums.len())];
            return Err(format!(
                "{name}: line {} holds seq {n}, want {} (around: {around:?})",
                i + 1,
                i + 1
            ));
        }
    }
    Ok(())
}

struct Before {
    id: Value,
    pids: Vec<i32>,
    log: std::path::PathBuf,
    last: u64,
}

/// Whether the exit of `name`'s first run (code 1) shows, as its restart policy says.
fn exit_applied(pod: &Value, policy: &str) -> bool {
    let Some(c) = container(pod, "containerStatuses", "c") else {
        return false;
    };
    if policy == "Never" {
        c["state"]["terminated"]["exitCode"] == 1 && c["restartCount"] == 0
    } else {
        c["lastState"]["terminated"]["exitCode"] == 1
            && c["restartCount"] == 1
            && c["state"]["running"].is_object()
    }
}

/// The case (see the module doc).
pub fn case(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    let tag = std::process::id();
    let counter_marker = |i: usize| format!("e2e-k9-seq-{tag}-{i}-end");
    let exit_marker = |p: &str| format!("e2e-k9-exit-{tag}-{p}");
    for p in POLICIES {
        std::fs::create_dir_all(w.path(&format!("t-{p}"))).unwrap();
    }
    w.start_agent();
    for i in 0..COUNTERS {
        w.write_manifest(
            &format!("seq{i}.yaml"),
            &counter_pod(&format!("seq{i}"), &counter_marker(i)),
        );
    }
    for p in POLICIES {
        let name = format!("exit-{}", p.to_lowercase());
        let dir = w.path(&format!("t-{p}"));
        w.write_manifest(
            &format!("{name}.yaml"),
            &exit_pod(&name, p, &dir, &exit_marker(p)),
        );
    }
    let names: Vec<String> = (0..COUNTERS)
        .map(|i| format!("seq{i}-e2e"))
        .chain(
            POLICIES
                .iter()
                .map(|p| format!("exit-{}-e2e", p.to_lowercase())),
        )
        .collect();
    let all = wait_for("20 pods Running", 120, || {
        let pods = w.pods();
        let running: BTreeMap<String, Value> = pods
            .into_iter()
            .filter(|p| phase(p) == "Running")
            .map(|p| (p["metadata"]["name"].as_str().unwrap_or("").to_owned(), p))
            .collect();
        names
            .iter()
            .all(|n| running.contains_key(n))
            .then_some(running)
    })?;
    // Let every counter print for a while, then note what each is and has written.
    std::thread::sleep(Duration::from_secs(1));
    let mut before = BTreeMap::new();
    for i in 0..COUNTERS {
        let name = format!("seq{i}-e2e");
        let pod = &all[&name];
        let id = container(pod, "containerStatuses", "c").unwrap()["containerID"].clone();
        let pids = processes_with(&counter_marker(i));
        ensure(pids.len() == 1, || {
            format!("{name}: want one container process, found {pids:?}")
        })?;
        let log = w
            .path("logs")
            .join(format!("default_{name}_{}", uid(pod)))
            .join("c/0.log");
        before.insert(
            name,
            Before {
                id,
                pids,
                log,
                last: 0,
            },
        );
    }

    w.kill9_agent();
    for b in before.values_mut() {
        b.last = logged_numbers(&b.log)?.last().copied().unwrap_or(0);
    }
    // While no agent runs: the exit pods' containers exit with code 1.
    for p in POLICIES {
        std::fs::write(w.path(&format!("t-{p}/go")), "").unwrap();
    }
    for p in POLICIES {
        wait_for(&format!("the {p} pod's container to exit"), 10, || {
            processes_with(&exit_marker(p)).is_empty().then_some(())
        })?;
    }
    std::thread::sleep(Duration::from_millis(500));
    for (name, b) in &before {
        ensure(
            processes_with(&name_marker(name, &counter_marker)) == b.pids,
            || format!("{name}: the container did not survive the agent's SIGKILL"),
        )?;
    }

    let t0 = Instant::now();
    w.start_agent();
    let (listed, adopted) = {
        let mut listed = None;
        let adopted = wait_for("all 20 pods re-adopted", 60, || {
            let pods = w.pods();
            if listed.is_none() && pods.len() >= names.len() {
                listed = Some(t0.elapsed());
            }
            let by_name: BTreeMap<&str, &Value> = pods
                .iter()
                .map(|p| (p["metadata"]["name"].as_str().unwrap_or(""), p))
                .collect();
            let counters = (0..COUNTERS).all(|i| {
                by_name
                    .get(format!("seq{i}-e2e").as_str())
                    .is_some_and(|p| phase(p) == "Running")
            });
            let exits = POLICIES.iter().all(|p| {
                by_name
                    .get(format!("exit-{}-e2e", p.to_lowercase()).as_str())
                    .is_some_and(|pod| exit_applied(pod, p))
            });
            (counters && exits).then(|| t0.elapsed())
        })?;
        (listed.unwrap_or(adopted), adopted)
    };
    println!(
        "    re-adoption of 20 pods: agent exec → all 20 listed {} ms, → 17 Running with the 3 outage exits applied {} ms",
        listed.as_millis(),
        adopted.as_millis()
    );

    // Let the counters print past the outage, then check every one.
    std::thread::sleep(Duration::from_secs(1));
    let mut total_outage_lines = 0;
    for (name, b) in &before {
        let pod = w.pod(name).ok_or_else(|| format!("{name} not listed"))?;
        let c = container(&pod, "containerStatuses", "c").unwrap();
        ensure(c["restartCount"] == 0 && c["containerID"] == b.id, || {
            format!(
                "{name}: restarted across the agent's SIGKILL: before {}, now {c}",
                b.id
            )
        })?;
        let pids = processes_with(&name_marker(name, &counter_marker));
        ensure(pids == b.pids, || {
            format!("{name}: container processes {:?} → {pids:?}", b.pids)
        })?;
        let nums = logged_numbers(&b.log)?;
        check_sequence(name, &nums)?;
        let last = nums.last().copied().unwrap_or(0);
        ensure(last > b.last + 10, || {
            format!(
                "{name}: the log stops at seq {last} (seq {} at the kill)",
                b.last
            )
        })?;
        total_outage_lines += last - b.last;
    }
    println!(
        "    {COUNTERS} counter logs complete: {total_outage_lines} lines written since the kill, no gap, no duplicate"
    );
    for p in POLICIES {
        let name = format!("exit-{}-e2e", p.to_lowercase());
        let pod = w.pod(&name).ok_or_else(|| format!("{name} not listed"))?;
        ensure(exit_applied(&pod, p), || {
            format!("{name}: outage exit not applied: {}", pod["status"])
        })?;
        if p == "Never" {
            ensure(phase(&pod) == "Failed", || {
                format!("{name}: phase {} (want Failed)", phase(&pod))
            })?;
        }
    }
    ensure(!w.agent_log().contains("panicked"), || {
        "the agent panicked".into()
    })
}

/// The marker of counter pod `name` (`seqN-e2e`).
fn name_marker(name: &str, marker: &impl Fn(usize) -> String) -> String {
    let i: usize = name
        .trim_start_matches("seq")
        .trim_end_matches("-e2e")
        .parse()
        .unwrap();
    marker(i)
}
