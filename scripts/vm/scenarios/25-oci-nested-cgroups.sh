# Scenario: containers in a nested cgroupsPath whose parents do not exist yet, the shape of
# podvisor's pod tree (pods/<qos>/pod<uid>/<container>): the runtime creates the missing
# levels with the controllers enabled on the way down, so the leaf limits apply; two
# containers of one pod share the pod level; delete removes each container's leaf.
# budget: 60
# boot: runner

need_oci
pod=/vmtest/$VMTEST_NAME/pods/burstable/pod0a1b
res='{"memory": {"limit": 67108864}, "pids": {"limit": 100}, "cpu": {"quota": 50000, "period": 100000}}'

step "two containers of one pod under $pod"
for c in c1 c2; do
	b=$(BUNDLE_CGROUP=$pod/$c make_bundle "nested-$c" '["sleep", "1000"]' "$res")
	oci create --bundle "$b" "nested-$c"
	oci start "nested-$c"
done
for c in c1 c2; do
	leaf=$CG$pod/$c
	expect_eq 67108864 "$(read_file "$leaf/memory.max")" "memory.max of $c"
	expect_eq 100 "$(read_file "$leaf/pids.max")" "pids.max of $c"
	expect_eq "50000 100000" "$(read_file "$leaf/cpu.max")" "cpu.max of $c"
	expect_eq 1 "$(wc -l <"$leaf/cgroup.procs" | tr -d ' ')" "processes in $c"
done
for lvl in "/vmtest/$VMTEST_NAME/pods" "/vmtest/$VMTEST_NAME/pods/burstable" "$pod"; do
	for ctl in memory pids cpu; do
		grep -qw "$ctl" "$CG$lvl/cgroup.subtree_control" ||
			fail "$ctl not enabled in $lvl/cgroup.subtree_control ($(cat "$CG$lvl/cgroup.subtree_control"))"
	done
done
expect_eq 2 "$(cat "$CG$pod"/c*/cgroup.procs | wc -l | tr -d ' ')" "processes in the pod level's leaves"

step "delete both"
oci delete --force nested-c1
oci delete --force nested-c2
[ -d "$CG$pod/c1" ] && fail "leaf $pod/c1 still exists after delete"
[ -d "$CG$pod/c2" ] && fail "leaf $pod/c2 still exists after delete"
pass "nested cgroupsPath: levels created with controllers enabled, leaf limits applied, leaves removed"
