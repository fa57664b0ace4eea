#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (Python packages
# from PyPI, Debian packages if missing), then runs formatting and lint checks, every Rust
# test (unit, integration, property, the benchmark in test mode, the fuzz corpora replayed
# through the oracle), a short run of every fuzz target (nightly; cargo-fuzz is installed if
# missing), every Python test (the oracle's own tests, the Helm chart), each program tandem
# injects run for real in the pod tandem makes (tests/podrunner, tests/ambassador,
# tests/programs), the suite judged by a real Kubernetes control plane, the chart's
# dashboard and alerts judged by a real Prometheus, and the image the chart deploys, built
# (image/build.sh: the release binary, buildah) and run from its exported root filesystem.
# The programs, the control plane and Prometheus are built from sources and cached outside
# the clone (tests/programs/build.sh, tests/controlplane/build.sh, tests/prometheus/build.sh;
# $TANDEM_CACHE, default ~/.cache/tandem). Each step prints the seconds since the start.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

step "Debian packages"
# Tools; the apps the injected programs sit beside (tests/programs); Fluent Bit's build.
# buildah builds the image, podman loads and exports it (tests/image).
packages=(openssl curl iproute2 util-linux git openssh-client openssh-server redis-server nginx postgresql
  mariadb-server cmake make gcc g++ flex bison libyaml-dev libssl-dev libsqlite3-dev buildah podman)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  # The daemons are started by the tests, in pods, not by the package scripts.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

step "Python packages (tests/requirements.txt)"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test"
cargo test --locked --all-targets

step "fuzz: every target for 20 s from the committed corpus (bash fuzz/run.sh --seconds 20)"
bash fuzz/run.sh --seconds 20

# The Go builds (programs, control plane, Prometheus) download modules and compile into
# scratch caches, emptied after each build: their binaries are what is cached, and the
# module and build caches of Kubernetes and Prometheus would hold several GB of disk.
go_scratch=${TANDEM_CACHE:-$HOME/.cache/tandem}/go-scratch
export GOMODCACHE=$go_scratch/mod GOCACHE=$go_scratch/build GOFLAGS=-modcacherw
scratch_clean() { rm -rf "$go_scratch"; }
trap scratch_clean EXIT

step "programs tandem injects (tests/programs/build.sh; cached in \${TANDEM_CACHE:-~/.cache/tandem}/programs)"
for program in $(bash tests/programs/build.sh --list | cut -d' ' -f1); do
  bash tests/programs/build.sh "$program" >/dev/null
done
scratch_clean

step "pytest"
python3 -m pytest -q tests/validate tests/chart

# Each pod has a network namespace of its own; the whole run is in one with only loopback too.
step "pytest: the injected programs, run in the pods tandem makes (loopback only)"
unshare --net -- sh -c 'ip link set lo up && exec python3 -m pytest -q -p no:cacheprovider tests/podrunner tests/ambassador tests/programs'

step "the control plane: etcd, kube-apiserver, kube-controller-manager, kubectl (built once, then cached)"
bash tests/controlplane/build.sh
scratch_clean

step "Prometheus and promtool (built once, then cached)"
bash tests/prometheus/build.sh
scratch_clean

# In a network namespace of its own with only loopback: nothing the tests start (the control
# plane, tandem, the webhooks, Prometheus) can dial anything but 127.0.0.0/8.
step "pytest: through the real API server and a real Prometheus (loopback only)"
unshare --net -- sh -c 'ip link set lo up && exec python3 -m pytest -q -p no:cacheprovider tests/cluster tests/prometheus'

# The release build is the image's binary (fat LTO: minutes the first time, a no-op when
# nothing changed); built here, with the network, so that the test's own image build
# finds it fresh. TANDEM_IMAGE_PROFILE=debug builds the image around the debug binary
# instead (same libraries, same image config; seconds instead of minutes).
if [[ ${TANDEM_IMAGE_PROFILE:-release} == release ]]; then
  step "the image's binary: cargo build --release"
  cargo build --release --locked --bin tandem
fi

step "pytest: the image, built and run from its exported root filesystem (loopback only)"
unshare --net -- sh -c 'ip link set lo up && exec python3 -m pytest -q -p no:cacheprovider tests/image'

printf '\nall tests passed in %ss\n' "$SECONDS"
