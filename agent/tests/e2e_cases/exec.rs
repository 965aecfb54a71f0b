//! e2e cases for `podvisor exec`, preStop hooks and the pod's shared localhost and IPC
//! (registered in `e2e_agent.rs` through [`CASES`]).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    BIN, Case, Outcome, STEADY, World, app, container, ensure, phase, pod_yaml, processes_with,
    wait_for,
};

/// The cases of this file.
pub const CASES: &[Case] = &[
    (
        "exec_runs_commands_in_containers",
        exec_runs_commands_in_containers,
    ),
    ("exec_it_drives_a_pty", exec_it_drives_a_pty),
    (
        "pre_stop_exec_and_http_hooks_run_before_sigterm",
        pre_stop_exec_and_http_hooks_run_before_sigterm,
    ),
    (
        "post_start_hook_runs_and_a_failing_one_kills_the_container",
        post_start_hook_runs_and_a_failing_one_kills_the_container,
    ),
    (
        "multi_container_pod_shares_localhost_and_ipc",
        multi_container_pod_shares_localhost_and_ipc,
    ),
];

/// `podvisor exec` with `args`, feeding `stdin`: (exit code, stdout, stderr).
fn exec(w: &World, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .arg("--state")
        .arg(w.path("state"))
        .arg("exec")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn with_env(c: &str, key: &str, value: &str) -> String {
    format!("{c}    env:\n    - {{name: {key}, value: {value}}}\n")
}

fn running_pod(w: &World, name: &str, containers: &[&str]) -> Outcome {
    wait_for(&format!("{name} running"), 30, || {
        w.pod(name).filter(|p| {
            phase(p) == "Running"
                && containers.iter().all(|c| {
                    container(p, "containerStatuses", c)
                        .is_some_and(|s| s["state"]["running"].is_object())
                })
        })
    })
    .map(|_| ())
}

fn exec_runs_commands_in_containers(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    w.start_agent();
    let containers = format!(
        "{}{}",
        with_env(&app("a", STEADY), "WHO", "container-a"),
        with_env(&app("b", STEADY), "WHO", "container-b")
    );
    w.write_manifest("ex.yaml", &pod_yaml("ex", "", &containers));
    let done = pod_yaml("done", "  restartPolicy: Never\n", &app("only", "echo bye"));
    w.write_manifest("done.yaml", &done);
    running_pod(&w, "ex-e2e", &["a", "b"])?;

    let (code, out, err) = exec(&w, &["ex-e2e", "--", "echo", "hello"], b"");
    ensure(code == 0 && out == "hello\n", || {
        format!("echo: code {code} out {out:?} err {err:?}")
    })?;
    let (code, out, err) = exec(
        &w,
        &["ex-e2e", "--", "sh", "-c", "echo out; echo err >&2; exit 7"],
        b"",
    );
    ensure(code == 7 && out == "out\n" && err == "err\n", || {
        format!("exit code propagation: code {code} out {out:?} err {err:?}")
    })?;
    let (code, out, _) = exec(&w, &["ex-e2e", "--", "sh", "-c", "kill -9 $$"], b"");
    ensure(code == 137 && out.is_empty(), || {
        format!("killed by SIGKILL: code {code}")
    })?;
    let (code, out, err) = exec(
        &w,
        &["ex-e2e", "-i", "--", "tr", "a-z", "A-Z"],
        b"piped input\n",
    );
    ensure(code == 0 && out == "PIPED INPUT\n", || {
        format!("stdin: code {code} out {out:?} err {err:?}")
    })?;
    // Without -i the command's stdin is empty.
    let (code, out, _) = exec(&w, &["ex-e2e", "--", "wc", "-c"], b"ignored");
    ensure(code == 0 && out.trim() == "0", || {
        format!("no -i: code {code} out {out:?}")
    })?;
    let big = "x".repeat(300_000);
    let (code, out, _) = exec(&w, &["ex-e2e", "-i", "--", "wc", "-c"], big.as_bytes());
    ensure(code == 0 && out.trim() == "300000", || {
        format!("large stdin: code {code} out {out:?}")
    })?;
    let (code, out, _) = exec(&w, &["ex-e2e", "--", "sh", "-c", "echo $WHO"], b"");
    ensure(code == 0 && out == "container-a\n", || {
        format!("default container: {out:?}")
    })?;
    let (code, out, _) = exec(
        &w,
        &["ex-e2e", "-c", "b", "--", "sh", "-c", "echo $WHO"],
        b"",
    );
    ensure(code == 0 && out == "container-b\n", || {
        format!("-c b: code {code} out {out:?}")
    })?;
    // The exec'd process is in the container: its pid namespace, its cgroup, its root.
    let (_, init, _) = exec(
        &w,
        &["ex-e2e", "-c", "b", "--", "cat", "/proc/1/cmdline"],
        b"",
    );
    ensure(init.contains("/bin/sh"), || {
        format!("pid 1 of the container is not the workload: {init:?}")
    })?;
    let (code, _, err) = exec(&w, &["ex-e2e", "--", "/no/such/command"], b"");
    println!("    missing command: code {code}, {}", err.trim());
    ensure(code == 127 && err.contains("/no/such/command"), || {
        format!("missing command: code {code} err {err:?}")
    })?;
    let (code, _, err) = exec(&w, &["ex-e2e", "--", "/etc/passwd"], b"");
    ensure(code == 126, || {
        format!("not executable: code {code} err {err:?}")
    })?;
    let (code, _, err) = exec(&w, &["ex-e2e", "-c", "nope", "--", "true"], b"");
    ensure(code == 1 && err.contains("choose one of: [a b]"), || {
        format!("bad container: code {code} err {err:?}")
    })?;
    let (code, _, err) = exec(&w, &["no-such-pod", "--", "true"], b"");
    ensure(code == 1 && err.contains("not found"), || {
        format!("bad pod: code {code} err {err:?}")
    })?;
    wait_for("done-e2e Succeeded", 30, || {
        w.pod("done-e2e").filter(|p| phase(p) == "Succeeded")
    })?;
    let (code, _, err) = exec(&w, &["done-e2e", "--", "true"], b"");
    ensure(code == 1 && err.contains("not running"), || {
        format!("exited container: code {code} err {err:?}")
    })?;
    // A client that goes away takes its command with it.
    let mut cli = Command::new(BIN)
        .arg("--state")
        .arg(w.path("state"))
        .args(["exec", "ex-e2e", "--", "sleep", "1234"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // Exactly `sleep 1234`, not the CLI whose arguments contain it.
    let sleepers = || {
        processes_with("sleep 1234")
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c == b"sleep\x001234\x00")
            })
            .count()
    };
    let started = wait_for("sleep 1234 in the container", 10, || {
        (sleepers() == 1).then_some(())
    });
    cli.kill().unwrap();
    cli.wait().unwrap();
    started?;
    wait_for("sleep 1234 killed with its client", 10, || {
        (sleepers() == 0).then_some(())
    })?;
    // A new agent (after kill -9) re-adopts the pod and can exec into it.
    w.kill9_agent();
    w.start_agent();
    running_pod(&w, "ex-e2e", &["a", "b"])?;
    let (code, out, err) = wait_for("exec after re-adoption", 20, || {
        Some(exec(&w, &["ex-e2e", "-c", "b", "--", "echo", "again"], b"")).filter(|r| r.0 == 0)
    })
    .unwrap_or_else(|_| exec(&w, &["ex-e2e", "-c", "b", "--", "echo", "again"], b""));
    ensure(code == 0 && out == "again\n", || {
        format!("exec after re-adoption: code {code} out {out:?} err {err:?}")
    })?;
    w.stop_agent();
    let (code, _, err) = exec(&w, &["ex-e2e", "--", "true"], b"");
    ensure(code == 1 && err.contains("agent is not running"), || {
        format!("no agent: code {code} err {err:?}")
    })
}

/// Reads the pty master until `needle` shows up or the time is out.
fn read_until(master: &OwnedFd, seen: &mut Vec<u8>, needle: &str, secs: u64) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut file = std::fs::File::from(master.try_clone().unwrap());
    while !String::from_utf8_lossy(seen).contains(needle) {
        if Instant::now() > deadline {
            return Err(format!(
                "pty: no {needle:?} in {:?}",
                String::from_utf8_lossy(seen)
            ));
        }
        let mut fds = [rustix::event::PollFd::new(
            master,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        if rustix::event::poll(&mut fds, Some(&ts)).unwrap_or(0) == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match file.read(&mut buf) {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "pty closed before {needle:?}: {:?}",
                    String::from_utf8_lossy(seen)
                ));
            }
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    Ok(())
}

fn exec_it_drives_a_pty(img: &Path) -> Outcome {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    w.start_agent();
    w.write_manifest("tty.yaml", &pod_yaml("tty", "", &app("main", STEADY)));
    running_pod(&w, "tty-e2e", &["main"])?;
    // The test's terminal: a pty whose slave is the CLI's stdin, stdout and stderr.
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap()
        .into();
    let size = rustix::termios::Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&slave, size).unwrap();
    let mut child = Command::new(BIN)
        .arg("--state")
        .arg(w.path("state"))
        .args(["exec", "-it", "tty-e2e", "--", "sh"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()))
        .spawn()
        .unwrap();
    drop(slave);
    let result = drive_shell(&master, &mut child);
    // Reaped already when it ended; otherwise end it here.
    let _ = child.kill();
    let _ = child.wait();
    result?;
    // The terminal was given back in its original (cooked) mode.
    let t = rustix::termios::tcgetattr(&master).unwrap();
    ensure(
        t.local_modes.contains(rustix::termios::LocalModes::ICANON),
        || "the terminal was left in raw mode".into(),
    )
}

/// Talks to `sh` in the container through the pty `master` until `exit 3` ends `child`.
fn drive_shell(master: &OwnedFd, child: &mut std::process::Child) -> Outcome {
    let mut seen = Vec::new();
    let send = |text: &str| rustix::io::write(master.as_fd(), text.as_bytes()).unwrap();
    // An interactive shell on a terminal in the container: size, tty name, arithmetic.
    send("stty size; tty; echo sum=$((6*7))\r");
    let step = read_until(master, &mut seen, "sum=42", 20);
    let text = String::from_utf8_lossy(&seen).into_owned();
    step?;
    ensure(text.contains("33 101"), || {
        format!("the pty did not start at the caller's size: {text:?}")
    })?;
    ensure(text.contains("/dev/pts/"), || {
        format!("tty does not name a pty: {text:?}")
    })?;
    // ^C reaches the foreground command through the pty's line discipline.
    send("sleep 30\r");
    std::thread::sleep(Duration::from_millis(500));
    send("\x03");
    send("echo after=$?\r");
    read_until(master, &mut seen, "after=130", 10)?;
    send("exit 3\r");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            return Err("podvisor exec -it did not end after `exit 3`".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure(status.code() == Some(3), || {
        format!("exit code of exec -it: {status:?}")
    })
}

fn pre_stop_exec_and_http_hooks_run_before_sigterm(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    let marks = w.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    w.start_agent();
    let volumes = format!(
        "  terminationGracePeriodSeconds: 10\n  volumes:\n  - name: marks\n    hostPath: {{path: {}, type: Directory}}\n",
        marks.display()
    );
    let mount = "    volumeMounts:\n    - {name: marks, mountPath: /marks}\n";
    // `read` rather than `cut -d' '`: the trap's text is single-quoted.
    let mark = |what: &str| format!("read u r < /proc/uptime; echo {what} $u >> /marks/log");
    // exec hook: takes 1 s; the workload logs when SIGTERM comes.
    let hooked = format!(
        "{}{mount}    lifecycle:\n      preStop:\n        exec:\n          command: [\"/bin/sh\", \"-c\", \"{}; sleep 1; {}\"]\n",
        app(
            "hooked",
            &format!(
                "trap '{}; exit 0' TERM; while true; do sleep 0.1; done",
                mark("term")
            )
        ),
        mark("hook-start"),
        mark("hook-end"),
    );
    // httpGet hook: a server on the pod's localhost records the request.
    let server = format!(
        "{}{mount}    lifecycle:\n      preStop:\n        httpGet:\n          path: /prestop-hook\n          port: 8080\n",
        app(
            "server",
            "trap 'exit 0' TERM; while true; do printf 'HTTP/1.0 200 OK\\r\\n\\r\\nok' | nc -l -p 8080 >> /marks/http; done & wait"
        )
    );
    // A failing hook: an event, and the stop goes on.
    let failing = format!(
        "{}    lifecycle:\n      preStop:\n        exec:\n          command: [\"/bin/sh\", \"-c\", \"echo hook broke; exit 3\"]\n",
        app("failing", STEADY)
    );
    let text = pod_yaml("hooks", "", &format!("{hooked}{server}{failing}"))
        .replace("  terminationGracePeriodSeconds: 3\n", &volumes);
    w.write_manifest("hooks.yaml", &text);
    running_pod(&w, "hooks-e2e", &["hooked", "server", "failing"])?;
    std::thread::sleep(Duration::from_millis(300)); // nc listening
    let t0 = Instant::now();
    w.remove_manifest("hooks.yaml");
    wait_for("hooks-e2e gone", 30, || {
        w.pod("hooks-e2e").is_none().then_some(())
    })?;
    let took = t0.elapsed();
    let log = std::fs::read_to_string(marks.join("log")).unwrap_or_default();
    println!(
        "    stop took {took:?}; marks: {}",
        log.replace('\n', " | ")
    );
    let at = |what: &str| -> Option<f64> {
        log.lines()
            .find(|l| l.starts_with(what))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|t| t.parse().ok())
    };
    let (Some(start), Some(end), Some(term)) = (at("hook-start"), at("hook-end"), at("term"))
    else {
        return Err(format!("marks missing: {log:?}"));
    };
    ensure(start <= end && end <= term, || {
        format!("SIGTERM came before the preStop hook ended: {log:?}")
    })?;
    ensure(end - start >= 0.9, || {
        format!("the hook did not run its 1 s: {log:?}")
    })?;
    ensure(took < Duration::from_secs(8), || {
        format!("the stop took {took:?}: SIGKILL at the end of the grace period?")
    })?;
    let http = std::fs::read_to_string(marks.join("http")).unwrap_or_default();
    ensure(http.contains("GET /prestop-hook"), || {
        format!("the httpGet hook did not reach the server: {http:?}")
    })?;
    let events = w.cli(&["events"])?;
    ensure(
        events
            .lines()
            .any(|l| l.contains("FailedPreStopHook") && l.contains("failing")),
        || format!("no FailedPreStopHook event for the failing hook:\n{events}"),
    )
}

fn multi_container_pod_shares_localhost_and_ipc(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    w.start_agent();
    // A serves on the pod's 127.0.0.1 and writes to the pod's /dev/shm.
    let a = app(
        "a",
        "mkdir -p /www; echo served-by-a > /www/index.html; echo shm-from-a > /dev/shm/from-a; \
         echo ipc=$(readlink /proc/self/ns/ipc) net=$(readlink /proc/self/ns/net); \
         ip link show lo | head -1; exec httpd -f -p 127.0.0.1:8080 -h /www",
    );
    // B reaches A over localhost and reads A's shared memory.
    let b = app(
        "b",
        "for i in $(seq 100); do wget -qO- http://127.0.0.1:8080/index.html && break; sleep 0.1; done; \
         cat /dev/shm/from-a; echo ipc=$(readlink /proc/self/ns/ipc) net=$(readlink /proc/self/ns/net); \
         trap 'exit 0' TERM; while true; do sleep 0.2; done",
    );
    w.write_manifest("pair.yaml", &pod_yaml("pair", "", &format!("{a}{b}")));
    running_pod(&w, "pair-e2e", &["a", "b"])?;
    let logs_b = wait_for("b's checks", 20, || {
        w.cli(&["logs", "pair-e2e", "-c", "b"])
            .ok()
            .filter(|l| l.contains("ipc="))
    })?;
    let logs_a = w.cli(&["logs", "pair-e2e", "-c", "a"])?;
    println!("    a: {}", logs_a.trim().replace('\n', " | "));
    println!("    b: {}", logs_b.trim().replace('\n', " | "));
    ensure(
        logs_a.contains("state UP") || logs_a.contains(",UP"),
        || format!("lo is not up in the pod's network namespace: {logs_a:?}"),
    )?;
    ensure(logs_b.contains("served-by-a"), || {
        format!("b could not reach a on 127.0.0.1:8080: {logs_b:?}")
    })?;
    ensure(logs_b.contains("shm-from-a"), || {
        format!("b does not see a's /dev/shm: {logs_b:?}")
    })?;
    let ns = |logs: &str| {
        logs.lines()
            .find(|l| l.starts_with("ipc="))
            .unwrap_or_default()
            .to_string()
    };
    ensure(
        !ns(&logs_a).is_empty() && ns(&logs_a) == ns(&logs_b),
        || {
            format!(
                "different IPC/net namespaces: a {:?} b {:?}",
                ns(&logs_a),
                ns(&logs_b)
            )
        },
    )?;
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    ensure(!ns(&logs_a).contains(&*host_ipc.to_string_lossy()), || {
        "the pod shares the host's IPC namespace".into()
    })?;
    Ok(())
}

fn post_start_hook_runs_and_a_failing_one_kills_the_container(img: &Path) -> Outcome {
    let mut w = World::new(
        img,
        &[
            "--stop-pods-on-exit",
            "--backoff-initial",
            "200ms",
            "--backoff-max",
            "400ms",
        ],
    );
    let marks = w.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    w.start_agent();
    let spec = super::marks_volume(&marks);
    let ok = format!(
        "{}    volumeMounts:\n    - {{name: marks, mountPath: /marks}}\n    lifecycle:\n      postStart:\n        exec:\n          command: [\"/bin/sh\", \"-c\", \"echo warmed-up > /marks/post-start\"]\n",
        app("ok", STEADY)
    );
    let bad = format!(
        "{}    lifecycle:\n      postStart:\n        exec:\n          command: [\"/bin/sh\", \"-c\", \"echo cannot warm up; exit 1\"]\n",
        app("bad", STEADY)
    );
    w.write_manifest("post.yaml", &pod_yaml("post", &spec, &format!("{ok}{bad}")));
    let pod = wait_for("bad restarted twice", 30, || {
        w.pod("post-e2e").filter(|p| {
            container(p, "containerStatuses", "bad")
                .and_then(|c| c["restartCount"].as_u64())
                .is_some_and(|n| n >= 2)
        })
    })?;
    let ok_status = container(&pod, "containerStatuses", "ok").unwrap();
    ensure(
        ok_status["restartCount"] == 0 && ok_status["state"]["running"].is_object(),
        || format!("the container with a good hook: {ok_status}"),
    )?;
    let mark = std::fs::read_to_string(marks.join("post-start")).unwrap_or_default();
    ensure(mark == "warmed-up\n", || {
        format!("postStart did not run in the container: {mark:?}")
    })?;
    let events = w.cli(&["events"])?;
    ensure(
        events
            .lines()
            .any(|l| l.contains("FailedPostStartHook") && l.contains("cannot warm up")),
        || format!("no FailedPostStartHook event:\n{events}"),
    )
}
