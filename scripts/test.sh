#!/usr/bin/env bash
# The tests: set up if needed (with test tools), lint and format check (ruff), type-check (mypy) and check the direction of imports
# (lint-imports, the contracts in pyproject.toml), then run the whole suite offline on the embedded models.
# Arguments go to pytest; CHORUS_NO_LINT=1 skips ruff, mypy and lint-imports (quick reruns).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --dev
cd "$ROOT"
VENV="${CHORUS_VENV:-$ROOT/.venv}"
if [[ "${CHORUS_NO_LINT:-0}" != "1" ]]; then
  echo "[test] ruff check" >&2
  "$VENV/bin/ruff" check .
  echo "[test] ruff format --check" >&2
  "$VENV/bin/ruff" format --check .
  echo "[test] mypy" >&2
  "$VENV/bin/mypy"
  echo "[test] lint-imports" >&2
  "$VENV/bin/lint-imports"
fi
exec "$VENV/bin/python" -m pytest "$@"
