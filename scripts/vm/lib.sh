# In-VM helpers for scenario scripts (busybox sh). The runner sources this file before each
# scenario, in a fresh shell whose stdout/stderr go to the scenario's log.
#
# A scenario passes by exiting 0 (optionally after `pass "detail"`), fails with `fail "detail"`
# (even from inside a command substitution: it leaves a marker the runner checks) or any
# non-zero exit. The detail is the text after PASS/FAIL on the result line, so it must
# say what was expected and what was seen.
#
# Variables set by the runner:
#   VMTEST_NAME     the scenario's name (file name without number and .sh)
#   VMTEST_WORK     a scratch directory for this scenario (tmpfs)
#   VMTEST_DETAIL   file holding the result detail
#   OCI             the runtime CLI to drive (podvisor-oci by default; vmtest.oci= on the cmdline)

OCI_ROOT=/run/vmtest-oci
CG=/sys/fs/cgroup
ROOTFS=/vmtest/work/rootfs

# Record the detail and end the scenario (or the command substitution it runs in) with
# failure. The first failure's detail is kept: it is the cause, later ones are consequences.
fail() {
	echo "FAIL: $*" >&2
	[ -e "$VMTEST_WORK/failed" ] || echo "$*" >"$VMTEST_DETAIL"
	: >"$VMTEST_WORK/failed"
	exit 1
}

# Record a detail for a passing scenario (the scenario still ends by reaching its end).
pass() {
	echo "PASS: $*"
	[ -e "$VMTEST_WORK/failed" ] || echo "$*" >"$VMTEST_DETAIL"
}

# Log a step, so the scenario log reads as a list of steps.
step() {
	echo "--- $*"
}

# expect_eq WANT GOT WHAT: fail unless the two strings are equal.
expect_eq() {
	[ "$1" = "$2" ] || fail "$3: want '$1', got '$2'"
	echo "ok: $3 = '$2'"
}

# expect_ge MIN GOT WHAT: fail unless the integer GOT is >= MIN.
expect_ge() {
	case "$2" in '' | *[!0-9]*) fail "$3: want an integer >= $1, got '$2'" ;; esac
	[ "$2" -ge "$1" ] || fail "$3: want >= $1, got $2"
	echo "ok: $3 = $2 (>= $1)"
}

# expect_le MAX GOT WHAT: fail unless the integer GOT is <= MAX.
expect_le() {
	case "$2" in '' | *[!0-9]*) fail "$3: want an integer <= $1, got '$2'" ;; esac
	[ "$2" -le "$1" ] || fail "$3: want <= $1, got $2"
	echo "ok: $3 = $2 (<= $1)"
}

# keyed_value FILE KEY: the value of "KEY VALUE" in a flat-keyed cgroup file (memory.events, cpu.stat).
keyed_value() {
	[ -r "$1" ] || fail "read $1: missing (cgroup removed or controller not enabled)"
	awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "" }' "$1"
}

# read_file FILE: the content of FILE, failing clearly when it cannot be read.
read_file() {
	[ -r "$1" ] || fail "read $1: missing (cgroup removed or controller not enabled)"
	cat "$1"
}

# wait_until SECONDS WHAT CMD...: poll CMD every 0.2 s until it succeeds, or fail naming WHAT.
wait_until() {
	_limit=$(($1 * 5))
	_what=$2
	shift 2
	_i=0
	while ! "$@" >/dev/null 2>&1; do
		_i=$((_i + 1))
		[ "$_i" -lt "$_limit" ] || fail "timed out waiting for $_what"
		sleep 0.2
	done
}

# need_oci: fail clearly when the runtime CLI is not in the VM image.
need_oci() {
	command -v "$OCI" >/dev/null 2>&1 ||
		fail "$OCI missing from the VM image (runtime not built or not merged yet)"
}

# oci ARGS...: run the runtime CLI with the scenario's state root; on failure, fail with its
# exit status and error output so the result line names the unsupported verb or flag.
# Its stderr goes to a file of its own (oci-N-VERB.err): a container inherits the stderr of
# `create`/`run` and keeps writing there, so files are never reused. The runner prints them
# when a scenario fails.
oci() {
	_n=$((${_oci_calls:-0} + 1))
	_oci_calls=$_n
	_err=$VMTEST_WORK/oci-$_n-$1.err
	echo "+ $OCI $*"
	if "$OCI" --root "$OCI_ROOT" "$@" 2>"$_err"; then
		return 0
	else
		_rc=$?
		fail "$OCI $1 ${2:-} failed (exit $_rc): $(tail -n 3 "$_err" | tr '\n' ' ')"
	fi
}

# oci_status ID: the container's OCI state status (creating|created|running|stopped), or "".
oci_status() {
	"$OCI" --root "$OCI_ROOT" state "$1" 2>/dev/null |
		sed -n 's/.*"status"[[:space:]]*:[[:space:]]*"\([a-z]*\)".*/\1/p'
}

# status_is ID STATUS: true when the container's status is STATUS.
status_is() {
	[ "$(oci_status "$1")" = "$2" ]
}

# cleanup_container ID: best effort delete, used on every path out of a scenario.
cleanup_container() {
	"$OCI" --root "$OCI_ROOT" delete --force "$1" >/dev/null 2>&1 || true
}

# make_rootfs: a busybox root filesystem shared read-only by every bundle.
make_rootfs() {
	[ -x "$ROOTFS/bin/busybox" ] && return 0
	mkdir -p "$ROOTFS/bin" "$ROOTFS/proc" "$ROOTFS/sys" "$ROOTFS/dev" "$ROOTFS/tmp" \
		"$ROOTFS/etc" "$ROOTFS/root"
	cp /bin/busybox "$ROOTFS/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -s busybox "$ROOTFS/bin/$a"
	done
	echo "root:x:0:0:root:/root:/bin/sh" >"$ROOTFS/etc/passwd"
	echo "root:x:0:" >"$ROOTFS/etc/group"
}

# cgroup_of ID: the container's cgroup directory as the VM sees it (bundles use /vmtest/NAME/ID).
cgroup_of() {
	echo "$CG/vmtest/$VMTEST_NAME/$1"
}

# make_bundle ID ARGS_JSON RESOURCES_JSON [NAMESPACES_JSON]: a bundle directory with a
# runc-shaped config.json over the shared busybox rootfs, its cgroup at /vmtest/NAME/ID.
# Prints the bundle path. The default namespaces are runc's (pid ipc uts mount network cgroup).
# Optional variables: BUNDLE_ROOTFS (another root, e.g. an unpacked image),
# BUNDLE_MOUNTS (more mount objects, each preceded by a comma), BUNDLE_CGROUP (another
# cgroupsPath, still under /vmtest/NAME so the runner cleans it up).
make_bundle() {
	make_rootfs
	_root=${BUNDLE_ROOTFS:-$ROOTFS}
	_b=$VMTEST_WORK/bundles/$1
	_ns=${4:-'[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"network"},{"type":"cgroup"}]'}
	_caps='["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW","CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"]'
	mkdir -p "$_b"
	cat >"$_b/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": $2,
    "env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/root"],
    "cwd": "/",
    "capabilities": {"bounding": $_caps, "effective": $_caps, "permitted": $_caps},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "$_root", "readonly": true},
  "hostname": "$1",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}
    ${BUNDLE_MOUNTS:-}
  ],
  "linux": {
    "cgroupsPath": "${BUNDLE_CGROUP:-/vmtest/$VMTEST_NAME/$1}",
    "resources": $3,
    "namespaces": $_ns,
    "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
EOF
	echo "$_b"
}

# pids_matching PATTERN: pids whose command line ("args args...") matches PATTERN (an
# extended regex). One ps(1) reads /proc: forking a reader per process is slow under TCG.
pids_matching() {
	ps -o pid,args | awk -v re="$1" 'NR > 1 { pid = $1; sub(/^ *[0-9]+ /, ""); if ($0 ~ re) print pid }'
}
