# Scenario: an overlay mount works in the VM (the shape of a container root filesystem:
# read-only lower layers, one upper), with copy-up and whiteouts.
# budget: 30
# boot: runner

d=$VMTEST_WORK/ovl
mkdir -p "$d/l1" "$d/l2" "$d/upper" "$d/work" "$d/merged"
echo lower1 >"$d/l1/a"
echo lower1 >"$d/l1/b"
echo lower2 >"$d/l2/b"

step "mount overlay with two lower layers"
mount -t overlay overlay -o "lowerdir=$d/l2:$d/l1,upperdir=$d/upper,workdir=$d/work" "$d/merged" ||
	fail "mount -t overlay failed: $(dmesg | grep -i overlay | tail -n 1)"
expect_eq lower1 "$(cat "$d/merged/a")" "merged/a from the bottom layer"
expect_eq lower2 "$(cat "$d/merged/b")" "merged/b from the top layer"

step "write, copy-up and delete through the overlay"
echo new >"$d/merged/c" || fail "write to merged failed"
echo changed >"$d/merged/b" || fail "copy-up of b failed"
rm "$d/merged/a" || fail "delete of a failed"
expect_eq new "$(cat "$d/upper/c")" "new file lands in upper"
expect_eq changed "$(cat "$d/upper/b")" "copied-up file in upper"
expect_eq lower2 "$(cat "$d/l2/b")" "lower layer unchanged after copy-up"
[ -e "$d/merged/a" ] && fail "deleted file still visible in merged"
# A whiteout is a 0/0 character device in the upper directory.
expect_eq "c 0:0" "$(stat -c '%F' "$d/upper/a" | sed 's/character special file/c/') $(stat -c '%t:%T' "$d/upper/a")" "whiteout for a"
umount "$d/merged" || fail "umount overlay failed"
pass "overlay mount with copy-up and whiteouts"
