# Scenario: linux.resources.memory.limit through the runtime CLI. A container that touches
# more than its limit is OOM-killed: `run` exits 137 (SIGKILL), memory.events counts the
# oom_kill, memory.max holds the limit, and the cgroup stays until delete (that is where the
# agent reads OOMKilled), then goes. A control container under the limit exits 0.
# budget: 90
# boot: runner

need_oci
limit=33554432 # 32 MiB
res='{"memory": {"limit": '$limit'}}'
# dd's buffer is bs bytes, filled by read(2) from /dev/zero: every page is touched and charged.
over='["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]'
under='["dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1"]'

step "control: 8 MiB under a 32 MiB limit exits 0"
b=$(make_bundle mem-under "$under" "$res")
oci run --bundle "$b" mem-under
rc=$?
expect_eq 0 "$rc" "exit status of mem-under"
cleanup_container mem-under

step "over the limit: run exits 137"
b=$(make_bundle mem-run "$over" "$res")
echo "+ $OCI run --bundle $b mem-run"
"$OCI" --root "$OCI_ROOT" run --bundle "$b" mem-run
rc=$?
cleanup_container mem-run
expect_eq 137 "$rc" "exit status of mem-run (128 + SIGKILL)"

step "over the limit: create, start, wait for stopped, then read the cgroup"
b=$(make_bundle mem-oom "$over" "$res")
cg=$(cgroup_of mem-oom)
oci create --bundle "$b" mem-oom
expect_eq "$limit" "$(read_file "$cg/memory.max")" "memory.max of mem-oom"
oci start mem-oom
wait_until 30 "mem-oom to stop" status_is mem-oom stopped
cat "$cg/memory.events"
expect_ge 1 "$(keyed_value "$cg/memory.events" oom_kill)" "memory.events oom_kill"
expect_eq "$limit" "$(read_file "$cg/memory.max")" "memory.max after the kill"
oci delete mem-oom
[ -d "$cg" ] && fail "cgroup $cg still exists after delete"
pass "OOM kill at memory.max=$limit: exit 137, oom_kill counted, cgroup removed on delete"
