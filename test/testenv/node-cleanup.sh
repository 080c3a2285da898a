#!/usr/bin/env bash
# Removes everything a real test node (test/testenv/node.ts) leaves on this machine, whether it
# stopped cleanly or not: its processes, its containers' processes and cgroups, every mount under
# its directory, the iptables chains and ipsets of the kubelet, CNI and kube-router, the CNI
# bridge, and its files. node.ts runs it before a node starts (a crashed run's leftovers) and
# after it stops. Safe to run by hand after an interrupted test run:
#
#   bash test/testenv/node-cleanup.sh [/tmp/amber-node]
#
# One node per machine (node.ts holds a lock for the node's life), so what is matched here by
# fixed names (KUBE-*/CNI-* chains, cni0, kubepods cgroups) belongs to that node.
set -uo pipefail # no -e: every step is attempted, whatever failed before it

BASE="${1:-/tmp/amber-node}"
CACHE="${AMBER_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/amber-testenv}"
BRIDGE=cni0
CNI_NETWORK=amber-test
[[ "$BASE" == /*/* ]] || {
  echo "node-cleanup: refusing base directory '$BASE'" >&2
  exit 2
}

# Processes started from the node's own binaries (kubelet, containerd and its shims,
# kube-router), matched by their executable in the test cache, never by name.
kill_node_processes() {
  local p exe found=0
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case $exe in
      "$CACHE"/kubelet-*/* | "$CACHE"/containerd-*/* | "$CACHE"/kube-router-*/*)
        kill -9 "${p#/proc/}" 2>/dev/null && found=1
        ;;
    esac
  done
  ((found)) && sleep 0.2
  return 0
}

# The pods' processes (their shims are gone now) and then their cgroups, deepest first.
remove_pod_cgroups() {
  local cg try
  for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d "$cg" ]] || continue
    for try in 1 2 3 4 5 6 7 8 9 10; do
      find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | xargs -r kill -9 2>/dev/null
      find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
      [[ -d "$cg" ]] || break
      sleep 0.2
    done
    [[ -d "$cg" ]] && echo "node-cleanup: $cg is still there" >&2
  done
  return 0
}

# Every mount below BASE (the kubelet bind-mounts its root onto itself; containers' rootfs,
# shm and network namespaces), deepest first.
unmount_all() {
  local try m
  for try in 1 2 3; do
    mapfile -t mounts < <(awk -v b="$BASE" '{ if ($5 == b || index($5, b "/") == 1) print $5 }' /proc/self/mountinfo | sort -ru)
    ((${#mounts[@]})) || return 0
    for m in "${mounts[@]}"; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
  done
  return 0
}

# The kubelet's KUBE-* chains, kube-router's KUBE-ROUTER-*/KUBE-NWPLCY-*/KUBE-POD-FW-* chains and
# CNI's CNI-* chains, with every rule that jumps to them, rewritten in one restore per family.
clean_iptables() {
  local ipt rules
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    rules=$("$ipt-save" 2>/dev/null) || continue
    if grep -qE '^:(KUBE-|CNI-)| -[jg] (KUBE-|CNI-)' <<<"$rules"; then
      awk '!/^:(KUBE-|CNI-)/ && !/^-A (KUBE-|CNI-)/ && !/ -[jg] (KUBE-|CNI-)/' <<<"$rules" | "$ipt-restore" ||
        echo "node-cleanup: $ipt-restore failed" >&2
    fi
  done
  if command -v ipset >/dev/null; then
    ipset list -n 2>/dev/null | grep -E '^(inet6:)?(KUBE-|kube-router|TMP-)' | xargs -r -n1 ipset destroy 2>/dev/null
  fi
  return 0
}

remove_files() {
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
  # The kubelet links container logs from this fixed directory; containerd's CNI library keeps
  # results in its fixed cache directory.
  local f
  for f in /var/log/containers/*.log; do
    [[ -L "$f" && "$(readlink "$f")" == "$BASE"/* ]] && rm -f "$f"
  done
  rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null
  rm -rf /var/lib/cni/networks/"$CNI_NETWORK" 2>/dev/null
  # Directories the kubelet, CNI and the shims make at fixed paths, when nothing else is in them.
  rmdir /var/lib/cni/results /var/lib/cni/networks /var/lib/cni /var/log/containers /run/containerd/s /run/containerd 2>/dev/null
  [[ -d "$BASE" ]] && rm -rf --one-file-system "$BASE"
  [[ -d "$BASE" ]] && echo "node-cleanup: $BASE could not be removed" >&2
  return 0
}

kill_node_processes
remove_pod_cgroups
unmount_all
remove_pod_cgroups
clean_iptables
remove_files
exit 0
