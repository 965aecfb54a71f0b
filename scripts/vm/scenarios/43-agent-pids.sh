# Scenario: a fork bomb in a pod under podvisor as PID 1 is contained by the agent's
# --pod-max-pids (the kubelet's flag of the same name; the agent boot sets it): the pod cgroup
# and the container's cgroup have pids.max set, the bomb's forks fail there (pids.events max
# grows, pids.current stays at the limit), while a neighbour pod (started at boot, BestEffort
# like the bomb) keeps beating into a hostPath file and stays Ready (exec probe every second),
# and the agent's API answers `podvisor ps`. Then the bomb's manifest is removed: the
# storm is ended (cgroup.kill), no process and no cgroup of the pod is left. No CPU limit on
# the bomb: only pids.max contains it (it still gets its share of the two CPUs).
# budget: 90
# boot: agent
# prepare: scripts/build-busybox-image "$OUT" >/dev/null

HB=/run/vmtest-heartbeat

manifests() {
	cat >"$MANIFESTS/pids-neighbour.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: pids-neighbour}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: beat
    image: busybox:podvisor-test
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do echo beat >>/hb/beats; sleep 1; done"]
    readinessProbe:
      exec: {command: ["test", "-s", "/hb/beats"]}
      periodSeconds: 1
    volumeMounts:
    - {name: hb, mountPath: /hb}
  volumes:
  - name: hb
    hostPath: {path: $HB, type: DirectoryOrCreate}
YAML
}

GO=/run/vmtest-forkbomb

bomb_manifest() {
	# The classic shell fork bomb (each call forks itself twice through a pipe, in the
	# background); its "can't fork" errors go to /dev/null, not to the pod's log. The main
	# shell keeps the container running. It goes off only once the check has seen pids.max
	# set (the file go in a hostPath directory), so an agent without the limit fails the
	# check before an unbounded bomb could take the VM down.
	cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: forkbomb}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: bomb
    image: busybox:podvisor-test
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "until [ -e /ctl/go ]; do sleep 0.2; done; exec 2>/dev/null; bomb() { bomb | bomb & }; bomb; while true; do sleep 1; done"]
    volumeMounts:
    - {name: ctl, mountPath: /ctl, readOnly: true}
  volumes:
  - name: ctl
    hostPath: {path: $GO, type: DirectoryOrCreate}
YAML
}

beats() {
	wc -l <"$HB/beats" 2>/dev/null || echo 0
}

# limit_hit DIR: the bomb's forks have failed on pids.max at least once.
limit_hit() {
	[ "$(keyed_value "$1/pids.events" max)" -ge 1 ] 2>/dev/null
}

check() {
	wait_until 60 "pids-neighbour-vmtest Running and Ready" pod_running pids-neighbour-vmtest

	step "start the fork bomb"
	# However the check ends (a failed assertion exits), the bomb does not outlive it.
	trap 'rm -f "$AGENT_MANIFESTS/forkbomb.yaml"' EXIT
	rm -f "$GO/go"
	bomb_manifest >"$AGENT_MANIFESTS/forkbomb.yaml"
	wait_until 30 "forkbomb-vmtest Running" pod_running forkbomb-vmtest
	uid=$(pod_uid forkbomb-vmtest)
	pod=$PODS_CG/besteffort/pod$uid
	dir=$pod/bomb
	expect_eq "$POD_MAX_PIDS" "$(read_file "$pod/pids.max")" "pids.max of the bomb's pod cgroup (--pod-max-pids)"
	expect_eq "$POD_MAX_PIDS" "$(read_file "$dir/pids.max")" "pids.max of the bomb's container cgroup"
	mkdir -p "$GO" && : >"$GO/go"
	wait_until 30 "the bomb to hit pids.max ($dir/pids.events max >= 1)" limit_hit "$dir"

	step "watch the node for 8 s while the bomb runs"
	b0=$(beats)
	most=0 slowest=0 i=0
	while [ "$i" -lt 8 ]; do
		i=$((i + 1))
		t=$(ms_uptime)
		$PV ps >"$VMTEST_WORK/ps" 2>&1 || fail "podvisor ps failed during the fork bomb: $(tail -n 1 "$VMTEST_WORK/ps")"
		d=$(($(ms_uptime) - t))
		[ "$d" -gt "$slowest" ] && slowest=$d
		awk '$1 == "pids-neighbour-vmtest" && $3 == "Running" && $2 == "1/1" { ok = 1 } END { exit !ok }' "$VMTEST_WORK/ps" ||
			fail "pids-neighbour-vmtest not Running and Ready during the fork bomb: $(grep pids-neighbour "$VMTEST_WORK/ps")"
		n=$(read_file "$pod/pids.current")
		[ "$n" -gt "$most" ] && most=$n
		expect_le "$POD_MAX_PIDS" "$n" "pids.current of the bomb's pod" >/dev/null
		sleep 1
	done
	b1=$(beats)
	events=$(keyed_value "$dir/pids.events" max)
	echo "beats $b0 -> $b1; pids.current peak $most; pids.events max $events; slowest podvisor ps ${slowest} ms"
	cat "$VMTEST_WORK/ps"
	# One beat a second when healthy; under TCG, with the bomb busy on the other CPU, at least
	# 4 in those 8+ s.
	expect_ge 4 $((b1 - b0)) "the neighbour's heartbeats during 8 s of fork bomb"
	expect_ge $((POD_MAX_PIDS / 2)) "$most" "the bomb's peak pids.current (it really forks)"
	expect_le 10000 "$slowest" "slowest podvisor ps during the bomb (ms)"

	step "remove the bomb's manifest"
	rm -f "$AGENT_MANIFESTS/forkbomb.yaml"
	wait_until 30 "forkbomb-vmtest gone" pod_absent forkbomb-vmtest
	# The API forgets the pod when its worker ends; the agent then removes its cgroup.
	i=0
	while [ -d "$pod" ] && [ "$i" -lt 50 ]; do
		i=$((i + 1))
		sleep 0.2
	done
	[ -d "$pod" ] && fail "pod cgroup $pod still there 10 s after the pod was deleted ($(cat "$pod/cgroup.procs" "$dir/cgroup.procs" 2>/dev/null | wc -l) processes)"
	left=$(pids_matching 'exec 2>/dev/null; bomb' | wc -l)
	expect_eq 0 "$left" "processes of the fork bomb left"
	pod_running pids-neighbour-vmtest || fail "pids-neighbour-vmtest not Running and Ready after the bomb"
	pass "fork bomb held at pids.max $POD_MAX_PIDS (peak $most, $events failed forks); neighbour beat $((b1 - b0)) times in 8 s and stayed Ready; podvisor ps slowest ${slowest} ms; deleted: no process, no cgroup left"
}
