#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs all of it:
# formatting, clippy, unit and integration tests (real sockets, the real binary, pytrickle from
# PyPI) and a single quick pass of each benchmark.
#
#   scripts/test.sh              # everything
#   scripts/test.sh routing      # extra arguments go to `cargo test` (a filter, for example)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# Tests open a thousand sockets at once (abandoned waiting GETs); make sure the fd limit allows it.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if ! command -v cargo >/dev/null; then
    echo "scripts/test.sh: cargo is not installed (https://rustup.rs)" >&2
    exit 1
fi

step "System packages: curl (README walk-through), ffmpeg and ffprobe (video end to end), chromium and chromedriver (the player page), npm (test-only players), redis-server and redis-cli (clusters)"
missing=()
command -v curl >/dev/null || missing+=(curl)
{ command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; } || missing+=(ffmpeg)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v npm >/dev/null || missing+=(npm)
{ command -v redis-server >/dev/null && command -v redis-cli >/dev/null; } || missing+=(redis-server)
if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null; then
        echo "scripts/test.sh: please install: ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

step "Test-only players from npm: hls.js and dash.js (the browser plays LL-HLS and DASH with them)"
npm install --silent --no-audit --no-fund --prefix target/players hls.js@1.7.4 dashjs@5.2.1 >&2
TRICKLE_TEST_HLS_JS="$PWD/target/players/node_modules/hls.js/dist/hls.min.js"
export TRICKLE_TEST_HLS_JS
TRICKLE_TEST_DASH_JS="$PWD/target/players/node_modules/dashjs/dist/modern/umd/dash.all.min.js"
export TRICKLE_TEST_DASH_JS

step "Python venv with pytrickle 0.1.6 (for the interop test)"
if ! python3 -m venv --help >/dev/null 2>&1 && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >&2
fi
TRICKLE_TEST_PYTHON="$(scripts/setup-pyvenv.sh)"
export TRICKLE_TEST_PYTHON

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (every target; the criterion benchmark needs the internals feature)"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --all-features -- -D warnings

step "The library builds without the command line (no default features; with tls alone; with the client, edges without clusters)"
cargo clippy --lib --no-default-features -- -D warnings
cargo clippy --lib --no-default-features --features tls -- -D warnings
cargo clippy --lib --no-default-features --features client -- -D warnings

step "cargo test (unit, integration, one pass of each benchmark)"
cargo test --all-targets --features internals "$@"

step "cargo test --doc (the README example compiles)"
cargo test --doc
