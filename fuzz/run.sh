#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/fuzz_targets) on the nightly toolchain, each for
# --seconds (default 60), starting from the committed corpus (fuzz/corpus/<target>) and the
# crash inputs kept as regressions (fuzz/regressions/<target>). New inputs go to a scratch
# corpus under fuzz/target/, crashes to fuzz/artifacts/<target>/ (and the run fails).
# Prints the executions of each target and their total.
#
#   bash fuzz/run.sh                          # every target, 60 s each
#   bash fuzz/run.sh --seconds 20             # the quick run of tests/run.sh
#   bash fuzz/run.sh --seconds 3600 --jobs 2 patch   # a long run of one target, two processes
#   bash fuzz/run.sh --merge                  # then fold the scratch corpora into fuzz/corpus (minimized)
#
# Installs cargo-fuzz (cargo install --locked) if missing. Needs the nightly toolchain.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

seconds=60 jobs=1 merge=0 targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --merge) merge=1; shift ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "fuzz/run.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=(review annotations policy patch)

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo +nightly install cargo-fuzz --locked --quiet
fi

# Release with debug assertions (-a): integer overflow panics, as in tests. No sanitizer:
# tandem has no unsafe code, and a panic is what the targets report.
flags=(--release --debug-assertions --sanitizer none)
# The build (instrumented, so shared with no other build) is kept outside the clone, like
# what tests/run.sh builds with Go: a fresh clone then rebuilds tandem's own crate only.
# CARGO_FUZZ_TARGET_DIR sets another place.
flags+=(--target-dir "${CARGO_FUZZ_TARGET_DIR:-${TANDEM_CACHE:-$HOME/.cache/tandem}/fuzz-target}")
for target in "${targets[@]}"; do
  cargo +nightly fuzz build "${flags[@]}" "$target"
done

total=0
for target in "${targets[@]}"; do
  scratch="target/corpus/$target"
  mkdir -p "$scratch" "corpus/$target" "regressions/$target" "artifacts/$target"
  parallel=()
  ((jobs > 1)) && parallel=(-jobs="$jobs" -workers="$jobs")
  dict=()
  [[ -f "$target.dict" ]] && dict=(-dict="$target.dict")
  [[ "$target" == annotations ]] && dict=(-dict=annotations.dict)
  log="target/fuzz-$target.log"
  echo "==> $target: ${seconds}s, $jobs job(s)"
  status=0
  cargo +nightly fuzz run "${flags[@]}" "$target" "$scratch" "corpus/$target" "regressions/$target" -- \
    -max_total_time="$seconds" "${parallel[@]}" -max_len=131072 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="artifacts/$target/" "${dict[@]}" >"$log" 2>&1 || status=$?
  if ((jobs > 1)); then cat fuzz-*.log >>"$log" 2>/dev/null && rm -f fuzz-*.log; fi
  runs=$(grep -ho 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}')
  total=$((total + runs))
  echo "    $runs executions"
  if ((status)) || ls "artifacts/$target"/crash-* "artifacts/$target"/timeout-* "artifacts/$target"/oom-* >/dev/null 2>&1; then
    grep -h -A 2 -E "^thread '.*' .*panicked" "$log" | cut -c 1-2000 | head -n 20 >&2 || tail -n 20 "$log" >&2
    echo "fuzz/run.sh: $target failed (exit $status); inputs in fuzz/artifacts/$target, log in fuzz/$log" >&2
    exit 1
  fi
done
echo "==> total: $total executions"

if ((merge)); then
  for target in "${targets[@]}"; do
    echo "==> merging the scratch corpus of $target into corpus/$target"
    # libFuzzer's merge: inputs of the scratch corpus that add coverage join the first.
    cargo +nightly fuzz run "${flags[@]}" "$target" "corpus/$target" "target/corpus/$target" -- \
      -merge=1 >"target/merge-$target.log" 2>&1
  done
fi
