#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (Python packages
# from PyPI, Debian packages if missing), then runs formatting and lint checks, every Rust
# test (unit, integration, property, the benchmark in test mode, the fuzz corpora replayed
# through the oracle), a short run of every fuzz target (nightly; cargo-fuzz is installed if
# missing) and every Python test (the oracle's own tests, the Helm chart, the ambassador's
# Envoy configuration).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Debian packages"
missing=()
for tool in openssl curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
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

step "fuzz: every target for 20 s from the committed corpus (bash fuzz/run.sh --seconds 20)"
bash fuzz/run.sh --seconds 20

step "pytest"
python3 -m pytest -q tests/validate tests/chart tests/ambassador

printf '\nall tests passed\n'
