//! podvisor-oci-compare: runs every privileged case with two runtimes (default `podvisor-oci`
//! and `crun`) on the same bundles and prints, per case, whether the observable result is the
//! same: both verdicts, and the probe's report compared field by field after normalisation.
//! Closing line `N passed, N failed` (a pass is a case whose result is the same).
//!
//! usage: podvisor-oci-compare [--a RUNTIME] [--b RUNTIME] [CASE-FILTER...]
#![forbid(unsafe_code)]

use podvisor_tests::compare::compare_case;
use podvisor_tests::fixture::Workspace;
use podvisor_tests::runner;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut names = ["podvisor-oci".to_string(), "crun".to_string()];
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--a" | "--b" => {
                let Some(v) = args.next() else {
                    eprintln!("podvisor-oci-compare: {a} needs a runtime");
                    return ExitCode::from(2);
                };
                names[usize::from(a == "--b")] = v;
            }
            _ => filters.push(a),
        }
    }
    if let Some(problem) = runner::privilege_problem() {
        println!("podvisor-oci-compare: {problem}");
        return ExitCode::FAILURE;
    }
    let ws = Workspace::current();
    let ctx = |name: &str| runner::context(&ws, Some(name));
    let (a, b) = match (ctx(&names[0]), ctx(&names[1])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            println!("podvisor-oci-compare: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cases = runner::selected(&filters);
    println!(
        "{:<56} {:<12} {:<12} {:>6} {:>6}  result",
        "check", &a.runtime.name, &b.runtime.name, "fields", "diff"
    );
    let verdict = |r: &Result<(), String>| if r.is_ok() { "ok" } else { "FAILED" };
    let (mut same, mut different) = (0, 0);
    let mut by_field: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for case in &cases {
        let c = compare_case([&a, &b], case);
        let word = if c.same() { "same" } else { "different" };
        println!(
            "{:<56} {:<12} {:<12} {:>6} {:>6}  {word}",
            c.case,
            verdict(&c.results[0]),
            verdict(&c.results[1]),
            c.fields,
            c.differences.len()
        );
        for (i, r) in c.results.iter().enumerate() {
            if let Err(e) = r {
                let name = if i == 0 {
                    &a.runtime.name
                } else {
                    &b.runtime.name
                };
                for line in e.lines() {
                    println!("    {name}: {line}");
                }
            }
        }
        for (field, va, vb) in &c.differences {
            *by_field.entry(field.clone()).or_default() += 1;
            println!(
                "    {field}: {} {va} | {} {vb}",
                a.runtime.name, b.runtime.name
            );
        }
        if c.same() { same += 1 } else { different += 1 }
    }
    if !by_field.is_empty() {
        println!("report fields that differ (number of checks):");
        for (field, n) in &by_field {
            println!("    {field}: {n}");
        }
    }
    runner::cleanup(&a);
    runner::cleanup(&b);
    println!("{same} passed, {different} failed");
    if different == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
