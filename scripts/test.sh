#!/usr/bin/env bash
# Runs every test: installs the pinned Node (scripts/node-toolchain.sh) and the npm
# dependencies, builds (or reuses) the real test environment, checks types and lint, then runs
# the unit and integration tests, all with that Node. The npm install and the type and lint
# checks run while the test environment builds.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-toolchain.sh
start=$SECONDS
bash scripts/testenv-build.sh &
build=$!
checks=0
{ amber_npm_ci && npx tsc --noEmit -p tsconfig.json && npm run lint --silent; } ||
  { checks=1 && echo "test.sh: install, type check or lint failed; the build goes on, then this run stops" >&2; }
wait $build || { echo "test.sh: the test environment did not build (above)" >&2; exit 1; }
((checks == 0)) || { echo "test.sh: install, type check or lint failed (above)" >&2; exit 1; }
echo "test.sh: ready to test after $((SECONDS - start))s" >&2
AMBER_SKIP_TESTENV_BUILD=1 npx vitest run "$@"
