# Scenario: teardown through the runtime CLI. A container without its own PID namespace (so
# the kernel does not kill its processes when its init dies) forks and daemonises (setsid,
# double fork); `delete --force` must leave no process and no cgroup behind (cgroup.kill).
# budget: 60
# boot: runner

need_oci
# Markers: sleeps with distinctive durations so the VM can find them in /proc.
args='["sh", "-c", "setsid sh -c \"sleep 424201 & exec sleep 424202\" & (sleep 424203 &); sleep 424204 & exec sleep 424205"]'
ns='[{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"network"}]'
b=$(make_bundle teardown "$args" '{}' "$ns")
cg=$(cgroup_of teardown)
markers() { pids_matching 'sleep 42420[1-5]' | wc -l; }
markers_at_least() { [ "$(markers)" -ge "$1" ]; }
no_markers() { [ "$(markers)" -eq 0 ]; }

step "start a container whose processes daemonise"
oci create --bundle "$b" teardown
oci start teardown
wait_until 20 "5 marker processes (have $(markers))" markers_at_least 5
echo "markers: $(pids_matching 'sleep 42420[1-5]' | tr '\n' ' ')"
for p in $(pids_matching 'sleep 42420[1-5]'); do
	grep -q "/vmtest/$VMTEST_NAME/teardown" "/proc/$p/cgroup" ||
		fail "marker process $p is not in the container's cgroup ($(cat /proc/$p/cgroup))"
done

step "delete --force"
oci delete --force teardown
wait_until 10 "every marker process to be gone" no_markers
[ -d "$cg" ] && fail "cgroup $cg still exists after delete --force"
status_is teardown stopped && fail "teardown still known to the runtime after delete"
pass "5 daemonised processes killed and cgroup removed by delete --force"
