#!/usr/bin/env bash
# Runs the privileged suite's bundles with podvisor-oci and with Debian's crun and compares
# what the in-container probe reports, field by field (normalised where runs must differ:
# namespace inode numbers, pids, scratch paths; see tests/src/compare.rs), printing a table of
# check -> same/different and a closing "N passed, N failed". Needs root.
#
# usage: scripts/compare-crun.sh [CASE-FILTER...]
#   A=runc B=crun scripts/compare-crun.sh     # compare other runtimes (names or paths)
set -euo pipefail
cd "$(dirname "$0")/.."
A=${A:-podvisor-oci}
B=${B:-crun}
cargo build --quiet --workspace --bins
exec target/debug/podvisor-oci-compare --a "$A" --b "$B" "$@"
