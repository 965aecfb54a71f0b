# Scenario: crashes the kernel on purpose (sysrq 'c'), to prove the harness reports a kernel
# panic and the missing result instead of waiting or passing. Only included when
# VMTEST_SELFTEST_PANIC=1; it must be the last scenario of its boot.
# budget: 20
# boot: runner
# when: VMTEST_SELFTEST_PANIC

echo 1 >/proc/sys/kernel/sysrq
echo c >/proc/sysrq-trigger
sleep 10
pass "unreachable: the kernel survived sysrq-c"
