# Scenario: deleting a pod whose processes daemonise, under podvisor as PID 1. The pod's
# script (written by the check into a hostPath directory) starts three daemons that leave
# the container's main process behind: a double fork into a new session (setsid), a deeper
# double fork with closed stdio, and one that keeps forking children; all of them and the
# main process ignore SIGTERM, SIGHUP and SIGINT. Removing the manifest must leave no
# process of the pod (cgroup.kill after the grace period), no pod cgroup, no shim, no state
# or pod directory.
# budget: 60
# boot: agent
# prepare: scripts/build-busybox-image "$OUT" >/dev/null

SCRIPTS=/run/vmtest-teardown

manifests() { :; }

daemonise_script() {
	cat <<'SH'
#!/bin/sh
# Ignore what a polite stop sends; each daemon is marked by its $0 (teardown-daemon-N).
trap '' TERM HUP INT
loop='trap "" TERM HUP INT; while true; do sleep 1; done'
# 1: double fork into a new session.
( setsid sh -c "$loop" teardown-daemon-1 & )
# 2: a deeper double fork with stdio closed.
( ( setsid sh -c "$loop" teardown-daemon-2 </dev/null >/dev/null 2>&1 & ) & )
# 3: a daemon that keeps forking children.
( setsid sh -c 'trap "" TERM HUP INT; while true; do sleep 1 & wait; done' teardown-daemon-3 & )
while true; do sleep 1; done
SH
}

teardown_manifest() {
	cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: daemons}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:podvisor-test
    imagePullPolicy: Never
    command: ["/bin/sh", "/scripts/daemonise.sh", "teardown-main"]
    volumeMounts:
    - {name: scripts, mountPath: /scripts, readOnly: true}
  volumes:
  - name: scripts
    hostPath: {path: $SCRIPTS, type: Directory}
YAML
}

# three_daemons: every daemon is running.
three_daemons() {
	[ "$(pids_matching 'teardown-daemon-[123]' | wc -l)" -ge 3 ]
}

# session PID: the session id of a process (field 6 of /proc/PID/stat).
session() {
	awk '{ sub(/^.*\) /, ""); print $4 }' "/proc/$1/stat" 2>/dev/null
}

check() {
	mkdir -p "$SCRIPTS"
	daemonise_script >"$SCRIPTS/daemonise.sh"
	teardown_manifest >"$AGENT_MANIFESTS/daemons.yaml"
	wait_until 30 "daemons-vmtest Running" pod_running daemons-vmtest
	wait_until 20 "the three daemons" three_daemons
	uid=$(pod_uid daemons-vmtest)
	[ -n "$uid" ] || fail "no uid for daemons-vmtest"
	pod=$(ls -d "$PODS_CG"/*/"pod$uid" 2>/dev/null | head -n 1)
	[ -d "$pod" ] || fail "no pod cgroup pod$uid under $PODS_CG"
	main=$(pids_matching 'daemonise.sh teardown-main' | head -n 1)
	procs=$(pids_matching 'teardown-(main|daemon-[123])' | tr '\n' ' ')
	shim=$(pids_matching "shim --uid $uid" | head -n 1)
	[ -n "$shim" ] || fail "no shim process for pod $uid (args 'shim --uid $uid')"
	echo "main $main (session $(session "$main")), shim $shim, pod cgroup $pod"
	for p in $procs; do
		echo "  $p: session $(session "$p"), parent $(awk '{ sub(/^.*\) /, ""); print $2 }' "/proc/$p/stat"): $(tr '\000' ' ' <"/proc/$p/cmdline" | cut -c1-60)"
	done
	d1=$(pids_matching 'teardown-daemon-1' | head -n 1)
	[ "$(session "$d1")" != "$(session "$main")" ] ||
		fail "teardown-daemon-1 is in the main process's session: setsid did not daemonise it"
	all=$(cat "$pod"/*/cgroup.procs | wc -l)
	echo "processes in the pod cgroup: $all"

	step "delete the pod (remove its manifest)"
	rm -f "$AGENT_MANIFESTS/daemons.yaml"
	t0=$(ms_uptime)
	wait_until 30 "daemons-vmtest gone from podvisor ps" pod_absent daemons-vmtest
	t1=$(ms_uptime)
	left=""
	for p in $procs $shim; do
		[ -d "/proc/$p" ] && left="$left $p($(tr '\000' ' ' <"/proc/$p/cmdline" | cut -c1-40))"
	done
	[ -z "$left" ] || fail "processes left after the pod was deleted:$left"
	n=$(pids_matching 'teardown-(main|daemon-[123])' | wc -l)
	expect_eq 0 "$n" "processes marked teardown-* left"
	n=$(pids_matching "shim --uid $uid" | wc -l)
	expect_eq 0 "$n" "shims of pod $uid left"
	[ -d "$pod" ] && fail "pod cgroup $pod left (cgroup.procs: $(cat "$pod"/*/cgroup.procs 2>/dev/null | tr '\n' ' '))"
	[ -e "/run/podvisor/pods/$uid" ] && fail "state directory /run/podvisor/pods/$uid left: $(ls "/run/podvisor/pods/$uid" | tr '\n' ' ')"
	[ -e "/var/lib/podvisor/pods/$uid" ] && fail "pod directory /var/lib/podvisor/pods/$uid left"
	echo "gone in $((t1 - t0)) ms"
	pass "$all processes (3 setsid daemons ignoring TERM) and shim $shim gone $((t1 - t0)) ms after the manifest was removed; no pod cgroup, state or pod directory left"
}
