#!/usr/bin/env bash
# Runs Amber's main job on a local default setup: a real control plane, MinIO with Object Lock,
# a real node (containerd, kubelet, CNI, kube-router) running the amber image built from the
# Dockerfile, a suspect pod, the operator, and a Falco alert through the webhook; ends with the
# sealed evidence verified. `--keep` leaves everything running until Ctrl-C; `--inline` runs
# without a node (taken by itself, saying why, when a real node cannot run here).
# Uses the pinned Node (scripts/node-toolchain.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-toolchain.sh
amber_npm_ci
# One call for everything, so that the builds share a go build and run side by side
# (docs/adr/0030-fresh-machine-build.md); the control plane's part must build, the node's may not.
if [[ " $* " == *" --inline "* ]]; then
  bash scripts/testenv-build.sh apt kube kwok minio
elif ! bash scripts/testenv-build.sh apt kube kwok minio node; then
  bash scripts/testenv-build.sh apt kube kwok minio
  echo "local.sh: the real node's components did not build (above); scripts/local.ts will fall back to --inline" >&2
fi
exec npx tsx scripts/local.ts "$@"
