#!/usr/bin/env bash
# Autobahn|Testsuite conformance of spinwire's WebSocket client: every non-compression case
# (all but 12.* and 13.*, 301 cases) against kosoku's fuzzing server on loopback. Fails unless
# kosoku says every case passed (OK, NON-STRICT or INFORMATIONAL). Reports: target/autobahn/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash tools/ci/setup.sh >/dev/null

port="${AUTOBAHN_PORT:-9001}"
out=target/autobahn
rm -rf "$out"; mkdir -p "$out"
# The example runs in the release profile: 16 MiB messages validated and masked in a debug
# build make the 9.x cases slow.
cargo build --release --locked -p spinwire-engine --example autobahn-client
client=target/release/examples/autobahn-client

.venv/bin/kosoku -m fuzzingserver -o "$out" -x '12.*' -x '13.*' "127.0.0.1:$port" \
  >"$out/kosoku.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

"$client" --agent spinwire "ws://127.0.0.1:$port" >"$out/client.log" 2>&1 || {
  echo "autobahn: the client failed; last lines of $out/client.log:" >&2
  tail -20 "$out/client.log" >&2
  exit 1
}
if wait "$server"; then
  trap - EXIT
  tail -1 "$out/kosoku.log"
  echo "autobahn: $(grep -c '^case' "$out/client.log") cases run, all passed"
else
  trap - EXIT
  echo "autobahn: kosoku reports failing cases:" >&2
  tail -40 "$out/kosoku.log" >&2
  exit 1
fi
