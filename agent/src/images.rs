//! `podvisor images import|pull|ls|rm|prune|inspect`: the image store from the command line.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use podvisor_rootfs::{Progress, PullOptions, Store};

/// `podvisor images ...` arguments.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// The store's root directory (images/, layers/, containers/ live under it).
    #[arg(long, global = true, default_value = "/var/lib/podvisor")]
    pub root: PathBuf,
    /// Output format for ls and inspect.
    #[arg(short = 'o', long, global = true, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
    #[command(subcommand)]
    pub command: ImagesCommand,
}

/// The image subcommands.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Import docker-archive or OCI archive files (gzip or not), with every name they carry.
    Import {
        /// Archive files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Pull an image from a registry (OCI distribution API).
    Pull {
        /// Image reference (`busybox:1.36`, `registry.k8s.io/etcd:3.5.15-0`, `name@sha256:...`).
        reference: String,
        /// Registry (host[:port]) to reach over plain HTTP. Repeatable.
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        /// Mirror for a registry, `REGISTRY=HOST[:PORT]` (`docker.io=mirror.local:5000`). Repeatable; tried in order.
        #[arg(long = "mirror")]
        mirrors: Vec<String>,
        /// Extra PEM CA bundle to trust. Repeatable.
        #[arg(long = "ca-file")]
        ca_files: Vec<PathBuf>,
        /// docker-style config.json with registry credentials (default:
        /// /var/lib/podvisor/config.json, then ~/.docker/config.json).
        #[arg(long = "registry-config")]
        registry_config: Option<PathBuf>,
        /// Retries after a transient failure.
        #[arg(long, default_value_t = 3)]
        retries: u32,
    },
    /// List images: name, digest, size, in use.
    Ls,
    /// Remove images (refused while a container uses them) and what only they referenced.
    Rm {
        /// Image references or digests.
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove every image no container uses, and unreferenced blobs and layers.
    Prune,
    /// Unpack an image's layers into the store now (done by import, pull and prepare anyway).
    Unpack {
        /// Image reference or digest.
        reference: String,
    },
    /// Show an image's manifest, config and layers (JSON).
    Inspect {
        /// Image reference or digest.
        reference: String,
    },
}

/// Runs `podvisor images ...`.
pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.root)
        .with_context(|| format!("open image store under {}", args.root.display()))?;
    let json = args.output == "json";
    match args.command {
        ImagesCommand::Import { files } => {
            for f in files {
                for img in store
                    .import(&f)
                    .with_context(|| format!("import {}", f.display()))?
                {
                    println!("imported {} {}", img.name, img.digest);
                }
            }
        }
        ImagesCommand::Pull {
            reference,
            insecure_registries,
            mirrors,
            ca_files,
            registry_config,
            retries,
        } => {
            let mut opts = PullOptions {
                insecure_registries,
                ca_files,
                retries,
                ..PullOptions::default()
            };
            if let Some(cfg) = registry_config {
                opts.credential_files = vec![cfg];
            }
            opts.mirrors = parse_mirrors(&mirrors)?;
            let progress = TermProgress::new();
            let image = store
                .pull(&reference, &opts, &progress)
                .with_context(|| format!("pull {reference}"))?;
            println!("pulled {} {}", image.name, image.manifest_digest);
        }
        ImagesCommand::Ls => {
            let list = store.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<60} {:<19} {:>10}  IN USE", "IMAGE", "DIGEST", "SIZE");
                for i in list {
                    let short = i.digest.strip_prefix("sha256:").unwrap_or(&i.digest);
                    println!(
                        "{:<60} sha256:{:<12} {:>10}  {}",
                        i.name,
                        &short[..12.min(short.len())],
                        human(i.size),
                        if i.in_use { "yes" } else { "no" }
                    );
                }
            }
        }
        ImagesCommand::Rm { references } => {
            for r in references {
                let report = store.remove(&r).with_context(|| format!("remove {r}"))?;
                println!(
                    "removed {r} ({} blobs, {} layers freed)",
                    report.blobs, report.layers
                );
            }
        }
        ImagesCommand::Prune => {
            let report = store.prune()?;
            for name in &report.images {
                println!("removed {name}");
            }
            println!("freed {} blobs, {} layers", report.blobs, report.layers);
        }
        ImagesCommand::Unpack { reference } => {
            let image = store.resolve(&reference)?;
            for dir in store.ensure_layers(&image)? {
                println!("{}", dir.display());
            }
        }
        ImagesCommand::Inspect { reference } => {
            let image = store.resolve(&reference)?;
            let layers: Vec<serde_json::Value> = image
                .manifest
                .layers()
                .iter()
                .zip(image.diff_ids())
                .map(|(l, diff)| {
                    let unpacked = store.layer_dir(diff).is_ok_and(|d| d.is_dir());
                    serde_json::json!({"digest": l.digest().to_string(), "size": l.size(), "mediaType": l.media_type().to_string(), "diffID": diff, "unpacked": unpacked})
                })
                .collect();
            let out = serde_json::json!({
                "name": image.name,
                "digest": image.manifest_digest,
                "id": image.config_digest,
                "size": image.size(),
                "config": image.config,
                "layers": layers,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(())
}

fn parse_mirrors(specs: &[String]) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for s in specs {
        let Some((registry, mirror)) = s.split_once('=') else {
            bail!("--mirror {s:?}: expected REGISTRY=HOST[:PORT]")
        };
        out.entry(registry.to_string())
            .or_default()
            .push(mirror.to_string());
    }
    Ok(out)
}

fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// Progress bars per blob on a terminal; one log line per blob otherwise.
struct TermProgress {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl TermProgress {
    fn new() -> Self {
        let multi = std::io::stderr().is_terminal().then(MultiProgress::new);
        TermProgress {
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for TermProgress {
    fn start(&self, digest: &str, size: u64) {
        let short = &digest[7..19.min(digest.len())];
        match &self.multi {
            Some(m) => {
                let bar = m.add(ProgressBar::new(size));
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_prefix(short.to_string());
                if let Ok(mut bars) = self.bars.lock() {
                    bars.insert(digest.to_string(), bar);
                }
            }
            None => eprintln!("fetching {digest} ({size} bytes)"),
        }
    }

    fn advance(&self, digest: &str, n: u64) {
        if let Some(bar) = self.bars.lock().ok().and_then(|b| b.get(digest).cloned()) {
            bar.inc(n);
        }
    }

    fn done(&self, digest: &str, skipped: bool) {
        if let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(digest)) {
            bar.finish();
        } else if self.multi.is_none() {
            eprintln!(
                "{} {digest}",
                if skipped {
                    "already present"
                } else {
                    "verified"
                }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_parse_as_registry_equals_host() {
        let m =
            parse_mirrors(&["docker.io=mirror.local:5000".into(), "docker.io=m2".into()]).unwrap();
        assert_eq!(
            m["docker.io"],
            vec!["mirror.local:5000".to_string(), "m2".to_string()]
        );
        assert!(parse_mirrors(&["nomirror".into()]).is_err());
    }

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(human(999), "999B");
        assert_eq!(human(1_500_000), "1.5MB");
    }
}
