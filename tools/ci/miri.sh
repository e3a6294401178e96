#!/usr/bin/env bash
# Runs the ring's ordinary (non-loom) tests under Miri, which checks the unsafe code for
# undefined behaviour (out-of-bounds, use of uninitialized memory, double drops, data races).
# The tests shrink their counts under Miri (`cfg!(miri)`).
#
# If Miri is not installed, says so and exits 0, so CI without a nightly toolchain still passes.
#
# Usage: tools/ci/miri.sh [extra cargo miri test args]
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "miri: not installed, skipping (install with: rustup toolchain install nightly --component miri && cargo +nightly miri setup)"
    exit 0
fi

# Separate target dir: Miri builds are not interchangeable with normal ones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/miri}"
# MIRIFLAGS passes through, e.g. MIRIFLAGS=-Zmiri-seed=7 to try another thread schedule.

cargo +nightly miri --version
cargo +nightly miri test -p spinwire-ringbuf "$@"
