#!/usr/bin/env bash
# Runs every test: installs the npm dependencies, builds (or reuses) the real test
# environment, checks types and lint, then runs the unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d node_modules && node_modules/.package-lock.json -nt package-lock.json ]] || npm ci --no-audit --no-fund
bash scripts/testenv-build.sh
npx tsc --noEmit -p tsconfig.json
npm run lint --silent
AMBER_SKIP_TESTENV_BUILD=1 npx vitest run "$@"
