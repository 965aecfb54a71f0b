# Scenario: the static podvisor binaries (scripts/vm-test refuses dynamic ones) run in the
# minimal VM: `podvisor version` and `podvisor-oci features` succeed.
# budget: 30
# boot: runner

command -v podvisor >/dev/null || fail "podvisor missing from the VM image"
v=$(podvisor version 2>&1) || fail "podvisor version failed: $v"
echo "$v"
case "$v" in "podvisor "*) ;; *) fail "podvisor version printed '$v'" ;; esac
need_oci
f=$("$OCI" features 2>&1) || fail "$OCI features failed: $(echo "$f" | tail -n 2)"
echo "$f" | head -n 5
echo "$f" | grep -q '"ociVersionMin"' || fail "$OCI features: no ociVersionMin in its JSON"
pass "$v; $OCI features answers"
