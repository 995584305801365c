#!/usr/bin/env bash
# The soak of RELIABILITY.md: 20 channels × (1 publisher + 20 subscribers that leave and rejoin at
# random) against `trickle serve`, every segment checked, RSS sampled every second.
# Usage: scripts/soak.sh [SECONDS]   (default 1800, i.e. 30 minutes; CI runs 120 in scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
TRICKLE_SOAK_SECS="${1:-1800}" exec cargo test --release --test soak -- --nocapture
