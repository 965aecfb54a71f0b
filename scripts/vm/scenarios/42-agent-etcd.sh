# Scenario: etcd as a static pod under podvisor as PID 1, the way kubeadm runs it. The etcd
# image (scripts/vm/build-etcd-image: Debian's etcd-server and etcd-client) is imported with
# `podvisor images import` while the agent runs (an air-gapped node's flow), then the manifest
# below (kubeadm's shape) is dropped into the manifest directory. Asserted: the pod gets
# Running and Ready through its startup probe, lands in the Burstable tree with cpu.weight
# from its 100m request, `etcdctl put/get` works against it; then etcd is SIGKILLed from the
# VM's pid namespace and the agent restarts it (restartCount 1, lastState exit 137), it gets
# Ready again and the key written before is still there (the etcd-data hostPath survived).
# Prints VMTEST TIME lines for manifest-to-Ready, etcd-process-start-to-Ready and
# kill-to-Ready-again.
# budget: 100
# boot: agent
# prepare: scripts/build-busybox-image "$OUT" >/dev/null && scripts/vm/build-etcd-image "$OUT/build" >/dev/null && mv "$OUT/build/etcd-oci.tar" "$OUT/" && sed -n 's/.*"org.opencontainers.image.ref.name": "\([^"]*\)".*/\1/p' "$OUT/build/oci/index.json" >"$OUT/image-name" && rm -rf "$OUT/build"

# Nothing at boot: the image is imported and the manifest written by the check.
manifests() { :; }

# The manifest kubeadm (1.28-1.30, whose etcd probes use /health: Debian's etcd is 3.4,
# which has no /livez) writes to /etc/kubernetes/manifests/etcd.yaml, with two changes:
# - plain http and no certificates (no --cert-file/--key-file/--trusted-ca-file/
#   --client-cert-auth, http:// URLs): the VM tests the pod, not etcd's TLS; the etcd-certs
#   hostPath stays, as kubeadm writes it;
# - the startup probe starts after 1 s and runs every 1 s instead of 10 s/10 s so that Ready
#   comes a second after etcd serves, not ten (kubeadm's failureThreshold 24 and
#   timeoutSeconds 15 are kept). The liveness probe has kubeadm's numbers unchanged.
etcd_manifest() {
	cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: http://127.0.0.1:2379
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=http://127.0.0.1:2379
    - --data-dir=/var/lib/etcd
    - --experimental-initial-corrupt-check=true
    - --experimental-watch-progress-notify-interval=5s
    - --initial-advertise-peer-urls=http://127.0.0.1:2380
    - --initial-cluster=vmtest=http://127.0.0.1:2380
    - --listen-client-urls=http://127.0.0.1:2379
    - --listen-metrics-urls=http://127.0.0.1:2381
    - --listen-peer-urls=http://127.0.0.1:2380
    - --name=vmtest
    - --snapshot-count=10000
    image: $1
    imagePullPolicy: IfNotPresent
    livenessProbe:
      failureThreshold: 8
      httpGet:
        host: 127.0.0.1
        path: /health?exclude=NOSPACE&serializable=true
        port: 2381
        scheme: HTTP
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
    name: etcd
    resources:
      requests:
        cpu: 100m
        memory: 100Mi
    startupProbe:
      failureThreshold: 24
      httpGet:
        host: 127.0.0.1
        path: /health?serializable=false
        port: 2381
        scheme: HTTP
      initialDelaySeconds: 1
      periodSeconds: 1
      timeoutSeconds: 15
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
    - mountPath: /etc/kubernetes/pki/etcd
      name: etcd-certs
  hostNetwork: true
  priority: 2000001000
  priorityClassName: system-node-critical
  securityContext:
    seccompProfile:
      type: RuntimeDefault
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki/etcd
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
status: {}
YAML
}

POD=etcd-vmtest

# etcd_pid: the pid (in the VM's pid namespace) of the etcd server process.
etcd_pid() {
	pids_matching '^etcd .*--name=vmtest' | head -n 1
}

# ctl ARGS...: the image's etcdctl (with the image's C library), run in the container's root
# through /proc/PID/root; the pod has host network, so 127.0.0.1:2379 is etcd.
ctl() {
	chroot "/proc/$(etcd_pid)/root" /usr/local/bin/etcdctl --endpoints=http://127.0.0.1:2379 \
		--command-timeout=10s "$@"
}

# restarted_and_ready OLD_PID: one status snapshot says restartCount 1, started and ready,
# and a new etcd process runs. (One snapshot: `ps` then `inspect` could pair the old run's
# Ready, not yet updated after the kill, with the new run's restartCount.)
restarted_and_ready() {
	_j=$(pod_json "$POD") || return 1
	echo "$_j" | grep -q '"restartCount": 1,' &&
		echo "$_j" | grep -q '"ready": true' &&
		echo "$_j" | grep -q '"started": true' &&
		echo "$_j" | grep -q '"running": {' || return 1
	p=$(etcd_pid)
	[ -n "$p" ] && [ "$p" != "$1" ]
}

# start_ms PID: when the process started, in ms since boot (field 22 of /proc/PID/stat, in
# clock ticks of 10 ms).
start_ms() {
	awk '{ sub(/^.*\) /, ""); print $20 * 10 }' "/proc/$1/stat"
}

check() {
	data=/vmtest/data/$VMTEST_NAME
	image=$(cat "$data/image-name")
	[ -n "$image" ] || fail "no image name in $data/image-name"

	step "import $image"
	t=$(ms_uptime)
	$PV images --root /var/lib/podvisor import "$data/etcd-oci.tar" ||
		fail "podvisor images import $data/etcd-oci.tar failed"
	echo "imported in $(($(ms_uptime) - t)) ms"

	step "write the manifest"
	etcd_manifest "$image" >"$AGENT_MANIFESTS/etcd.yaml"
	t0=$(ms_uptime)
	wait_until 60 "$POD Running and Ready" pod_running "$POD"
	t1=$(ms_uptime)
	pid=$(etcd_pid)
	[ -n "$pid" ] || fail "$POD is Ready but no etcd process is visible in the VM"
	s=$(start_ms "$pid")
	vm_time etcd-manifest-to-ready $((t1 - t0))
	vm_time etcd-process-start-to-ready $((t1 - s))
	echo "Ready $((t1 - t0)) ms after the manifest, $((t1 - s)) ms after etcd (pid $pid) started"

	step "cgroup and spec"
	uid=$(pod_uid "$POD")
	dir=$PODS_CG/burstable/pod$uid/etcd
	grep -qx "$pid" "$dir/cgroup.procs" 2>/dev/null ||
		fail "etcd (pid $pid) is not in $dir (requests without limits: Burstable)"
	# 100m -> 102 shares -> weight 1 + (102 - 2) * 9999 / 262142 = 4 (the kubelet's conversion).
	expect_eq 4 "$(read_file "$dir/cpu.weight")" "cpu.weight of etcd (requests.cpu 100m)"
	j=$(pod_json "$POD")
	echo "$j" | grep -q '"qosClass": "Burstable"' || fail "$POD: status.qosClass is not Burstable"

	step "etcdctl put/get"
	value="written-before-the-kill-$t0"
	ctl put vmtest/key "$value" || fail "etcdctl put vmtest/key failed"
	expect_eq "$value" "$(ctl get --print-value-only vmtest/key)" "etcdctl get vmtest/key"
	ls /var/lib/etcd/member/snap >/dev/null 2>&1 ||
		fail "no /var/lib/etcd/member on the node: the etcd-data hostPath is not the data directory"

	step "SIGKILL etcd (pid $pid) from the VM's pid namespace"
	kill -KILL "$pid" || fail "kill -KILL $pid failed"
	t2=$(ms_uptime)
	wait_until 60 "$POD restarted (restartCount 1) and Ready again" restarted_and_ready "$pid"
	t3=$(ms_uptime)
	vm_time etcd-kill-to-ready-again $((t3 - t2))
	new=$(etcd_pid)
	j=$(pod_json "$POD")
	echo "$j" | sed -n '/"containerStatuses"/,$p' | head -n 40
	restarts=$(echo "$j" | sed -n 's/.*"restartCount": \([0-9]*\).*/\1/p' | head -n 1)
	expect_eq 1 "$restarts" "restartCount of etcd after one kill"
	# The container runs again: the only exit code in the status is lastState's.
	echo "$j" | grep -q '"exitCode": 137' ||
		fail "lastState of etcd does not say exit code 137 (SIGKILL)"
	got=$(ctl get --print-value-only vmtest/key)
	expect_eq "$value" "$got" "etcdctl get vmtest/key after the restart"

	step "remove the manifest"
	rm -f "$AGENT_MANIFESTS/etcd.yaml"
	wait_until 30 "$POD gone" pod_absent "$POD"
	pass "Ready $((t1 - t0)) ms after the manifest; put/get; SIGKILL of etcd pid $pid -> restartCount 1, lastState exit 137, new pid $new Ready in $((t3 - t2)) ms; key still '$got'"
}
