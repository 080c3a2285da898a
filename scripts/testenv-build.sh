#!/usr/bin/env bash
# Builds the real programs Amber's tests run against, into a cache outside the repository.
#
#   kube-apiserver, kube-controller-manager  (k8s.io/kubernetes through a wrapper module)
#   kwok                                     (sigs.k8s.io/kwok)
#   minio                                    (github.com/minio/minio)
#   helm                                     (helm.sh/helm/v3: renders charts/amber in a test)
#   falcosidekick                            (github.com/falcosecurity/falcosidekick, wrapper module)
#   etcd, runc, busybox-static, attr, gcc    (Debian packages, installed with apt-get when missing)
#
# The real node (test/testenv/node.ts, docs/adr/0012-real-node.md), asked for as `node`:
#   kubelet, kubectl                         (the same wrapper module as kube-apiserver)
#   containerd, containerd-shim-runc-v2, ctr (github.com/containerd/containerd/v2)
#   kube-router                              (github.com/cloudnativelabs/kube-router/v2: NetworkPolicy)
#   containernetworking-plugins, iptables, ipset, conntrack, buildah, debootstrap (Debian packages)
#   criu                                     (Debian sid's package and its libraries, unpacked into
#                                             the cache and run through their own loader: the
#                                             kubelet's checkpoint API, docs/adr/0023-*.md)
#
# Each Go program lands in $AMBER_TESTENV_CACHE/<name>-<version>/ and is reused when present.
# Prints how long each build took. Safe to run again; safe to run by anyone.
set -euo pipefail

CACHE="${AMBER_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/amber-testenv}"
KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
# MinIO tags are RELEASE.<date> and not semver, so the proxy serves it by pseudo-version.
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
FALCOSIDEKICK_VERSION="${FALCOSIDEKICK_VERSION:-2.32.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-v2.1.0}"
# bookworm's CRIU 3.17 fails on these kernels and trixie's 4.1.1 fails on TCP sockets; sid's
# 4.2.1 checkpoints a container that holds a connection (../shared/TESTENV-NOTES.md).
CRIU_VERSION="${CRIU_VERSION:-4.2.1-1}"
CRIU_SUITE="${CRIU_SUITE:-sid}"

export GOFLAGS="-buildvcs=false -trimpath"
export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
mkdir -p "$CACHE"
# One build at a time per cache: a second run waits, then finds the first one's results.
exec 9>"$CACHE/.lock"
flock 9

log() { printf '[testenv-build] %s\n' "$*" >&2; }

timed() { # timed NAME DIR COMMAND... ; skips when DIR/.done exists
  local name=$1 dir=$2; shift 2
  if [[ -f "$dir/.done" ]]; then
    log "$name: cached in $dir (0s)"
    return 0
  fi
  local start=$SECONDS
  log "$name: building into $dir ..."
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  if "$@" "$dir.tmp"; then
    rm -rf "$dir" && mv "$dir.tmp" "$dir" && touch "$dir/.done"
    log "$name: built in $((SECONDS - start))s"
  else
    log "$name: FAILED after $((SECONDS - start))s"
    return 1
  fi
}

apt_packages() {
  local missing=()
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /bin/busybox || -x /usr/bin/busybox ]] && busybox --help 2>&1 | grep -q static || true
  dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v getfattr >/dev/null || missing+=(attr) # the collector reads overlay opaque-dir xattrs
  command -v gcc >/dev/null || missing+=(gcc libc6-dev) # a static memfd-holding test program
  command -v chromium >/dev/null || missing+=(chromium) # renders `amber report`'s HTML in its test
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    local start=$SECONDS
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts an etcd service on install; the tests run their own.
    (systemctl disable --now etcd >/dev/null 2>&1 || service etcd stop >/dev/null 2>&1 || pkill -x etcd || true)
    log "apt packages installed in $((SECONDS - start))s"
  fi
}

node_apt_packages() { # the real node's host programs, and buildah/debootstrap for its images
  local missing=()
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v ipset >/dev/null || missing+=(ipset)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    local start=$SECONDS
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    log "node apt packages installed in $((SECONDS - start))s"
  fi
}

build_kube() { # staging modules are replaced by their published v0.Y.Z twins (kubernetes#79384)
  local out=$1 work gomod staging
  work=$(mktemp -d)
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging="v0.${KUBE_VERSION#v1.}"
  {
    echo "module amber.local/kubewrapper"
    echo "go 1.24.0"
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 '"$staging"'#p' "$gomod"
  } >"$work/go.mod"
  (cd "$work" &&
    go mod download k8s.io/kubernetes &&
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION" >/dev/null &&
    for cmd in kube-apiserver kube-controller-manager; do
      go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)" \
        -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd" || exit 1
    done)
  rm -rf "$work"
}

build_install() { # build_install MODULE@VERSION OUT
  GOBIN="$2" go install -ldflags "-s -w" "$1"
}

build_kwok() { build_install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "$1"; }

# kwok moves nothing without Stage configs. Its module ships the standard "fast" stages
# (nodes Ready, pods Running, Job pods Succeeded, deletion): take them from the module cache.
kwok_stages() {
  local out="$CACHE/kwok-$KWOK_VERSION/stages" dir
  [[ -d "$out" ]] && return 0
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  mkdir -p "$out.tmp"
  cp "$dir"/kustomize/stage/node/fast/node-initialize.yaml "$dir"/kustomize/stage/node/heartbeat/node-heartbeat.yaml \
    "$dir"/kustomize/stage/pod/fast/pod-*.yaml "$out.tmp/"
  chmod 644 "$out.tmp"/*.yaml
  mv "$out.tmp" "$out"
}
build_minio() { build_install "github.com/minio/minio@$MINIO_VERSION" "$1"; }
build_helm() { build_install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$1"; }

build_falcosidekick() { # its go.mod replaces imdario/mergo, so go install refuses it
  local out=$1 work
  work=$(mktemp -d)
  cat >"$work/go.mod" <<MOD
module amber.local/sidekickwrapper
go 1.24.0
replace github.com/imdario/mergo => dario.cat/mergo v0.3.16
MOD
  (cd "$work" &&
    go get "github.com/falcosecurity/falcosidekick@$FALCOSIDEKICK_VERSION" &&
    go build -ldflags "-s -w" -o "$out/falcosidekick" github.com/falcosecurity/falcosidekick)
  local rc=$?
  rm -rf "$work"
  return $rc
}

# ---- the real node (docs/adr/0012-real-node.md) ----------------------------------------------
build_kubelet() { # kubelet and kubectl from the same wrapper module as build_kube (its caches are warm)
  local out=$1 work gomod staging
  work=$(mktemp -d)
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging="v0.${KUBE_VERSION#v1.}"
  {
    echo "module amber.local/kubewrapper"
    echo "go 1.24.0"
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 '"$staging"'#p' "$gomod"
  } >"$work/go.mod"
  (cd "$work" &&
    go mod download k8s.io/kubernetes &&
    go get "k8s.io/kubernetes/cmd/kubelet@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kubectl@$KUBE_VERSION" >/dev/null &&
    for cmd in kubelet kubectl; do
      local start=$SECONDS
      nice -n 19 go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)" \
        -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd" || exit 1
      log "  $cmd: $((SECONDS - start))s"
    done)
  local rc=$?
  rm -rf "$work"
  return $rc
}

build_containerd() { # the CRI checkpoint call needs 2.x; graph drivers the node never uses are left out
  local m=github.com/containerd/containerd/v2
  GOBIN="$1" nice -n 19 go install -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $m/version.Version=$CONTAINERD_VERSION" \
    "$m/cmd/containerd@$CONTAINERD_VERSION" "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" "$m/cmd/ctr@$CONTAINERD_VERSION"
}

build_kube_router() { # only its NetworkPolicy firewall runs (no BGP routing, no service proxy)
  GOBIN="$1" nice -n 19 go install -ldflags "-s -w" "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION"
}

# CRIU from Debian packages without touching the machine's apt sources or installed packages:
# a private apt configuration (its own sources list naming $CRIU_SUITE, state and cache dirs)
# downloads criu and the libraries it links, `dpkg-deb -x` unpacks them into the cache, and a
# wrapper runs criu through the unpacked tree's own dynamic loader with --library-path. Fails
# unless the loader resolves every library and `criu check` passes on this kernel.
build_criu() {
  local out=$1 apt pkgs mirror
  apt=$(mktemp -d)
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/\?$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  mirror=${mirror:-$(sed -n 's/^deb \(http[^ ]*debian\)\/\? .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)}
  [[ -n "$mirror" ]] || { log "criu: no Debian mirror found in this machine's apt sources"; return 1; }
  mkdir -p "$apt"/{sources.list.d,preferences.d,state/lists/partial,cache/archives/partial,debs}
  touch "$apt/state/status"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $CRIU_SUITE main" >"$apt/sources.list"
  cat >"$apt/apt.conf" <<CONF
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/sources.list.d";
Dir::Etc::Preferences "$apt/preferences";
Dir::Etc::PreferencesParts "$apt/preferences.d";
Dir::State "$apt/state";
Dir::State::status "$apt/state/status";
Dir::Cache "$apt/cache";
APT::Sandbox::User "root";
CONF
  (
    set -e
    export APT_CONFIG="$apt/apt.conf"
    apt-get update -qq >/dev/null
    pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "criu=$CRIU_VERSION" | grep -v '^[ <]' | sort -u)
    cd "$apt/debs" && apt-get download -qq "criu=$CRIU_VERSION" $(grep -vx criu <<<"$pkgs") >/dev/null
    for d in "$apt"/debs/*.deb; do dpkg-deb -x "$d" "$out/root"; done
  ) || { rm -rf "$apt"; return 1; }
  rm -rf "$apt"
  local lib="$out/root/usr/lib/x86_64-linux-gnu"
  cat >"$out/criu" <<WRAP
#!/bin/sh
# CRIU $CRIU_VERSION from Debian $CRIU_SUITE, run with its own loader and libraries.
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$out/root/usr/sbin/criu" "\$@"
WRAP
  chmod 755 "$out/criu"
  # The paths in the wrapper are the final ones: the directory is renamed from .tmp when done.
  sed -i "s#$out#${out%.tmp}#g" "$out/criu"
  if "$lib/ld-linux-x86-64.so.2" --library-path "$lib" --list "$out/root/usr/sbin/criu" | grep -q 'not found'; then
    log "criu: libraries missing"; return 1
  fi
  "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$out/root/usr/sbin/criu" check >/dev/null 2>&1 || {
    log "criu: 'criu check' fails on this kernel"; return 1; }
}

node_images() { # the node's base, pause and suspect images (the amber image is built by its test)
  local start=$SECONDS
  bash "$(dirname "$0")/build-images.sh" base busybox pause >/dev/null
  log "node images: ready in $((SECONDS - start))s"
}

want=("${@:-all}")
has() { [[ " ${want[*]} " == *" all "* || " ${want[*]} " == *" $1 "* ]]; }

status=0
has apt && apt_packages
has kube && { timed kube "$CACHE/kube-$KUBE_VERSION" build_kube || status=1; }
has kwok && { timed kwok "$CACHE/kwok-$KWOK_VERSION" build_kwok && kwok_stages || status=1; }
has minio && { timed minio "$CACHE/minio-$MINIO_VERSION" build_minio || status=1; }
has helm && { timed helm "$CACHE/helm-$HELM_VERSION" build_helm || status=1; }
if has node; then
  node_apt_packages
  timed kubelet "$CACHE/kubelet-$KUBE_VERSION" build_kubelet || status=1
  timed containerd "$CACHE/containerd-$CONTAINERD_VERSION" build_containerd || status=1
  timed kube-router "$CACHE/kube-router-$KUBE_ROUTER_VERSION" build_kube_router || status=1
  timed criu "$CACHE/criu-$CRIU_VERSION" build_criu || status=1
  node_images || status=1
fi
# The Go module proxy refuses github.com/falcosecurity/falcosidekick (403 "This module version
# is not available", every version): the intake's end-to-end tests post Falcosidekick's exact
# request shape over real HTTP instead (docs/falcosidekick.md). Try it only when asked by name.
if [[ " ${want[*]} " == *" falcosidekick "* ]]; then
  timed falcosidekick "$CACHE/falcosidekick-$FALCOSIDEKICK_VERSION" build_falcosidekick || status=1
fi
exit $status
