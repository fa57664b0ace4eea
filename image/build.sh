#!/usr/bin/env bash
# image/build.sh — builds the image the chart deploys and packages the chart, without a
# container engine daemon (Debian's buildah):
#
#   bash image/build.sh [--profile release|pgo|debug] [--out DIR]
#
# 1. the binary: `cargo build --release` (fat LTO: minutes the first time, a no-op when
#    nothing changed); `--profile pgo` runs benches/pgo instead (the profile-guided build
#    the README's performance figures are for: about 20 minutes), `--profile debug` takes
#    the debug build, for trying this script quickly (not for users);
# 2. a root filesystem of that binary (stripped) and the shared libraries `ldd` says it
#    loads, copied from this machine under the paths ldd prints;
# 3. `buildah build` of image/Containerfile (FROM scratch, user 65532, the OCI labels
#    source, version, revision, created and licenses) in a throw-away storage, written as
#    an OCI archive: DIR/tandem-VERSION.oci.tar, tagged ghcr.io/tandem-dev/tandem:VERSION;
# 4. the chart packaged as `helm package` makes it: DIR/tandem-VERSION.tgz.
#
# The version is Cargo.toml's; the chart's appVersion (the image tag it deploys by
# default) must be the same, or nothing is built. DIR defaults to target/image. The image's
# `created` time and its files' times are the commit's, so the same commit gives the same
# image. Needs buildah (apt-get install buildah), binutils' strip, python3 with the
# helm-python-sdk of tests/requirements.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

profile=release out=$root/target/image
while (($#)); do
  case $1 in
    --profile) profile=${2:?--profile needs release, pgo or debug}; shift 2 ;;
    --out) out=$(realpath -m "${2:?--out needs a directory}"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "image/build.sh: unknown argument $1; accepted: --profile release|pgo|debug, --out DIR" >&2; exit 2 ;;
  esac
done

repository=ghcr.io/tandem-dev/tandem
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
licenses=$(sed -n 's/^license = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
app_version=$(sed -n 's/^appVersion: "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/tandem/Chart.yaml)
if [[ $app_version != "$version" ]]; then
  echo "image/build.sh: charts/tandem/Chart.yaml has appVersion \"$app_version\" but Cargo.toml has version \"$version\";" \
    "the chart deploys the image tagged with its appVersion: make them the same" >&2
  exit 1
fi
revision=$(git rev-parse HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
  revision=$revision-dirty
  echo "image/build.sh: the working tree has uncommitted changes; labelling the revision $revision" >&2
fi
created=$(git log -1 --format=%cI)
epoch=$(git log -1 --format=%ct)

step() { printf '==> image: %s\n' "$*" >&2; }

step "1/4 the binary ($profile)"
case $profile in
  release) cargo build --release --locked --bin tandem; binary=target/release/tandem ;;
  pgo) bash benches/pgo; binary=target/release/tandem ;;
  debug) cargo build --locked --bin tandem; binary=target/debug/tandem ;;
  *) echo "image/build.sh: unknown profile $profile; accepted: release, pgo, debug" >&2; exit 2 ;;
esac
binary=${CARGO_TARGET_DIR:-$root/target}/${binary#target/}

step "2/4 the root filesystem: the binary and the libraries ldd lists"
mkdir -p "$out"
work=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/context/rootfs
install -d "$rootfs/usr/local/bin"
strip --strip-all -o "$rootfs/usr/local/bin/tandem" "$binary"
# `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and `/lib64/ld-linux-x86-64.so.2 (0x…)`;
# the vDSO has no file. Each is copied as a file (symlinks followed) at the path the loader
# looks for.
libraries=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
if [[ -z $libraries ]] || ldd "$binary" | grep -q 'not found'; then
  echo "image/build.sh: ldd $binary did not list its libraries:" >&2
  ldd "$binary" >&2 || true
  exit 1
fi
for library in $libraries; do
  install -D -m 0755 "$(realpath "$library")" "$rootfs$library"
done
# Reproducible layers: every file gets the commit's time.
find "$work/context" -exec touch -h -d "@$epoch" {} +
cp image/Containerfile "$work/context/Containerfile"
printf '%s\n' "$libraries" | sed 's/^/    /' >&2

step "3/4 buildah build → $out/tandem-$version.oci.tar"
archive=$out/tandem-$version.oci.tar
image=$repository:$version
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
buildah "${storage[@]}" build --quiet --timestamp "$epoch" --omit-history --identity-label=false \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg CREATED="$created" --build-arg LICENSES="$licenses" \
  --tag "$image" --file "$work/context/Containerfile" "$work/context" >/dev/null
rm -f "$archive"
buildah "${storage[@]}" push --quiet "$image" "oci-archive:$archive:$image"
# The storage holds root-owned copies of the layers; the trap removes it with the rest.
buildah "${storage[@]}" rmi --all >/dev/null

step "4/4 helm package charts/tandem → $out/tandem-$version.tgz"
# Helm's own `package` action (the helm-python-sdk links Helm's Go library), then the
# archive loaded back as `helm install` would load it.
python3 - "$out" "$version" <<'PY'
import sys
from pathlib import Path
from helm_python.chart import Chart, package
out, version = Path(sys.argv[1]), sys.argv[2]
archive = Path(package("charts/tandem", destination=out))
with Chart.load(archive) as chart:
    meta = chart.metadata
assert archive.name == f"tandem-{version}.tgz", archive
assert meta["appVersion"] == version, meta
PY

printf '%s\n' "$archive" "$out/tandem-$version.tgz"
