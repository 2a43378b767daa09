#!/usr/bin/env bash
# The tests: set up if needed (with test tools), then run the whole suite offline on the embedded models.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --dev
cd "$ROOT"
exec "${CHORUS_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
