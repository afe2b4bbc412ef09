#!/usr/bin/env bash
# Builds a real kube-apiserver, kube-controller-manager and kubectl (v1.20.2) from Debian's
# `kubernetes` source package, for the k8s test harness. No registry but Debian's is needed.
# The binaries are cached outside the repository: a second run returns at once.
# Usage: scripts/build_kube.sh [DEST]   (default $HYPER_KUBE_BIN or ~/.cache/hyper/kube-v1.20.2)
set -euo pipefail

DEST=${1:-${HYPER_KUBE_BIN:-$HOME/.cache/hyper/kube-v1.20.2}}
BINARIES=(kube-apiserver kube-controller-manager kubectl)
SOURCE_VERSION=1.20.5+really1.20.2-1.1+deb12u1
SRC_LIST=/etc/apt/sources.list.d/hyper-kubernetes-src.sources

have_all() { for b in "${BINARIES[@]}"; do [ -x "$DEST/$b" ] || return 1; done; }
have_all && { echo "kube binaries cached in $DEST"; exit 0; }

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

echo "building ${BINARIES[*]} (about 13 min on 2 cores)"
(cd "$TREE" && CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor HOME="$WORK" \
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kubectl" >"$WORK/build.log" 2>&1) \
  || { tail -40 "$WORK/build.log"; exit 1; }

mkdir -p "$DEST.partial"
for b in "${BINARIES[@]}"; do cp "$TREE/_output/bin/$b" "$DEST.partial/"; done
rm -rf "$DEST" && mv "$DEST.partial" "$DEST"
echo "kube binaries built into $DEST"
