#!/usr/bin/env python3
"""Cross-client interop: pytrickle 0.1.6 on one side, trickle-rs's Rust client on the other.

    "$PY" tests/interop/pytrickle_cross.py publish   CHANNEL_URL DIR COUNT
    "$PY" tests/interop/pytrickle_cross.py subscribe CHANNEL_URL DIR COUNT

publish:   pytrickle's TricklePublisher publishes COUNT segments of random bytes
           (1 B ... 1 MiB, irregular writes) starting at seq 0, and stores what it
           sent in DIR/<seq>.bin for the Rust side to compare.
subscribe: pytrickle's TrickleSubscriber reads COUNT segments from the live edge
           (start -1; the channel must exist: pytrickle treats 404 as fatal) and
           stores each one in DIR/<seq>.bin. It prints "waiting" once its first
           GET is out.

Loading pytrickle and its quirks are described in pytrickle_interop.py, whose
helpers this script reuses. Exit status 0 on success; "FAIL: ..." otherwise.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytrickle_interop as interop  # noqa: E402


async def publish(url: str, out_dir: str, count: int) -> None:
    publisher_mod, _, _ = interop.load_pytrickle()
    errors = interop.ErrorLog()
    rng = random.Random(20261122)
    pub = publisher_mod.TricklePublisher(
        url, "application/octet-stream", error_callback=errors.callback("pub"))
    await pub.start()
    try:
        sizes = [1, 1 << 20] + [rng.randint(2, 300_000) for _ in range(max(count - 2, 0))]
        for seq, size in enumerate(sizes[:count]):
            data = rng.randbytes(size)
            with open(os.path.join(out_dir, f"{seq}.bin"), "wb") as f:
                f.write(data)
            await interop.publish_segment(pub, errors, "pub", data, rng, seq)
        await interop.drain_posts(pub, "pub")
        errors.assert_none("pub", "while publishing")
    finally:
        await interop.close_quietly(pub)


async def subscribe(url: str, out_dir: str, count: int) -> None:
    _, subscriber_mod, _ = interop.load_pytrickle()
    errors = interop.ErrorLog()
    sub = subscriber_mod.TrickleSubscriber(
        url, start_seq=-1, error_callback=errors.callback("sub"))
    await sub.start()
    try:
        first = asyncio.ensure_future(sub.next())
        await asyncio.sleep(interop.SETTLE_S)
        print("waiting", flush=True)
        next_aw = first
        for _ in range(count):
            seg = await asyncio.wait_for(next_aw, interop.STEP_TIMEOUT_S)
            interop.check(seg is not None,
                          f"next() returned None; pytrickle errors: {errors.of('sub')}")
            seq = seg.seq()
            buf = bytearray()
            while True:
                chunk = await asyncio.wait_for(seg.read(), interop.STEP_TIMEOUT_S)
                if not chunk:
                    break
                buf += chunk
            await seg.close()
            with open(os.path.join(out_dir, f"{seq}.bin"), "wb") as f:
                f.write(bytes(buf))
            next_aw = sub.next()
        errors.assert_none("sub", "while subscribing")
    finally:
        await interop.close_quietly(sub)


def main() -> int:
    if len(sys.argv) != 5 or sys.argv[1] not in ("publish", "subscribe"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, url, out_dir, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    run = publish if mode == "publish" else subscribe
    try:
        asyncio.run(asyncio.wait_for(run(url, out_dir, count), interop.OVERALL_TIMEOUT_S))
    except (interop.InteropFailure, asyncio.TimeoutError) as e:
        print(f"FAIL: {mode}: {e!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
