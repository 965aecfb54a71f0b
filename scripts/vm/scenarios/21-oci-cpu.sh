# Scenario: linux.resources.cpu through the runtime CLI. quota 20000 / period 100000 gives
# cpu.max "20000 100000" and a busy loop is throttled (cpu.stat nr_throttled grows, usage
# stays near 20% of one CPU); shares become cpu.weight by the shares-to-weight conversion.
# budget: 90
# boot: runner

need_oci
# shares -> cpu.weight, computed on the host with the formulas (see VMTEST_CPU_WEIGHT):
#   linear (the kubelet's getCPUWeight for pod and QoS cgroups, runc < 1.3.2, crun < 1.23,
#     Debian's crun; podvisor's choice): weight = 1 + ((shares - 2) * 9999) / 262142
#   quadratic (runc >= 1.3.2, crun >= 1.23, mapping 1024 to 100 like systemd):
#     l = log2(shares); weight = ceil(10^((l^2 + 125 l) / 612 - 7/34))
case "${VMTEST_CPU_WEIGHT:-linear}" in
quadratic) w1024=100 w512=59 ;;
*) w1024=39 w512=20 ;;
esac

step "busy loop with quota 20000 period 100000 shares 1024"
b=$(make_bundle cpu-busy '["sh", "-c", "while :; do :; done"]' \
	'{"cpu": {"shares": 1024, "quota": 20000, "period": 100000}}')
cg=$(cgroup_of cpu-busy)
oci create --bundle "$b" cpu-busy
oci start cpu-busy
wait_until 20 "cpu-busy to run" status_is cpu-busy running
expect_eq "20000 100000" "$(read_file "$cg/cpu.max")" "cpu.max"
expect_eq "$w1024" "$(read_file "$cg/cpu.weight")" "cpu.weight for shares 1024 (${VMTEST_CPU_WEIGHT:-linear})"

thr0=$(keyed_value "$cg/cpu.stat" nr_throttled)
use0=$(keyed_value "$cg/cpu.stat" usage_usec)
t0=$(awk '{ printf "%d", $1 * 1000000 }' /proc/uptime)
sleep 3
thr1=$(keyed_value "$cg/cpu.stat" nr_throttled)
use1=$(keyed_value "$cg/cpu.stat" usage_usec)
t1=$(awk '{ printf "%d", $1 * 1000000 }' /proc/uptime)
cat "$cg/cpu.stat"
expect_ge $((thr0 + 5)) "$thr1" "nr_throttled 3 s later (was $thr0)"
# A quota of 20% of one CPU: usage over the window stays well under half of it.
pct=$(((use1 - use0) * 100 / (t1 - t0)))
expect_le 35 "$pct" "cpu usage in % of one CPU over $(((t1 - t0) / 1000)) ms"
oci kill cpu-busy KILL
wait_until 20 "cpu-busy to stop" status_is cpu-busy stopped
oci delete cpu-busy
[ -d "$cg" ] && fail "cgroup $cg still exists after delete"

step "shares 512 without quota"
b=$(make_bundle cpu-idle '["sleep", "1000"]' '{"cpu": {"shares": 512}}')
cg=$(cgroup_of cpu-idle)
oci create --bundle "$b" cpu-idle
expect_eq "max 100000" "$(read_file "$cg/cpu.max")" "cpu.max without quota"
expect_eq "$w512" "$(read_file "$cg/cpu.weight")" "cpu.weight for shares 512"
oci delete --force cpu-idle
pass "cpu.max 20000 100000 throttles a busy loop to ${pct}% (nr_throttled $thr0 -> $thr1); weights $w1024/$w512"
