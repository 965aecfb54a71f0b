# Scenario: podvisor agent as PID 1 places pods in the QoS tree of cgroup v2 and applies their
# limits: a Guaranteed pod under pods/guaranteed with memory.max and cpu.max from its limits,
# a Burstable pod under pods/burstable with its memory limit, a BestEffort pod under
# pods/besteffort with no limit but the memory, cpu and pids controllers enabled down to its
# pod cgroup (as the kubelet's tree has them); each container's process is in its own cgroup. The
# containers have exec readiness probes (run through the runtime's exec, with podvisor's init
# as PID 1), and a pod counts as running only once it is ready. Probes on all three pods at
# once: before the exec hand-over fix in runtime/src/container/create.rs (an exec'd process
# could be left an unreaped zombie in the container's pid namespace) this soft-locked the VM.
# budget: 90
# boot: agent
# prepare: scripts/build-busybox-image "$OUT" >/dev/null

probe_for() {
	printf '    readinessProbe:\n      exec: {command: ["test", "-d", "/proc/self"]}\n      periodSeconds: 1\n'
}

manifests() {
	for q in guaranteed burstable besteffort; do
		case $q in
		guaranteed) res='{limits: {cpu: 100m, memory: 32Mi}}' ;;
		burstable) res='{requests: {memory: 16Mi}, limits: {memory: 64Mi}}' ;;
		besteffort) res='{}' ;;
		esac
		cat >"$MANIFESTS/qos-$q.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: qos-$q}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox:podvisor-test
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done", "qos-$q-main"]
    resources: $res
$(probe_for)
YAML
	done
}

check() {
	for q in guaranteed burstable besteffort; do
		name=qos-$q-vmtest
		wait_until 60 "$name Running" pod_running "$name"
		uid=$(pod_uid "$name")
		[ -n "$uid" ] || fail "no uid for $name in podvisor inspect"
		dir=$PODS_CG/$q/pod$uid/c
		[ -d "$dir" ] || fail "$name: cgroup $dir missing (found: $(find $PODS_CG -maxdepth 2 -name 'pod*' | tr '\n' ' '))"
		# The container's shell is the process with qos-<class>-main (its $0) on its command line.
		pid=$(ps -o pid,args | awk -v m="qos-$q-main" 'index($0, m) && $2 == "/bin/sh" { print $1; exit }')
		if [ -z "$pid" ]; then
			ps -o pid,args | grep -v ' \[' | head -n 40
			fail "$name: no process with qos-$q-main on its command line"
		fi
		grep -qx "$pid" "$dir/cgroup.procs" ||
			fail "$name: process $pid is not in $dir (cgroup.procs: $(cat "$dir/cgroup.procs" | tr '\n' ' '))"
		echo "ok: $name's process $pid is in $dir"
		eval "dir_$q=\$dir"
	done
	expect_eq 33554432 "$(read_file "$dir_guaranteed/memory.max")" "memory.max of the Guaranteed container"
	expect_eq "10000 100000" "$(read_file "$dir_guaranteed/cpu.max")" "cpu.max of the Guaranteed container (100m)"
	expect_eq 67108864 "$(read_file "$dir_burstable/memory.max")" "memory.max of the Burstable container"
	# No limit, but the controllers are there as under the kubelet's kubepods/besteffort: the
	# agent enables every controller down to the pod cgroup (agent/src/daemon/pod_cgroup.rs),
	# so a BestEffort container has memory.max "max", memory.current and pids accounting.
	for d in /sys/fs/cgroup /sys/fs/cgroup/podvisor $PODS_CG $PODS_CG/besteffort "${dir_besteffort%/c}"; do
		sc=$(read_file "$d/cgroup.subtree_control")
		for c in cpu memory pids; do
			case " $sc " in *" $c "*) ;; *) fail "$d/cgroup.subtree_control lacks $c (has: $sc)" ;; esac
		done
	done
	echo "ok: cpu memory pids in cgroup.subtree_control from the root down to ${dir_besteffort%/c}"
	expect_eq max "$(read_file "$dir_besteffort/memory.max")" "memory.max of the BestEffort container"
	be_mem=$(read_file "$dir_besteffort/memory.current")
	expect_ge 1 "$be_mem" "memory.current of the BestEffort container (accounted)"
	pass "pods/guaranteed (memory.max 32Mi, cpu.max 10000/100000), pods/burstable (memory.max 64Mi), pods/besteffort (memory.max max, memory.current $be_mem, cpu memory pids enabled down to the pod); each process in its container's cgroup"
}
