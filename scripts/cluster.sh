#!/usr/bin/env bash
# A cluster on one machine: redis-server, an origin and two edges on loopback ports, a test video
# published to the origin, watched through an edge.
#
#   scripts/cluster.sh            # runs until Ctrl-C; prints where to watch
#   scripts/cluster.sh --check    # 8 s of video, read through both edges, checked, then stops
#
# Needs redis-server, ffmpeg and a built `trickle` (TRICKLE=path, default target/release/trickle,
# built if missing). Ports: CLUSTER_PORT (default 2940) for the origin, the next two for the edges,
# the one after for Redis.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
[[ "${1:-}" == "--check" ]] && check=true
base=${CLUSTER_PORT:-2940}
origin_port=$base edge1_port=$((base + 1)) edge2_port=$((base + 2)) redis_port=$((base + 3))
trickle=${TRICKLE:-target/release/trickle}
[[ -x "$trickle" ]] || cargo build --release >&2
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" &
pids+=($!)
registry="redis://127.0.0.1:$redis_port"
node() { # name port
    local url="http://127.0.0.1:$2"
    "$trickle" serve --listen "127.0.0.1:$2" --registry "$registry" --advertise "$url" \
        --node-id "$1" 2>"$work/$1.log" &
    pids+=($!)
}
node origin "$origin_port"
node edge1 "$edge1_port"
node edge2 "$edge2_port"
for port in "$origin_port" "$edge1_port" "$edge2_port"; do
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/_channels" && break; sleep 0.1; done
done
echo "redis $registry; origin :$origin_port; edges :$edge1_port :$edge2_port" >&2

# A test pattern and a tone, encoded in real time, published to the origin.
seconds=$($check && echo 8 || echo 3600)
ffmpeg -v error -re -f lavfi -i testsrc2=size=640x360:rate=25 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t "$seconds" \
    -c:v libx264 -preset veryfast -g 25 -pix_fmt yuv420p -c:a aac -f mpegts - 2>"$work/ffmpeg.log" |
    "$trickle" publish "http://127.0.0.1:$origin_port/cam" --mpegts 2>"$work/publish.log" &
pids+=($!)

if ! $check; then
    cat >&2 <<EOF
published to the origin as "cam"; the edges pull it from the node Redis names:
  redis-cli -p $redis_port GET trickle:origin:cam
  ffplay http://127.0.0.1:$edge1_port/cam/live
  open   http://127.0.0.1:$edge2_port/cam/watch
Ctrl-C stops everything.
EOF
    wait
    exit 0
fi

# The check: the registration names the origin, and both edges give decodable video.
for _ in $(seq 100); do
    owner=$(redis-cli -p "$redis_port" GET trickle:origin:cam)
    [[ -n "$owner" ]] && break
    sleep 0.1
done
[[ "$owner" == "origin http://127.0.0.1:$origin_port" ]] || { echo "registered: '$owner'" >&2; exit 1; }
for port in "$edge1_port" "$edge2_port"; do
    timeout 5 curl -s "http://127.0.0.1:$port/cam/live" -o "$work/edge-$port.ts" || true
    # (The capture ends mid-frame: ffprobe's complaint about that last frame is not shown.)
    frames=$(ffprobe -v quiet -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
        -of csv=p=0 "$work/edge-$port.ts" | sed -n 1p)
    [[ "$frames" -gt 50 ]] || { echo "edge :$port: $frames frames" >&2; exit 1; }
    echo "edge :$port: $frames frames of the origin's video" >&2
done
echo "cluster check passed" >&2
