//! Probe engine benchmark (run by `scripts/bench-probes.sh`): N containers, each with an HTTP
//! liveness and an HTTP readiness probe at a 1 s period, against loopback HTTP servers that run
//! in a separate process (so their CPU is not counted). Prints the engine's CPU use (all of
//! this process's threads, from /proc/self/stat) and how late each probe started after its due
//! time (p50/p99/max), then the same figures for a peer measured in the same run: one thread
//! per probe sleeping to its next tick (the kubelet's goroutine-per-probe shape).
//!
//! Usage: bench_probes [CONTAINERS] [SECONDS] [WORKERS]     (defaults 200 20 8)
//!        bench_probes serve N                              (internal: the server process)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use podvisor::probe::engine::{ContainerKey, Engine, EngineConfig};
use podvisor::probe::exec::HostExec;
use podvisor::probe::http::HttpProber;
use podvisor::probe::outcome::Outcome;
use podvisor::probe::runner::{ProbeRunner, ProbeTarget};
use podvisor::probe::spec::{Handler, HttpGetAction, PortRef, ProbeSpec, Scheme};
use podvisor::probe::state::ContainerProbes;

fn serve(n: usize) -> anyhow::Result<()> {
    let mut ports = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0")?;
        ports.push(l.local_addr()?.port());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut buf = [0u8; 2048];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => seen.extend_from_slice(&buf[..k]),
                    }
                }
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
    }
    let line: Vec<String> = ports.iter().map(u16::to_string).collect();
    println!("{}", line.join(" "));
    std::io::stdout().flush()?;
    // Live until the parent closes our stdin.
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    Ok(())
}

/// CPU time of this whole process (all threads), from utime+stime in /proc/self/stat.
fn cpu_time() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or(&stat);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); after the comm they are at indexes 11 and 12.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

/// CPU ticks (10 ms) per thread name, for the breakdown line.
fn cpu_by_thread() -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("?", |(_, n)| n);
        let name = name
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_owned();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(name).or_insert(0) += ticks;
    }
    out
}

/// Context switches (voluntary + involuntary) summed over this process's live threads: each
/// wake-up of a sleeping worker is one, so this counts what the pool's wake policy costs.
fn context_switches() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in dir.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Figures {
    runs: usize,
    cpu: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn figures(mut delays: Vec<Duration>, cpu: Duration, window: Duration) -> Figures {
    delays.sort();
    Figures {
        runs: delays.len(),
        cpu: cpu.as_secs_f64() / window.as_secs_f64() * 100.0,
        p50: percentile(&delays, 0.50),
        p99: percentile(&delays, 0.99),
        max: delays.last().copied().unwrap_or_default(),
    }
}

fn print(name: &str, f: &Figures, window: Duration) {
    println!(
        "{name:<18} runs {:>6} ({:>5.1}/s)  cpu {:>5.2}% of one core  start delay p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        f.runs,
        f.runs as f64 / window.as_secs_f64(),
        f.cpu,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.max.as_secs_f64() * 1e3
    );
}

fn action(port: u16) -> HttpGetAction {
    HttpGetAction {
        scheme: Scheme::Http,
        host: None,
        port: PortRef::Number(i32::from(port)),
        path: "/healthz".into(),
        headers: vec![],
    }
}

fn run_engine(ports: &[u16], window: Duration, workers: usize) -> anyhow::Result<Figures> {
    let (tx, rx) = channel();
    std::thread::spawn(move || for _ in rx {});
    let engine = Engine::start(
        EngineConfig {
            workers,
            jitter_first_run: true,
        },
        ProbeRunner::new("1.34", Arc::new(HostExec)),
        tx,
    )?;
    for (i, port) in ports.iter().enumerate() {
        let spec = ProbeSpec {
            period_seconds: 1,
            ..ProbeSpec::with_defaults(Handler::HttpGet(action(*port)))
        };
        let key = ContainerKey {
            pod_uid: format!("pod-{i}"),
            container: "app".into(),
        };
        let probes = ContainerProbes::new("app", 30, Some(spec.clone()), Some(spec), None);
        engine.add(
            key.clone(),
            probes,
            ProbeTarget::host_network("127.0.0.1", vec![]),
        );
        engine.container_running(key, &format!("c{i}"), Instant::now());
    }
    std::thread::sleep(Duration::from_secs(2)); // every probe past its jittered first run
    engine.take_stats();
    let cpu0 = cpu_time()?;
    let threads0 = cpu_by_thread();
    let switches0 = context_switches();
    std::thread::sleep(window);
    let cpu = cpu_time()? - cpu0;
    let switches = context_switches().saturating_sub(switches0);
    let threads1 = cpu_by_thread();
    let breakdown: Vec<String> = threads1
        .iter()
        .map(|(name, t)| {
            format!(
                "{name} {} ms",
                (t - threads0.get(name).copied().unwrap_or(0)) * 10
            )
        })
        .collect();
    println!(
        "engine cpu by thread over the window: {}",
        breakdown.join(", ")
    );
    let stats = engine.take_stats();
    println!(
        "engine context switches over the window: {switches} ({:.2} per probe run)",
        switches as f64 / stats.start_delays.len().max(1) as f64
    );
    drop(engine);
    Ok(figures(stats.start_delays, cpu, window))
}

fn run_thread_per_probe(ports: &[u16], window: Duration) -> anyhow::Result<Figures> {
    let prober = HttpProber::new("1.34");
    let start = Instant::now();
    let warm_until = start + Duration::from_secs(2);
    let stop = warm_until + window;
    let mut threads = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        for k in 0..2u64 {
            let (prober, action) = (prober.clone(), action(*port));
            let first = start + Duration::from_millis((i as u64 * 2 + k) * 997 % 1000);
            threads.push(std::thread::spawn(move || {
                let mut delays = Vec::new();
                let mut next = first;
                while next < stop {
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    let late = Instant::now().saturating_duration_since(next);
                    let out = prober.probe(&action, "127.0.0.1", &[], Duration::from_secs(1));
                    if next >= warm_until && !matches!(out, Outcome::Error(_)) {
                        delays.push(late);
                    }
                    next += Duration::from_secs(1);
                }
                delays
            }));
        }
    }
    std::thread::sleep(warm_until.saturating_duration_since(Instant::now()));
    let cpu0 = cpu_time()?;
    std::thread::sleep(stop.saturating_duration_since(Instant::now()));
    let cpu = cpu_time()? - cpu0;
    let mut delays = Vec::new();
    for t in threads {
        delays.extend(t.join().unwrap_or_default());
    }
    Ok(figures(delays, cpu, window))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return serve(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200));
    }
    let containers: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(200);
    let window = Duration::from_secs(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20));
    let workers: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(8);

    let mut server = Command::new(std::env::current_exe()?)
        .args(["serve", &containers.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(
        server
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("server stdout"))?,
    )
    .read_line(&mut line)?;
    let ports: Vec<u16> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        ports.len() == containers,
        "server gave {} ports",
        ports.len()
    );

    println!(
        "probe bench: {containers} containers x (HTTP liveness + HTTP readiness), period 1 s, {} s window, servers in a separate process",
        window.as_secs()
    );
    let engine = run_engine(&ports, window, workers)?;
    print(&format!("engine ({workers} workers)"), &engine, window);
    let peer = run_thread_per_probe(&ports, window)?;
    print("thread-per-probe", &peer, window);
    let expected = containers as f64 * 2.0 * window.as_secs_f64();
    println!("expected runs per window: {expected:.0}");
    if peer.cpu > 0.0 {
        println!(
            "cpu ratio engine / thread-per-probe: {:.2}",
            engine.cpu / peer.cpu
        );
    }
    let ok = engine.cpu < 5.0 && engine.p99 < Duration::from_millis(50);
    println!(
        "goal (cpu < 5% of one core, p99 start delay < 50 ms): {}",
        if ok { "met" } else { "NOT met" }
    );
    drop(server.stdin.take());
    let _ = server.kill();
    let _ = server.wait();
    Ok(())
}
