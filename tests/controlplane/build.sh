#!/usr/bin/env bash
# Builds (or finds in the cache) the control plane the tests run: etcd, kube-apiserver,
# kube-controller-manager and kubectl of one Kubernetes release, from the Go module proxy.
#   bash tests/controlplane/build.sh            # the default release (go.mod)
#   TANDEM_KUBE_VERSION=v1.34.4 bash tests/controlplane/build.sh   # k8s-v1.34.4.mod
# Prints the directory holding the four binaries. The cache lives outside the clone
# ($TANDEM_CACHE, default ~/.cache/tandem), keyed by release and by a hash of the module
# files, so a fresh clone reuses it: about 8 minutes cold on 2 cores, instant when warm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
default=$(awk '$1 == "k8s.io/kubernetes" {print $2}' go.mod)
version=${TANDEM_KUBE_VERSION:-$default}
if [ "$version" = "$default" ]; then modfile=go.mod; else modfile=k8s-$version.mod; fi
[ -f "$modfile" ] || { echo "no module file for Kubernetes $version: run gomod.sh $version k8s-$version" >&2; exit 2; }
key=$(cat "$modfile" "${modfile%.mod}.sum" cmd/*/main.go build.sh | sha256sum | cut -c1-12)
out=${TANDEM_CACHE:-$HOME/.cache/tandem}/controlplane/$version-$key
bins=(etcd kube-apiserver kube-controller-manager kubectl)
if ! (cd "$out" 2>/dev/null && ls "${bins[@]}" >/dev/null 2>&1); then
  echo "building the control plane $version into $out (about 8 minutes cold)" >&2
  major=${version#v}; major=${major%%.*}
  minor=${version#v*.}; minor=${minor%%.*}
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  # client-go reports its own copy of the version to the server (kubectl version).
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=$major -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  mkdir -p "$out.tmp"
  for bin in "${bins[@]}"; do
    CGO_ENABLED=0 go build -modfile="$modfile" -trimpath -ldflags "$ldflags" -o "$out.tmp/$bin" "./cmd/$bin"
  done
  rm -rf "$out"; mv "$out.tmp" "$out"
fi
echo "$out"
