# Scenario: hangs on purpose, to prove a scenario's budget is enforced inside the VM (the
# harness must report it as timed out and carry on). Only included when VMTEST_SELFTEST_HANG=1.
# budget: 5
# boot: runner
# when: VMTEST_SELFTEST_HANG

sleep 100000
pass "unreachable: the hang ended by itself"
