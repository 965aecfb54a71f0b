# Scenario: podvisor agent as PID 1 sees a container that touches more than its memory limit
# OOM-killed: the status says terminated reason OOMKilled with exit code 137, and the
# container is restarted (restartPolicy Always, with backoff).
# budget: 90
# boot: agent
# prepare: scripts/build-busybox-image "$OUT" >/dev/null

manifests() {
	cat >"$MANIFESTS/oom.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: eat
    image: busybox:podvisor-test
    imagePullPolicy: Never
    command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]
    resources: {limits: {memory: 32Mi}}
YAML
}

oom_restarted() {
	j=$(pod_json oom-vmtest) || return 1
	echo "$j" | grep -q '"reason": "OOMKilled"' &&
		echo "$j" | grep -q '"exitCode": 137' &&
		echo "$j" | grep -q '"restartCount": [1-9]'
}

check() {
	wait_until 60 "oom-vmtest OOMKilled (exit 137) and restarted" oom_restarted
	j=$(pod_json oom-vmtest)
	echo "$j" | sed -n '/"containerStatuses"/,$p' | head -n 40
	restarts=$(echo "$j" | sed -n 's/.*"restartCount": \([0-9]*\).*/\1/p' | head -n 1)
	expect_ge 1 "$restarts" "restartCount of oom-vmtest"
	pass "dd of 64 MiB under a 32 MiB limit: lastState/state terminated OOMKilled, exit 137, restarted ($restarts restarts)"
}
