//! The client subcommands of the local API: `ps`, `inspect`, `logs` and `events`.
//!
//! Each takes its parsed arguments, the state directory (where `agent.sock` is) and an
//! output stream, so tests drive exactly what the binary runs.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;

use super::client::ApiClient;
use super::table::{human_duration, pod_row, render};
use crate::api::query::encode;
use crate::supervise::events::PodEvent;

/// Output formats of `ps` and `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ListFormat {
    /// A table for people.
    #[default]
    Table,
    /// JSON for tools.
    Json,
    /// Wide table: with namespace.
    Wide,
}

/// Output formats of `inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DocFormat {
    /// YAML (as `kubectl get -o yaml`).
    #[default]
    Yaml,
    /// JSON.
    Json,
}

/// `podvisor ps`: list pods like `kubectl get pods`.
#[derive(Debug, Clone, clap::Args)]
pub struct PsArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: ListFormat,
}

/// `podvisor inspect POD`: a pod with its status.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// Pod name (`name` or `namespace/name`).
    pub pod: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: DocFormat,
}

/// `podvisor logs POD`: a container's log.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Pod name (`name` or `namespace/name`).
    pub pod: String,
    /// Container (default: the pod's default or first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing new lines until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The previous run of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, allow_negative_numbers = true)]
    pub tail: Option<i64>,
    /// Only lines newer than a duration (5s, 2m, 3h) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Prefix lines with their time.
    #[arg(long)]
    pub timestamps: bool,
}

/// `podvisor events`: recent pod events.
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Only the events of this pod.
    #[arg(long)]
    pub pod: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: ListFormat,
}

#[derive(serde::Deserialize)]
struct PodList {
    items: Vec<Pod>,
}

/// Runs `ps`.
pub fn ps(args: &PsArgs, state: &Path, out: &mut dyn Write) -> Result<()> {
    let list: PodList = ApiClient::new(state).get_json("/pods")?;
    if args.output == ListFormat::Json {
        serde_json::to_writer_pretty(&mut *out, &list.items)?;
        writeln!(out)?;
        return Ok(());
    }
    if list.items.is_empty() {
        writeln!(out, "No pods.")?;
        return Ok(());
    }
    let now = SystemTime::now();
    let wide = args.output == ListFormat::Wide;
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|p| {
            let r = pod_row(p, now);
            let mut row = vec![r.name, r.ready, r.status, r.restarts, r.age];
            if wide {
                row.insert(0, r.namespace);
                let ip = p
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.clone())
                    .unwrap_or_else(|| "<none>".into());
                row.push(ip);
            }
            row
        })
        .collect();
    let headers: &[&str] = if wide {
        &[
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
        ]
    } else {
        &["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    };
    out.write_all(render(headers, &rows).as_bytes())?;
    Ok(())
}

/// Runs `inspect`.
pub fn inspect(args: &InspectArgs, state: &Path, out: &mut dyn Write) -> Result<()> {
    let pod: serde_json::Value =
        ApiClient::new(state).get_json(&format!("/pods/{}", encode(&args.pod)))?;
    match args.output {
        DocFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &pod)?;
            writeln!(out)?;
        }
        DocFormat::Yaml => {
            let text = serde_saphyr::to_string(&pod).context("encode pod as YAML")?;
            out.write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

/// The API request of a `logs` invocation.
pub fn logs_target(args: &LogsArgs) -> Result<String> {
    let mut q = Vec::new();
    if let Some(c) = &args.container {
        q.push(format!("container={}", encode(c)));
    }
    if args.follow {
        q.push("follow=true".into());
    }
    if args.previous {
        q.push("previous=true".into());
    }
    if args.timestamps {
        q.push("timestamps=true".into());
    }
    match args.tail {
        Some(n) if n < -1 => bail!("--tail must be -1 or more, not {n}"),
        Some(n) if n >= 0 => q.push(format!("tail={n}")),
        _ => {}
    }
    if let Some(s) = &args.since {
        q.push(format!("since={}", encode(s)));
    }
    let mut target = format!("/pods/{}/logs", encode(&args.pod));
    if !q.is_empty() {
        target.push('?');
        target.push_str(&q.join("&"));
    }
    Ok(target)
}

/// Runs `logs` (streaming until the agent ends the response).
pub fn logs(args: &LogsArgs, state: &Path, out: &mut dyn Write) -> Result<()> {
    ApiClient::new(state).stream(&logs_target(args)?, out)?;
    Ok(())
}

/// Runs `events`.
pub fn events(args: &EventsArgs, state: &Path, out: &mut dyn Write) -> Result<()> {
    let mut target = "/events".to_string();
    if let Some(p) = &args.pod {
        target = format!("/events?pod={}", encode(p));
    }
    let events: Vec<PodEvent> = ApiClient::new(state).get_json(&target)?;
    if args.output == ListFormat::Json {
        serde_json::to_writer_pretty(&mut *out, &events)?;
        writeln!(out)?;
        return Ok(());
    }
    if events.is_empty() {
        writeln!(out, "No events.")?;
        return Ok(());
    }
    let now = SystemTime::now();
    let ago = |t: SystemTime| human_duration(now.duration_since(t).unwrap_or_default());
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let seen = if e.count > 1 {
                format!(
                    "{} (x{} over {})",
                    ago(e.last_timestamp),
                    e.count,
                    ago(e.first_timestamp)
                )
            } else {
                ago(e.last_timestamp)
            };
            let object = match &e.field_path {
                Some(f) => format!("pod/{} {f}", e.pod),
                None => format!("pod/{}", e.pod),
            };
            vec![
                seen,
                format!("{:?}", e.type_),
                e.reason.clone(),
                object,
                e.message.clone(),
            ]
        })
        .collect();
    out.write_all(render(&["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], &rows).as_bytes())?;
    Ok(())
}
