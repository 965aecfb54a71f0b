# Scenario: a real control-plane workload under the runtime CLI. The etcd image built from
# Debian's etcd-server (scripts/vm/build-etcd-image, unpacked on the host by umoci) runs in a
# container (host network, data directory bind-mounted, a memory limit); etcdctl put/get
# works from the VM (the image's etcdctl); after the container is killed, a new one on the same data directory
# serves the value again. (The agent's etcd static pod scenario adds probes and restarts.)
# budget: 120
# boot: runner
# prepare: scripts/vm/unpack-etcd-image "$OUT"

need_oci
root=/vmtest/data/$VMTEST_NAME/rootfs
data=$VMTEST_WORK/etcd-data
mkdir -p "$data"
[ -x "$root/usr/local/bin/etcd" ] || fail "no etcd in the unpacked image at $root"
echo "image: $(cat "/vmtest/data/$VMTEST_NAME/image-name")"
ep=http://127.0.0.1:2379
etcd_args='["/usr/local/bin/etcd", "--name", "vm", "--data-dir", "/var/lib/etcd",
  "--listen-client-urls", "'$ep'", "--advertise-client-urls", "'$ep'",
  "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
  "--initial-cluster", "vm=http://127.0.0.1:2380"]'
# Host network: the namespaces without "network".
ns='[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"cgroup"}]'
res='{"memory": {"limit": 268435456}, "cpu": {"shares": 102}}'
export BUNDLE_ROOTFS=$root
export BUNDLE_MOUNTS=', {"destination": "/var/lib/etcd", "type": "bind", "source": "'$data'", "options": ["rbind", "rw"]}'
export ETCDCTL_API=3
# The image's etcdctl, with the image's C library: chroot into the unpacked root (host network).
ctl() { chroot "$root" /usr/local/bin/etcdctl --endpoints="$ep" --command-timeout=5s "$@"; }
healthy() { ctl endpoint health; }

step "start etcd"
b=$(make_bundle etcd-1 "$etcd_args" "$res" "$ns")
oci create --bundle "$b" etcd-1
oci start etcd-1
t0=$(awk '{ printf "%d", $1 * 1000 }' /proc/uptime)
wait_until 60 "etcd-1 to be healthy" healthy
t1=$(awk '{ printf "%d", $1 * 1000 }' /proc/uptime)
echo "etcd healthy after $((t1 - t0)) ms"
expect_eq 268435456 "$(read_file "$(cgroup_of etcd-1)/memory.max")" "memory.max of etcd-1"

step "put and get"
ctl put vmtest/key "value-$t0" || fail "etcdctl put failed"
expect_eq "value-$t0" "$(ctl get --print-value-only vmtest/key)" "etcdctl get after put"

step "kill etcd, start a new container on the same data directory"
oci kill etcd-1 KILL
wait_until 20 "etcd-1 to stop" status_is etcd-1 stopped
oci delete etcd-1
b=$(make_bundle etcd-2 "$etcd_args" "$res" "$ns")
oci create --bundle "$b" etcd-2
oci start etcd-2
wait_until 60 "etcd-2 to be healthy" healthy
expect_eq "value-$t0" "$(ctl get --print-value-only vmtest/key)" "etcdctl get after the restart"
oci kill etcd-2 TERM
wait_until 30 "etcd-2 to stop on SIGTERM" status_is etcd-2 stopped
oci delete etcd-2
pass "etcd healthy in $((t1 - t0)) ms, put/get works, data survives a kill and a new container"
