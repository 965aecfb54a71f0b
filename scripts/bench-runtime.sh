#!/usr/bin/env bash
# Times create + start + wait + delete of a trivial container (busybox `true`, same bundle)
# for podvisor-oci (release build), crun, runc and crun without cgroups, interleaved round by round in one run, plus
# the floor: a bare `unshare` of the same namespaces + chroot + exec of the same binary in the
# same rootfs. Prints median, p90 and the ratio of medians to crun.
#
# "wait" is the container's stdout reaching EOF (a FIFO read by a background cat): no polling.
# The exited init may not be reaped yet by then (its parent is the host's init, not us), so
# delete uses --force for every runtime rather than racing the reaper.
# Everything runs in one private mount namespace where, on a hybrid host, an empty file covers
# the unified hierarchy's cgroup.controllers: crun refuses hybrid hosts whose cgroup2 has any
# controller (here: hugetlb). All runtimes see the same file, so the comparison stays fair; the
# container asks for no limits, so no runtime needs a controller.
#
# usage: scripts/bench-runtime.sh [ROUNDS]    (default 50; needs root)
#   PODVISOR_OCI_BIN=PATH  benchmark that podvisor-oci binary instead of building release
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-50}
ws=$PWD

if [ -z "${PODVISOR_BENCH_INNER:-}" ]; then
  if [ "$(id -u)" != 0 ]; then echo "bench-runtime: needs root" >&2; exit 1; fi
  if [ -n "${PODVISOR_OCI_BIN:-}" ]; then
    echo "using podvisor-oci at $PODVISOR_OCI_BIN" >&2
  else
    echo "building podvisor-oci (release)..." >&2
    cargo build --quiet --release -p podvisor-runtime --bin podvisor-oci >&2 ||
      echo "bench-runtime: podvisor-oci does not build; benchmarking the peers only" >&2
  fi
  scripts/build-busybox-rootfs target/podvisor-tests/rootfs
  exec unshare -m --propagation private env PODVISOR_BENCH_INNER=1 "$0" "$@"
fi

scratch=$(mktemp -d /run/podvisor-bench.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
if [ -e /sys/fs/cgroup/unified/cgroup.controllers ]; then
  : > "$scratch/empty"
  mount --bind "$scratch/empty" /sys/fs/cgroup/unified/cgroup.controllers
fi

rootfs=$ws/target/podvisor-tests/rootfs
bundle=$scratch/bundle
mkdir -p "$bundle"
cat > "$bundle/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "$rootfs", "readonly": true},
  "hostname": "bench",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
  ],
  "linux": {
    "cgroupsPath": "/podvisor-bench/c",
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
    "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
JSON

declare -A bin
peers=()
oci=${PODVISOR_OCI_BIN:-$ws/target/release/podvisor-oci}
if [ -x "$oci" ]; then bin[podvisor-oci]=$oci; peers+=(podvisor-oci); fi
bin[crun]=$(command -v crun); peers+=(crun)
bin[runc]=$(command -v runc); peers+=(runc)
# crun without any cgroup work: on a hybrid host crun and runc also create the container's
# cgroup in every v1 hierarchy, which podvisor-oci (cgroup2 only) does not; this row shows the
# comparison without that handicap for the peer.
bin[crun-nocg]="$(command -v crun) --cgroup-manager=disabled"; peers+=(crun-nocg)
peers+=(floor)
fifo=$scratch/stdout
mkfifo "$fifo"

now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }

# One create+start+wait+delete; prints elapsed microseconds, or "fail".
# One create+start+wait+delete; prints "total create start wait delete" in microseconds, or "fail".
lifecycle() {
  local rt=$1 id=$2 root=$scratch/root-$1 t0 t1 t2 t3 t4 catpid
  local -a cmd
  read -r -a cmd <<<"${bin[$rt]}"
  cat "$fifo" > /dev/null & catpid=$!
  t0=${EPOCHREALTIME/./}
  if "${cmd[@]}" --root "$root" create --bundle "$bundle" "$id" > "$fifo" 2> "$scratch/err" < /dev/null &&
     t1=${EPOCHREALTIME/./} &&
     "${cmd[@]}" --root "$root" start "$id" 2>> "$scratch/err" &&
     t2=${EPOCHREALTIME/./} &&
     wait "$catpid" &&
     t3=${EPOCHREALTIME/./} &&
     "${cmd[@]}" --root "$root" delete --force "$id" 2>> "$scratch/err"; then
    t4=${EPOCHREALTIME/./}
    echo "$((t4 - t0)) $((t1 - t0)) $((t2 - t1)) $((t3 - t2)) $((t4 - t3))"
  else
    kill "$catpid" 2>/dev/null || true
    "${cmd[@]}" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
    echo fail
  fi
}

# The floor: the same namespaces and rootfs, no runtime: unshare + chroot + exec /bin/true.
floor() {
  local t0 t1
  t0=${EPOCHREALTIME/./}
  unshare --mount --pid --fork --net --ipc --uts chroot "$rootfs" /bin/true
  t1=${EPOCHREALTIME/./}
  echo $((t1 - t0))
}

declare -A samples ph_create ph_start ph_wait ph_delete
for p in "${peers[@]}"; do samples[$p]=""; ph_create[$p]=""; ph_start[$p]=""; ph_wait[$p]=""; ph_delete[$p]=""; done
n=${#peers[@]}
for ((round = 0; round < rounds; round++)); do
  for ((k = 0; k < n; k++)); do
    p=${peers[$(((round + k) % n))]}   # rotate the order every round
    if [ "$p" = floor ]; then r=$(floor); else r=$(lifecycle "$p" "bench-$round"); fi
    if [ "$r" = fail ]; then
      echo "bench-runtime: $p failed in round $round: $(tail -3 "$scratch/err")" >&2
      continue
    fi
    read -r us c st w d <<<"$r"
    samples[$p]+="$us "
    if [ -n "${d:-}" ]; then
      ph_create[$p]+="$c "; ph_start[$p]+="$st "; ph_wait[$p]+="$w "; ph_delete[$p]+="$d "
    fi
  done
done
rmdir /sys/fs/cgroup/unified/podvisor-bench 2>/dev/null || true
for h in /sys/fs/cgroup/*/podvisor-bench; do rmdir "$h" 2>/dev/null || true; done

stat() { # prints "median p90 count" in ms from microsecond samples
  tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {
    if (NR == 0) { print "- - 0"; exit }
    m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
    i = int(0.9 * NR + 0.999); if (i < 1) i = 1; if (i > NR) i = NR
    printf "%.2f %.2f %d\n", m / 1000, a[i] / 1000, NR }'
}
read -r crun_med _ _ <<<"$(stat "${samples[crun]}")"
echo "create+start+wait+delete of busybox true, $rounds interleaved rounds ($(uname -r), $(nproc) CPUs)"
printf '%-14s %10s %10s %6s %12s\n' runtime median_ms p90_ms n ratio_to_crun
for p in "${peers[@]}"; do
  read -r med p90 cnt <<<"$(stat "${samples[$p]}")"
  ratio=$(awk -v a="$med" -v b="$crun_med" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }')
  label=$p; [ "$p" = floor ] && label="floor(unshare)"
  printf '%-14s %10s %10s %6s %12s\n' "$label" "$med" "$p90" "$cnt" "$ratio"
done
[ -n "${bin[podvisor-oci]:-}" ] || echo "podvisor-oci: not measured ($oci missing)"
echo
echo "median per step (ms): create returns / start returns / the container's stdout closes / delete returns"
printf '%-14s %10s %10s %10s %10s\n' runtime create start wait delete
for p in "${peers[@]}"; do
  [ "$p" = floor ] && continue
  med() { stat "$1" | cut -d' ' -f1; }
  printf '%-14s %10s %10s %10s %10s\n' "$p" "$(med "${ph_create[$p]}")" "$(med "${ph_start[$p]}")" \
    "$(med "${ph_wait[$p]}")" "$(med "${ph_delete[$p]}")"
done
