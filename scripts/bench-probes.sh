#!/usr/bin/env bash
# Probe engine benchmark: 200 containers x (HTTP liveness + readiness) at 1 s periods against
# loopback servers; prints the engine's CPU use and probe start delay p50/p99, and the same
# figures for a thread-per-probe peer measured in the same run.
# Usage: scripts/bench-probes.sh [CONTAINERS] [SECONDS] [WORKERS]   (defaults 200 20 8)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p podvisor --example bench_probes
# Each probe opens a loopback connection; make sure the fd limit covers servers + clients.
ulimit -n 65536 2>/dev/null || true
exec target/release/examples/bench_probes "$@"
