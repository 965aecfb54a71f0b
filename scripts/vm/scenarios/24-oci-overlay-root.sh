# Scenario: a container whose root filesystem is an overlay mount (the busybox rootfs as the
# read-only lower layer, one upper per container), the shape podvisor gives every container.
# The runtime pivots into it; what the container writes lands in the upper directory and the
# lower layer is untouched; a second container on the same lower layer does not see it.
# budget: 60
# boot: runner

need_oci
make_rootfs
ovl() { # ovl NAME: an overlay root over the shared rootfs, printed
	_o=$VMTEST_WORK/$1
	mkdir -p "$_o/upper" "$_o/work" "$_o/merged"
	mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$_o/upper,workdir=$_o/work" "$_o/merged" ||
		fail "mount overlay root for $1 failed"
	echo "$_o"
}
# A writable root: the bundle's root.readonly is false for these two.
rw_bundle() {
	_b=$(make_bundle "$@")
	sed -i 's/"readonly": true/"readonly": false/' "$_b/config.json"
	echo "$_b"
}

step "container 1 writes into its overlay root"
o1=$(ovl ovl-1)
b=$(BUNDLE_ROOTFS=$o1/merged rw_bundle ovl-1 \
	'["sh", "-c", "echo from-container > /written && rm /etc/group && cat /proc/self/mountinfo | head -n 1"]' '{}')
oci run --bundle "$b" ovl-1
cleanup_container ovl-1
expect_eq from-container "$(cat "$o1/upper/written" 2>/dev/null)" "file written in the container, in upper"
[ -e "$ROOTFS/written" ] && fail "the write reached the lower layer"
[ -e "$ROOTFS/etc/group" ] || fail "rm in the container removed the lower layer's /etc/group"
[ -c "$o1/upper/etc/group" ] || fail "no whiteout for /etc/group in upper"

step "container 2 on the same lower layer sees the pristine image"
o2=$(ovl ovl-2)
b=$(BUNDLE_ROOTFS=$o2/merged rw_bundle ovl-2 \
	'["sh", "-c", "test ! -e /written && test -e /etc/group"]' '{}')
oci run --bundle "$b" ovl-2
cleanup_container ovl-2
umount "$o1/merged" || fail "umount overlay root 1 failed (busy after the container ended?)"
umount "$o2/merged" || fail "umount overlay root 2 failed (busy after the container ended?)"
pass "overlay roots: writes and whiteouts in upper, lower untouched, containers isolated"
