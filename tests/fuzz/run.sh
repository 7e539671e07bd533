#!/bin/sh
# Run every cargo-fuzz target for SECONDS each (default 60), one after the
# other, from any directory. Needs cargo-fuzz (`cargo install cargo-fuzz`);
# the stable toolchain stands in for nightly through RUSTC_BOOTSTRAP=1.
#
#   tests/fuzz/run.sh 600            # ten minutes per target
#   TARGETS="tcp net" tests/fuzz/run.sh 60
#
# Corpora grow in tests/fuzz/corpus/<target>/ (not checked in), seeded from
# the fixtures (seeds.py). A crash stops that target: libFuzzer leaves the
# input in tests/fuzz/artifacts/<target>/; copy it to
# fixtures/hostile/fuzz/<target>/ so `cargo test --test hostile` replays it.
# Each target's last libFuzzer status line (executions, coverage, features)
# is printed at the end and kept in tests/fuzz/last-run.txt.
set -u
SECONDS_EACH=${1:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 2
export RUSTC_BOOTSTRAP=1
TARGETS=${TARGETS:-$(cargo fuzz list --fuzz-dir tests/fuzz)}
python3 "$HERE/seeds.py" "$ROOT" "$HERE/corpus" || exit 2
# Builds every target (the list above may name a subset).
cargo fuzz build --fuzz-dir tests/fuzz || exit 2
: >"$HERE/last-run.txt"
status=0
for t in $TARGETS; do
    mkdir -p "$HERE/corpus/$t"
    log="$HERE/corpus/$t.log"
    if cargo fuzz run --fuzz-dir tests/fuzz "$t" "$HERE/corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=CRASH
        status=1
    fi
    line=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "$t: $result, ${execs:-?} executions; $line" | tee -a "$HERE/last-run.txt"
    if [ "$result" = CRASH ]; then
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -n 5
    fi
done
exit $status
