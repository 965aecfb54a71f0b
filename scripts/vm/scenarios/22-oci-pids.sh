# Scenario: linux.resources.pids.limit through the runtime CLI. A fork bomb is held at
# pids.max (pids.events counts the refused forks) while another container still starts and
# runs on the same VM; force-deleting the bomb leaves no process and no cgroup.
# budget: 120
# boot: runner

need_oci
max=64
bomb='["sh", "-c", "exec 2>/dev/null; b() { b | b & }; b; sleep 1000"]'
b=$(make_bundle pids-bomb "$bomb" '{"pids": {"limit": '$max'}}')
cg=$(cgroup_of pids-bomb)

step "fork bomb under pids.max=$max"
oci create --bundle "$b" pids-bomb
expect_eq "$max" "$(read_file "$cg/pids.max")" "pids.max"
oci start pids-bomb
hit_max() { [ "$(keyed_value "$cg/pids.events" max)" -gt 0 ]; }
wait_until 30 "the bomb to hit pids.max (pids.events max > 0)" hit_max
peak=0
for i in 1 2 3 4 5 6 7 8 9 10; do
	cur=$(read_file "$cg/pids.current")
	[ "$cur" -gt "$peak" ] && peak=$cur
	sleep 0.2
done
expect_le "$max" "$peak" "peak pids.current over 2 s"
expect_ge 1 "$(keyed_value "$cg/pids.events" max)" "pids.events max (refused forks)"

step "the VM stays healthy: another container runs while the bomb is active"
b2=$(make_bundle pids-neighbour '["echo", "neighbour-alive"]' '{}')
out=$(timeout 60 "$OCI" --root "$OCI_ROOT" run --bundle "$b2" pids-neighbour 2>&1)
rc=$?
cleanup_container pids-neighbour
echo "$out"
expect_eq 0 "$rc" "exit status of the neighbour container"
expect_eq neighbour-alive "$out" "neighbour output"
status_is pids-bomb running || fail "pids-bomb is $(oci_status pids-bomb), want running"

step "force delete the bomb"
oci delete --force pids-bomb
cgroup_gone() { ! [ -d "$cg" ]; }
wait_until 10 "cgroup $cg to disappear" cgroup_gone
pass "fork bomb held at pids.max=$max (peak $peak), neighbour ran, delete --force cleaned up"
