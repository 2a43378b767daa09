#!/usr/bin/env bash
# The main job: set up if needed, then run chorus (the Discord bot with DISCORD_TOKEN, else the offline demo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${CHORUS_VENV:-$ROOT/.venv}/bin/python" -m bot "$@"
