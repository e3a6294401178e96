#!/usr/bin/env bash
# System calls per message of each end-to-end client's I/O thread: runs the e2e bench once per
# wire under `perf record -e raw_syscalls:sys_enter` (a kernel tracepoint: every system call is
# counted, none is slowed much, unlike strace) and divides each I/O thread's calls by the
# messages it received. Needs perf with tracepoint access (root, or perf_event_paranoid <= -1).
#
#   bash bench/e2e_syscalls.sh [SECONDS] [RATE]      (defaults: 2 s at 20,000 msg/s, block mode)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-2}"
rate="${2:-20000}"
command -v perf >/dev/null || { echo "e2e_syscalls: perf is not installed" >&2; exit 1; }
cargo build --release -q -p spinwire-bench --example e2e_hdr
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf '%-5s %-20s %10s %12s %14s %12s\n' wire client messages syscalls "syscalls/msg" "epoll_wait/msg"
for wire in ws wss; do
  clients="spinwire,tokio"
  [ "$wire" = ws ] && clients="spinwire,tokio,floor"
  for client in ${clients//,/ }; do
    perf record -q -e raw_syscalls:sys_enter -o "$tmp/p.data" -- \
      target/release/examples/e2e_hdr --clients "$client" --tls "$wire" --runs 1 \
      --seconds "$secs" --rate "$rate" --no-throughput --mode block >"$tmp/out" 2>&1
    msgs="$(grep -oE 'recv [0-9]+/' "$tmp/out" | head -1 | grep -oE '[0-9]+')"
    case "$client" in
      spinwire) comm="spinwire-sessio" ;;
      tokio) comm="e2e-tokio" ;;
      floor) comm="e2e-floor" ;;
    esac
    # Every system call of the client's I/O thread (tokio: its runtime thread; the floor: its
    # read loop); id 232 is epoll_wait on x86-64, 22 on aarch64 (epoll_pwait).
    perf script -i "$tmp/p.data" -F comm,trace 2>/dev/null \
      | awk -v c="$comm" -v m="$msgs" -v w="$wire" -v n="$client" '
          $1 == c { total++; if ($3 == 232 || $3 == 281 || $3 == 22) ep++ }
          END { printf "%-5s %-20s %10d %12d %14.2f %12.2f\n", w, n, m, total, total / m, ep / m }'
  done
done
