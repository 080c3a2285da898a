#!/usr/bin/env bash
# Runs every test: installs the pinned Node (scripts/node-toolchain.sh) and the npm
# dependencies, builds (or reuses) the real test environment, checks types and lint, then runs
# the unit and integration tests, all with that Node.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-toolchain.sh
amber_npm_ci
bash scripts/testenv-build.sh
npx tsc --noEmit -p tsconfig.json
npm run lint --silent
AMBER_SKIP_TESTENV_BUILD=1 npx vitest run "$@"
