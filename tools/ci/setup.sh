#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, idempotently:
#  - ./.venv with the Python test peers (kosoku for Autobahn, websockets for interop).
# Safe to run again: it only installs what is missing or out of date.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup: $python not found; install Python 3.9+ (e.g. apt-get install python3 python3-venv)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv || {
    echo "setup: python3 -m venv failed; on Debian install python3-venv" >&2
    exit 1
  }
fi
stamp=.venv/.requirements.sha256
want="$(sha256sum tools/ci/requirements.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python test peers from tools/ci/requirements.txt"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tools/ci/requirements.txt
  echo "$want" > "$stamp"
fi
.venv/bin/python -c 'import kosoku, websockets' || {
  echo "setup: .venv is missing kosoku or websockets; delete .venv and run again" >&2
  exit 1
}
echo "setup: ok (.venv with kosoku and websockets)"
