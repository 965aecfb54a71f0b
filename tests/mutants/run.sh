#!/usr/bin/env bash
# Tests the privileged suite itself: runs selected cases against runc with config.json
# mutated (one jq filter per line of the table), each mutation removing exactly what the case
# checks. A mutant must make its case fail; one that passes means a check that cannot fail.
# Prints one line per mutant and a closing "N passed, N failed" (passed = mutant caught).
# Needs root, runc and jq; run after `cargo test -p podvisor-tests --no-run`. (No hostname row:
# runc 1.1.5 ignores domainname, so that case fails on runc whatever the mutant.)
#
# usage: tests/mutants/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=$(ls -t target/debug/deps/privileged-* | grep -E '/privileged-[0-9a-f]+$' | head -1)
wrapper=$PWD/tests/mutants/runc-mutant
mutants=(
  'del(.linux.seccomp)|seccomp_blocked'
  'del(.linux.maskedPaths)|masked'
  'del(.linux.readonlyPaths)|readonly_paths'
  '.process.noNewPrivileges=false|no_new_privs_set'
  '.process.noNewPrivileges=true|no_new_privs_clear'
  '.linux.namespaces |= map(select(.type!="network"))|namespaces_are_new'
  '.linux.namespaces |= map(if .type=="network" then del(.path) else . end)|joined_by_path'
  'del(.linux.uidMappings)|del(.linux.gidMappings)|.linux.namespaces |= map(select(.type!="user"))|user_namespace'
  '.process.capabilities.bounding += ["CAP_SYS_ADMIN"]|capabilities_of_root'
  '.process.capabilities.ambient=[]|capabilities_of_non_root'
  '.process.rlimits=[]|rlimits'
  '.process.user.additionalGids=[]|user_groups'
  '.process.user.umask=18|user_groups'
  'del(.linux.cgroupsPath)|cgroup_placement'
  '.linux.namespaces |= map(select(.type!="cgroup"))|cgroup_namespace'
  '.root.readonly=false|root_readonly'
  'del(.linux.devices)|default_and_spec'
  '.mounts |= map(if .destination=="/data" then .options=["rbind"] else . end)|spec_mounts'
  'del(.process.oomScoreAdj)|oom'
  'del(.linux.sysctl)|sysctl'
  '.process.args=["/bin/true"]|run_returns'
  'del(.hooks.poststart)|hooks_run'
  '.linux.namespaces |= map(select(.type!="cgroup"))|cgroup2_mount'
  '.linux.resources.devices=[{"allow": true, "access": "rwm"}]|device_cgroup'
  '.mounts |= map(if .destination=="/out" then .options=["rbind"] else . end)|bind_mount_propagation'
)
caught=0 survived=0
for m in "${mutants[@]}"; do
  filter=${m%|*} case=${m##*|}
  if out=$(MUTATE="$filter" PODVISOR_OCI=$wrapper "$suite" "$case" 2>&1) ||
     ! grep -q '^0 passed' <<<"$(tail -1 <<<"$out")"; then
    survived=$((survived + 1)); echo "SURVIVED  $case  <- $filter"
  else
    caught=$((caught + 1)); echo "caught    $case  <- $filter"
  fi
done
echo "$caught passed, $survived failed"
[ "$survived" -eq 0 ]
