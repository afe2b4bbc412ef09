#!/usr/bin/env bash
# Builds real Kubernetes binaries (v1.20.2) from Debian's `kubernetes` source package: the
# control plane and kubectl for the k8s test harness, and with --node also what a node runs
# (kubelet, kube-scheduler, kube-proxy) for the single-node cluster (make test-cluster). No
# registry but Debian's is needed. The binaries are cached outside the repository; only the
# missing ones are built, so a second run returns at once.
# Usage: scripts/build_kube.sh [--node] [DEST]   (default $HYPER_KUBE_BIN or ~/.cache/hyper/kube-v1.20.2)
set -euo pipefail

BINARIES=(kube-apiserver kube-controller-manager kubectl)
if [ "${1:-}" = "--node" ]; then BINARIES+=(kubelet kube-scheduler kube-proxy); shift; fi
DEST=${1:-${HYPER_KUBE_BIN:-$HOME/.cache/hyper/kube-v1.20.2}}
SOURCE_VERSION=1.20.5+really1.20.2-1.1+deb12u1
SRC_LIST=/etc/apt/sources.list.d/hyper-kubernetes-src.sources

MISSING=()
for b in "${BINARIES[@]}"; do [ -x "$DEST/$b" ] || MISSING+=("$b"); done
[ ${#MISSING[@]} -eq 0 ] && { echo "kube binaries cached in $DEST"; exit 0; }

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends golang-go rsync etcd-server dpkg-dev make >/dev/null

WORK=$(mktemp -d)
cleanup() { rm -rf "$WORK" "$SRC_LIST"; }
trap cleanup EXIT

# deb-src only for this download, in a file of our own so the system's sources stay untouched.
cat >"$SRC_LIST" <<SOURCES
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
cd "$WORK"
apt-get update -qq
apt-get source -qq "kubernetes=$SOURCE_VERSION" >/dev/null
apt-get download -qq golang-github-modern-go-reflect2-dev
rm -f "$SRC_LIST" && apt-get update -qq

# The vendored reflect2 1.0.1 crashes on Go >= 1.18; Debian's 1.0.2 does not.
dpkg-deb -x golang-github-modern-go-reflect2-dev_*.deb reflect2
TREE=$(find "$WORK" -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
VENDORED="$TREE/vendor/github.com/modern-go/reflect2"
rm -f "$VENDORED"/*.go "$VENDORED"/*.s
cp reflect2/usr/share/gocode/src/github.com/modern-go/reflect2/*.{go,s} "$VENDORED"/
rm -f "$VENDORED"/*_test.go

echo "building ${MISSING[*]} (the control plane and kubectl: about 13 min on 2 cores)"
(cd "$TREE" && CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor HOME="$WORK" \
  make WHAT="${MISSING[*]/#/cmd/}" >"$WORK/build.log" 2>&1) \
  || { tail -40 "$WORK/build.log"; exit 1; }

# Into place one by one, each whole (a copy, then a rename): an interrupted run builds the rest.
mkdir -p "$DEST"
for b in "${MISSING[@]}"; do cp "$TREE/_output/bin/$b" "$DEST/.$b.partial" && mv "$DEST/.$b.partial" "$DEST/$b"; done
echo "kube binaries built into $DEST"
