#!/usr/bin/env bash
# The tests: set up if needed (with test tools), lint (ruff) and type-check (mypy), then run the whole suite
# offline on the embedded models. Arguments go to pytest; CHORUS_NO_LINT=1 skips ruff and mypy (quick reruns).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --dev
cd "$ROOT"
VENV="${CHORUS_VENV:-$ROOT/.venv}"
if [[ "${CHORUS_NO_LINT:-0}" != "1" ]]; then
  echo "[test] ruff check" >&2
  "$VENV/bin/ruff" check .
  echo "[test] mypy" >&2
  "$VENV/bin/mypy"
fi
exec "$VENV/bin/python" -m pytest "$@"
