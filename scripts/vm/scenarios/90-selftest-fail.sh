# Scenario: a deliberately broken assertion, to prove the harness reports a failing scenario
# by name and exits non-zero. Only included when VMTEST_SELFTEST_FAIL=1.
# budget: 20
# boot: runner
# when: VMTEST_SELFTEST_FAIL

expect_eq 1 2 "deliberately broken assertion"
pass "unreachable: a broken assertion passed"
