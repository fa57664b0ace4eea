#!/usr/bin/env bash
# Builds (or finds in the cache) the Prometheus the tests run: the server and promtool of
# the release go.mod names, from the Go module proxy. Only static targets are scraped, so
# the service-discovery plugins are left out (the `remove_all_sd` build tag upstream's own
# builds honour); the web UI is not embedded (the HTTP API is all the tests use).
#   bash tests/prometheus/build.sh      # prints the directory holding prometheus and promtool
# The cache lives outside the clone ($TANDEM_CACHE, default ~/.cache/tandem), keyed by the
# release and a hash of the module files and this script, so a fresh clone reuses it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
version=$(awk '$1 == "github.com/prometheus/prometheus" {print $2; exit}' go.mod)
key=$(cat go.mod go.sum build.sh | sha256sum | cut -c1-12)
out=${TANDEM_CACHE:-$HOME/.cache/tandem}/prometheus/$version-$key
bins=(prometheus promtool)
if ! (cd "$out" 2>/dev/null && ls "${bins[@]}" >/dev/null 2>&1); then
  echo "building Prometheus $version into $out (several minutes cold)" >&2
  # v0.3XX.Y of the Go module is Prometheus 3.XX.Y.
  release=${version#v0.}; release="3.$((10#${release%%.*} - 300)).${release#*.}"
  pkg=github.com/prometheus/common/version
  ldflags="-s -w -X $pkg.Version=$release -X $pkg.Branch=HEAD -X $pkg.BuildUser=tandem-tests"
  ldflags+=" -X $pkg.BuildDate=19700101-00:00:00"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  for bin in "${bins[@]}"; do
    CGO_ENABLED=0 go build -trimpath -tags remove_all_sd -ldflags "$ldflags" \
      -o "$out.tmp/$bin" "github.com/prometheus/prometheus/cmd/$bin"
  done
  rm -rf "$out"; mv "$out.tmp" "$out"
fi
echo "$out"
