#!/usr/bin/env bash
# Runs Amber's main job on a local default setup: a real control plane, MinIO with Object
# Lock, a real (runc) suspect container, the operator, and a Falco alert through the webhook;
# ends with the sealed evidence verified. `--keep` leaves everything running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d node_modules && node_modules/.package-lock.json -nt package-lock.json ]] || npm ci --no-audit --no-fund
bash scripts/testenv-build.sh
exec npx tsx scripts/local.ts "$@"
