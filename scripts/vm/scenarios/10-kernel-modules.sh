# Scenario: the kernel modules the node needs (overlay, veth, bridge) are loaded in the VM
# and work: a veth pair is created and enslaved to a bridge.
# budget: 30
# boot: runner

step "modules listed by the kernel"
for m in overlay veth bridge; do
	grep -q "^$m " /proc/modules || fail "module $m not loaded (lsmod: $(cut -d' ' -f1 /proc/modules | tr '\n' ' '))"
	echo "ok: $m loaded"
done
grep -qw overlay /proc/filesystems || fail "overlay missing from /proc/filesystems"

step "veth pair on a bridge"
ip link add vmt-br0 type bridge || fail "ip link add type bridge failed"
ip link add vmt-v0 type veth peer name vmt-v1 || fail "ip link add type veth failed"
# busybox ip ignores the peer's name: find the peer as the kernel names it (vmt-v0@PEER).
peer=$(ip link show vmt-v0 | sed -n 's/^[0-9]*: vmt-v0@\([^:]*\):.*/\1/p')
[ -n "$peer" ] && [ -d "/sys/class/net/$peer" ] || fail "veth peer of vmt-v0 not found ($(ip link show vmt-v0))"
ip link set vmt-v0 master vmt-br0 || fail "enslaving veth to bridge failed"
for l in vmt-br0 vmt-v0 "$peer"; do
	ip link set "$l" up || fail "ip link set $l up failed (links: $(ls /sys/class/net | tr '\n' ' '))"
done
[ "$(cat /sys/class/net/vmt-v0/master/ifindex 2>/dev/null)" = "$(cat /sys/class/net/vmt-br0/ifindex)" ] ||
	fail "vmt-v0 is not a port of vmt-br0"
ip link del vmt-v0
ip link del vmt-br0
pass "overlay, veth and bridge loaded; veth enslaved to a bridge"
