# Scenario: runs after selftest-hang and must pass, proving that a scenario killed at its
# budget is cleaned up and the runner carries on. Only included when VMTEST_SELFTEST_HANG=1.
# budget: 20
# boot: runner
# when: VMTEST_SELFTEST_HANG

[ -d /sys/fs/cgroup/vmtest-run/selftest-hang ] && fail "selftest-hang's cgroup survived its kill"
pids_matching '^sleep 100000 ' | grep -q . && fail "selftest-hang's sleep survived its kill"
pass "the runner carried on after a hung scenario, which left nothing behind"
