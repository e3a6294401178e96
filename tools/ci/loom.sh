#!/usr/bin/env bash
# Runs the ring's loom models (ringbuf/tests/loom.rs): every interleaving of the two ends up to
# LOOM_MAX_PREEMPTIONS preemptions. Exits non-zero if any model fails.
#
# Usage: tools/ci/loom.sh [extra cargo test args, e.g. a test name filter]
set -euo pipefail
cd "$(dirname "$0")/../.."

export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"

echo "loom: LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
cargo test -p spinwire-ringbuf --release --test loom "$@"
