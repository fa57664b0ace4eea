#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (Python packages
# from PyPI, Debian packages if missing), then runs formatting and lint checks, every Rust
# test (unit, integration, property, the benchmark in test mode), every Python test (the
# oracle's own tests, the Helm chart, the ambassador's Envoy configuration), and the suite
# judged by a real Kubernetes control plane, built from the Go module proxy and cached
# outside the clone (tests/controlplane/build.sh; $TANDEM_CACHE, default ~/.cache/tandem),
# and the image the chart deploys, built (image/build.sh: the release binary, buildah) and
# run from its exported root filesystem. Each step prints the seconds since the start.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

step "Debian packages"
missing=()
# buildah builds the image, podman loads and exports it (tests/image).
for tool in openssl curl buildah podman; do command -v "$tool" >/dev/null || missing+=("$tool"); done
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

step "Python packages (tests/requirements.txt)"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test"
cargo test --locked --all-targets

step "pytest"
python3 -m pytest -q tests/validate tests/chart tests/ambassador

step "the control plane: etcd, kube-apiserver, kube-controller-manager, kubectl (built once, then cached)"
bash tests/controlplane/build.sh

# In a network namespace of its own with only loopback: nothing the tests start (the control
# plane, tandem, the webhooks) can dial anything but 127.0.0.0/8.
step "pytest: through the real API server (loopback only)"
unshare --net -- sh -c 'ip link set lo up && exec python3 -m pytest -q -p no:cacheprovider tests/cluster'

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
