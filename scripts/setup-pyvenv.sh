#!/usr/bin/env bash
# Create (or reuse) a Python venv holding pytrickle 0.1.6 + aiohttp for the
# pytrickle interop test (tests/interop/pytrickle_interop.py).
#
# Usage: scripts/setup-pyvenv.sh [VENV_DIR]
#   VENV_DIR defaults to target/pyvenv under the repository root; a relative
#   VENV_DIR given as $1 is taken relative to the current directory.
#
# pytrickle is installed with --no-deps on purpose: its declared dependencies
# (torch, PyAV, opencv, numpy, ...) are huge and unused by the interop test,
# which loads only pytrickle/{base,publisher,subscriber}.py by file path and
# needs nothing but aiohttp at runtime.
#
# All progress output goes to stderr; the last (and only) line on stdout is the
# absolute path of the venv's python, so callers can do
#   PY="$(scripts/setup-pyvenv.sh)"
set -euo pipefail

PYTRICKLE_VERSION="0.1.6"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
REQS="$REPO_ROOT/tests/interop/requirements.txt"

VENV="${1:-$REPO_ROOT/target/pyvenv}"
mkdir -p "$(dirname "$VENV")"
VENV="$(cd "$(dirname "$VENV")" && pwd)/$(basename "$VENV")"
PY="$VENV/bin/python"
PYTHON3="${PYTHON3:-python3}"

log() { echo "setup-pyvenv: $*" >&2; }

# True when the venv has aiohttp importable and pytrickle $PYTRICKLE_VERSION
# installed with its publisher/subscriber/base modules present as files
# (we never import the pytrickle package itself: its __init__ needs torch).
venv_ready() {
    [ -x "$PY" ] || return 1
    "$PY" - "$PYTRICKLE_VERSION" <<'PYEOF' >/dev/null 2>&1
import importlib.metadata, os, sys, sysconfig
want = sys.argv[1]
if importlib.metadata.version("pytrickle") != want:
    sys.exit(1)
pkg = os.path.join(sysconfig.get_paths()["purelib"], "pytrickle")
for name in ("base.py", "publisher.py", "subscriber.py"):
    if not os.path.isfile(os.path.join(pkg, name)):
        sys.exit(1)
import aiohttp  # noqa: F401
PYEOF
}

if venv_ready; then
    log "reusing $VENV (pytrickle $PYTRICKLE_VERSION present)"
else
    if [ -x "$PY" ] && ! "$PY" -c 'import sys' >/dev/null 2>&1; then
        log "venv at $VENV is broken (its python does not run); recreating"
        "$PYTHON3" -m venv --clear "$VENV" >&2
    fi
    if [ ! -x "$PY" ]; then
        log "creating venv at $VENV"
        "$PYTHON3" -m venv "$VENV" >&2 || {
            log "'$PYTHON3 -m venv' failed (on Debian: apt-get install python3-venv)"
            exit 1
        }
    fi
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    if [ -f "$REQS" ]; then
        log "installing $REQS"
        "$PY" -m pip install --quiet -r "$REQS" >&2
    else
        log "installing aiohttp"
        "$PY" -m pip install --quiet aiohttp >&2
    fi
    log "installing pytrickle==$PYTRICKLE_VERSION (--no-deps)"
    "$PY" -m pip install --quiet --no-deps "pytrickle==$PYTRICKLE_VERSION" >&2
    if ! venv_ready; then
        log "venv at $VENV still lacks pytrickle $PYTRICKLE_VERSION or aiohttp after install"
        exit 1
    fi
fi

echo "$PY"
