#!/usr/bin/env bash
# The whole test suite: what README.md calls the test command and what .ci/run runs.
# Installs its own prerequisites (tools/ci/setup.sh), then runs formatting and lint checks,
# every crate's tests (the order-fault stress test in its short form), the engine-loop benchmarks
# in their quick form, the loom models, the Miri
# run (where Miri is installed), the Autobahn conformance run, each benchmark once in test mode,
# and a short `spinwire demo` whose summary and report are checked.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "setup"
bash tools/ci/setup.sh

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked

step "benchmarks, each run once as a test"
cargo test -p spinwire-bench --benches --locked

step "engine-loop benchmarks, quick (debug build: they run and their counts hold; figures come from release)"
for example in loop_idle loop_cpu_per_msg order_wakeup; do
  cargo run -q -p spinwire-bench --locked --example "$example" -- --quick
done

step "loom models of the ring"
bash tools/ci/loom.sh

step "miri"
bash tools/ci/miri.sh

step "Autobahn|Testsuite conformance (301 client cases)"
bash tools/ci/autobahn.sh

step "a short demo: summary JSON and report files checked"
bash tools/ci/demo-check.sh 3

step "all passed"
