#!/usr/bin/env bash
# Runs Amber's main job on a local default setup: a real control plane, MinIO with Object
# Lock, a real (runc) suspect container, the operator, and a Falco alert through the webhook;
# ends with the sealed evidence verified. `--keep` leaves everything running until Ctrl-C.
# Uses the pinned Node (scripts/node-toolchain.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-toolchain.sh
amber_npm_ci
bash scripts/testenv-build.sh
exec npx tsx scripts/local.ts "$@"
