#!/usr/bin/env python3
"""Interop test: Livepeer's Python trickle client (pytrickle 0.1.6) against a
trickle-rs server.

Usage:
    PY="$(scripts/setup-pyvenv.sh)"          # venv with aiohttp + pytrickle 0.1.6
    "$PY" tests/interop/pytrickle_interop.py http://127.0.0.1:43123 [-v]

The server under test must run with channel autocreate on. Exit status 0 and a
short summary on success; non-zero with a "FAIL:" line on stderr otherwise.

How pytrickle is loaded
-----------------------
pytrickle/__init__.py imports the whole package (client, server, frames,
encoder/decoder, ...), which needs torch, PyAV, numpy, opencv: none of that is
installed (setup-pyvenv.sh uses `pip install --no-deps`). So the package is
never imported. Instead this script:
  * finds <site-packages>/pytrickle/ by file path (sysconfig purelib/platlib,
    then site.getsitepackages(), then sys.path),
  * puts a bare `types.ModuleType("pytrickle")` with `__path__` set into
    sys.modules (its __init__.py is not executed),
  * loads the submodules it needs with importlib.util.spec_from_file_location,
    following their relative imports (found with `ast`, so a changed import
    list in another version fails loudly instead of silently).
For pytrickle 0.1.6 that means exactly three files:
  * pytrickle/base.py       - imported by both below (`from .base import
                              ErrorCallback, TrickleComponent`); itself only
                              imports asyncio, aiohttp, logging, time, enum,
                              typing.
  * pytrickle/publisher.py  - TricklePublisher, SegmentWriter.
  * pytrickle/subscriber.py - TrickleSubscriber, Segment.
publisher.py and subscriber.py import nothing else from the package.

pytrickle 0.1.6 behaviour this test relies on / works around (read from source)
------------------------------------------------------------------------------
Publisher (TricklePublisher(url, mime_type, error_callback=...)):
  * next() returns a SegmentWriter for {url}/{idx} and spawns a background task
    that takes the publisher lock, does idx += 1 and "preconnects" the POST for
    the following seq. If next() is called again before that task ran, next()
    finds no preconnected writer and POSTs the SAME idx again. So after every
    next() we wait until `pub.next_writer` is set (and check `pub.idx`).
  * Every POST is `Connection: close` with a chunked body streamed from an
    asyncio.Queue (SegmentWriter.write() puts bytes, close() puts None).
  * With aiohttp 3.14 (what setup-pyvenv.sh installs today) request headers
    are buffered until the first body chunk, so a preconnected POST is
    invisible to the server until the first write() of that segment; older
    aiohttp sent them at once, leaving an empty POST open on the server.
  * aiohttp ClientTimeout(total=30 s) per request, i.e. a segment POST
    (including its idle preconnect time) must finish within 30 s.
  * Non-200 POST responses / exceptions are only logged and reported through
    error_callback; the next next() silently clears the error state. We pass an
    error_callback and assert it was never called.
  * close() cancels all background tasks (including POSTs still in flight!)
    and never sends DELETE. So before closing we wait until every POST but the
    idle preconnected one has finished.
Subscriber (TrickleSubscriber(url, start_seq=-2, max_retries=5,
connect_timeout_seconds=30, error_callback=...)):
  * start_seq is used literally in the URL ({url}/{start_seq}); -1 asks the
    server for the next segment to be written (live edge).
  * next() returns a Segment once the GET's response headers arrive (i.e. the
    server has the first byte), then spawns a background GET for seq+1, where
    seq comes from the Lp-Trickle-Seq response header. A 200 without
    Lp-Trickle-Seq makes it re-request the same index.
  * End of stream: next() returns None when a 200 response carries any
    Lp-Trickle-Closed header (value ignored). It also returns None on 404
    (treated as fatal, no retry, error_callback("stream_not_found")) and after
    max_retries failed GETs, so we additionally assert no error was reported.
    Because 404 is fatal, a subscriber cannot be started before the channel
    exists; run A therefore waits until the first POST has created it.
  * 470: retries immediately at the seq from Lp-Trickle-Latest (or -1 if
    absent), consuming one of the 5 attempts; other non-200 statuses and
    connection errors are retried after 0.5 s.
  * Segment.read(32 KiB) returns b"" at the end of the body (and closes it).
  * Every GET is `Connection: close`; ClientTimeout(total=30 s) per GET,
    including the wait for the first byte and the whole body.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib.metadata
import importlib.util
import logging
import math
import os
import random
import secrets
import site
import sys
import sysconfig
import time
import traceback
import types

PYTRICKLE_VERSION = "0.1.6"
SEED = 0x7472_6963  # fixed: payloads and write patterns are reproducible
N_SEGMENTS = 12
MIN_SIZE = 1
MAX_SIZE = 1 << 20  # 1 MiB
OVERALL_TIMEOUT_S = 120.0
STEP_TIMEOUT_S = 30.0
EOS_TIMEOUT_S = 5.0
SETTLE_S = 0.3  # lets a GET reach the server and park there

log = logging.getLogger("pytrickle_interop")


class InteropFailure(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise InteropFailure(msg)


# --------------------------------------------------------------------------
# Loading pytrickle's publisher/subscriber without its package __init__.
# --------------------------------------------------------------------------

def find_pytrickle_dir() -> str:
    paths = sysconfig.get_paths()
    candidates = [paths.get("purelib"), paths.get("platlib")]
    try:
        candidates += site.getsitepackages()
    except AttributeError:
        pass
    candidates += sys.path
    for base in candidates:
        if base and os.path.isfile(os.path.join(base, "pytrickle", "publisher.py")):
            return os.path.join(base, "pytrickle")
    raise InteropFailure(
        "pytrickle is not installed in this interpreter "
        f"({sys.executable}); run scripts/setup-pyvenv.sh and use its python")


def relative_imports(path: str) -> list[str]:
    """Sibling module names that `path` imports relatively (level-1 imports)."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), filename=path)
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            check(node.level == 1,
                  f"{path}: unsupported relative import level {node.level}")
            if node.module:  # from .base import X
                names.append(node.module.split(".")[0])
            else:  # from . import x
                names.extend(a.name for a in node.names)
    return names


def load_pytrickle():
    try:
        version = importlib.metadata.version("pytrickle")
    except importlib.metadata.PackageNotFoundError:
        version = None
    check(version == PYTRICKLE_VERSION,
          f"need pytrickle {PYTRICKLE_VERSION}, found {version!r} in {sys.executable}")
    pkg_dir = find_pytrickle_dir()

    pkg = types.ModuleType("pytrickle")
    pkg.__path__ = [pkg_dir]
    pkg.__package__ = "pytrickle"
    pkg.__file__ = None  # __init__.py deliberately not executed
    sys.modules["pytrickle"] = pkg

    loaded: list[str] = []

    def load(name: str, chain: tuple[str, ...] = ()):
        full = f"pytrickle.{name}"
        if full in sys.modules:
            return sys.modules[full]
        check(name not in chain, f"pytrickle import cycle: {chain + (name,)}")
        path = os.path.join(pkg_dir, name + ".py")
        check(os.path.isfile(path),
              f"pytrickle/{name}.py needed (imported by {chain[-1] if chain else '?'}) "
              "but is not a plain module file")
        for dep in relative_imports(path):  # load siblings first
            load(dep, chain + (name,))
        spec = importlib.util.spec_from_file_location(full, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[full] = mod
        spec.loader.exec_module(mod)
        setattr(pkg, name, mod)
        loaded.append(name)
        return mod

    publisher = load("publisher")
    subscriber = load("subscriber")
    for heavy in ("torch", "av", "cv2", "numpy"):
        check(heavy not in sys.modules, f"loading pytrickle pulled in {heavy!r}")
    return publisher, subscriber, loaded


# --------------------------------------------------------------------------
# Test data and helpers
# --------------------------------------------------------------------------

def make_segments(rng: random.Random) -> list[bytes]:
    """12 random payloads: exactly one of 1 B and one of 1 MiB, the rest
    log-uniformly spread in between, shuffled."""
    sizes = [MIN_SIZE, MAX_SIZE]
    lo, hi = math.log(MIN_SIZE + 1), math.log(MAX_SIZE - 1)
    while len(sizes) < N_SEGMENTS:
        n = int(round(math.exp(rng.uniform(lo, hi))))
        sizes.append(min(max(n, MIN_SIZE + 1), MAX_SIZE - 1))
    rng.shuffle(sizes)
    return [rng.randbytes(n) for n in sizes]


def chunk_plan(rng: random.Random, total: int) -> list[int]:
    """Irregular write sizes: tiny, medium and large chunks mixed."""
    out: list[int] = []
    left = total
    while left > 0:
        r = rng.random()
        if r < 0.3:
            n = rng.randint(1, 16)
        elif r < 0.6:
            n = rng.randint(17, 8192)
        else:
            n = rng.randint(8193, 256 * 1024)
        n = min(n, left)
        out.append(n)
        left -= n
    return out


async def wait_until(pred, timeout: float, what: str, poll: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise InteropFailure(f"timed out after {timeout:.1f}s waiting for {what}")
        await asyncio.sleep(poll)


class ErrorLog:
    """Collects pytrickle error_callback reports."""

    def __init__(self):
        self.entries: list[tuple[str, str, str]] = []

    def callback(self, who: str):
        async def cb(error_type, exc=None):
            self.entries.append((who, error_type, repr(exc)))
            log.warning("pytrickle error from %s: %s %r", who, error_type, exc)
        return cb

    def of(self, who: str):
        return [e for e in self.entries if e[0] == who]

    def assert_none(self, who: str, when: str) -> None:
        errs = self.of(who)
        check(not errs, f"{who} reported errors {when}: {errs}")


class Progress:
    """Number of segments the subscriber has fully read (flow control)."""

    def __init__(self):
        self.read_done = 0
        self.cond = asyncio.Condition()

    async def mark_read(self) -> None:
        async with self.cond:
            self.read_done += 1
            self.cond.notify_all()

    async def wait_read(self, n: int, what: str) -> None:
        async with self.cond:
            try:
                await asyncio.wait_for(
                    self.cond.wait_for(lambda: self.read_done >= n), STEP_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise InteropFailure(
                    f"{what}: subscriber did not finish segment #{n - 1} within "
                    f"{STEP_TIMEOUT_S:.0f}s (read {self.read_done})") from None


def describe_mismatch(got: bytes, want: bytes) -> str:
    if len(got) != len(want):
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        return f"length {len(got)} != expected {len(want)} (first differing byte: {first})"
    first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
    return f"same length {len(got)} but bytes differ from offset {first}"


async def publish_segment(pub, errors: ErrorLog, who: str, data: bytes,
                          rng: random.Random, expected_seq: int,
                          after_first_write=None) -> None:
    await posts_in_order(pub, f"{who} before seq {expected_seq}")
    writer = await asyncio.wait_for(pub.next(), STEP_TIMEOUT_S)
    check(writer.queue is not None,
          f"{who}: next() for seq {expected_seq} returned a dead writer "
          f"(publisher in shutdown/error state; errors: {errors.of(who)})")
    # pytrickle quirk: wait for the background preconnect of the following seq,
    # otherwise a later next() would POST this seq a second time.
    await wait_until(lambda: pub.next_writer is not None or pub._should_stop(),
                     5.0, f"{who}: background preconnect after seq {expected_seq}")
    check(pub.next_writer is not None,
          f"{who}: publisher stopped after next() for seq {expected_seq}: {errors.of(who)}")
    check(pub.idx == expected_seq + 1,
          f"{who}: publisher preconnected seq {pub.idx}, expected {expected_seq + 1} "
          "(duplicate or skipped seq)")
    pos = 0
    for i, n in enumerate(chunk_plan(rng, len(data))):
        await writer.write(data[pos:pos + n])
        pos += n
        if i == 0 and after_first_write is not None:
            await after_first_write()
        if rng.random() < 0.25:
            await asyncio.sleep(rng.uniform(0.0005, 0.004))
        else:
            await asyncio.sleep(0)
    assert pos == len(data)
    await writer.close()
    await asyncio.sleep(0)


async def read_segment(next_aw, errors: ErrorLog, who: str, expected_seq: int,
                       expected: bytes) -> int:
    try:
        seg = await asyncio.wait_for(next_aw, STEP_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise InteropFailure(
            f"{who}: no segment seq {expected_seq} within {STEP_TIMEOUT_S:.0f}s") from None
    check(seg is not None,
          f"{who}: next() returned None (end of stream / failure) while expecting "
          f"seq {expected_seq}; pytrickle errors: {errors.of(who)}")
    got_seq = seg.seq()
    if got_seq != expected_seq:
        await seg.close()
        raise InteropFailure(
            f"{who}: got segment with Lp-Trickle-Seq {seg.response.headers.get('Lp-Trickle-Seq')!r}"
            f" (parsed {got_seq}), expected {expected_seq}")
    buf = bytearray()
    reads = 0
    while True:
        chunk = await asyncio.wait_for(seg.read(), STEP_TIMEOUT_S)
        if not chunk:
            break
        buf += chunk
        reads += 1
    await seg.close()
    got = bytes(buf)
    if got != expected:
        raise InteropFailure(
            f"{who}: seq {expected_seq} payload mismatch: {describe_mismatch(got, expected)}")
    return reads


async def drain_posts(pub, who: str) -> None:
    """Wait until all segment POSTs got their response; only the idle
    preconnected POST for the next seq may remain."""
    await wait_until(lambda: len(pub._background_tasks) <= 1, 10.0,
                     f"{who}: server responses to all segment POSTs "
                     f"({len(pub._background_tasks)} publisher tasks still running)", 0.01)


async def posts_in_order(pub, who: str) -> None:
    """pytrickle sends every POST on its own connection, and aiohttp sends its
    headers only with the first body chunk, so a POST can overtake the one
    before it. Segments then start out of order (the reference server even
    moves the write head back), and the subscriber's preconnect for the next
    seq can get a 470 that makes pytrickle read a segment twice. So the next
    segment starts only once the previous POST was answered."""
    await drain_posts(pub, who)


async def run_concurrently(*coros) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if t.exception() is not None:
                raise t.exception()
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def close_quietly(*components) -> None:
    for c in components:
        if c is None:
            continue
        try:
            await asyncio.wait_for(c.close(), 10.0)
        except Exception as e:  # cleanup must not mask the real result
            log.warning("error closing %s: %r", type(c).__name__, e)


async def channel_exists(session, url: str) -> None:
    """Poll GET {url}/0 until the channel exists (not 404). Run A calls this
    after the first write of seq 0, so the GET answers at once."""
    import aiohttp
    deadline = time.monotonic() + 10.0
    last = None
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{url}/0", headers={"Connection": "close"},
                                   timeout=aiohttp.ClientTimeout(total=5)) as r:
                last = r.status
                if r.status == 200:
                    return  # leaving the block drops the unread body
                check(r.status == 404, f"probe GET {url}/0: unexpected status {r.status}")
        except asyncio.TimeoutError:
            last = "timeout"
        await asyncio.sleep(0.02)
    raise InteropFailure(f"channel {url} not created by the first POST (last probe: {last})")


# --------------------------------------------------------------------------
# Scenario
# --------------------------------------------------------------------------

class Step:
    current = "startup"


def step(name: str) -> None:
    Step.current = name
    log.info("step: %s", name)


async def run_a(pt_pub, pt_sub, session, base: str, errors: ErrorLog) -> dict:
    ch = f"pyinterop-{secrets.token_hex(6)}-a"
    url = f"{base}/{ch}"
    data_rng = random.Random(SEED)
    segs = make_segments(data_rng)
    write_rng = random.Random(SEED + 1)
    progress = Progress()
    channel_ready = asyncio.Event()
    pub = pt_pub.TricklePublisher(url, "application/octet-stream",
                                  error_callback=errors.callback("A/publisher"))
    sub = pt_sub.TrickleSubscriber(url, start_seq=0,
                                   error_callback=errors.callback("A/subscriber"))
    reads_total = 0
    t0 = time.monotonic()
    try:
        async def on_first_write():
            await channel_exists(session, url)
            channel_ready.set()

        async def publisher():
            await pub.start()
            for j, data in enumerate(segs):
                step(f"A: publish seq {j} ({len(data)} B)")
                if j >= 1:  # never start seq j+2 before seq j was fully read
                    await progress.wait_read(j - 1, f"A: publisher before seq {j}")
                await publish_segment(pub, errors, "A/publisher", data, write_rng, j,
                                      on_first_write if j == 0 else None)

        async def subscriber():
            nonlocal reads_total
            await asyncio.wait_for(channel_ready.wait(), STEP_TIMEOUT_S)
            await sub.start()
            for k, data in enumerate(segs):
                step(f"A: read seq {k}")
                reads_total += await read_segment(sub.next(), errors, "A/subscriber", k, data)
                await progress.mark_read()

        await run_concurrently(publisher(), subscriber())
        step("A: wait for POST responses")
        await drain_posts(pub, "A/publisher")
        errors.assert_none("A/publisher", "during run A")
        errors.assert_none("A/subscriber", "during run A")
    finally:
        log.info("A: closing publisher/subscriber")
        await close_quietly(sub, pub)
    async with session.delete(url) as r:
        check(r.status == 200, f"A: DELETE {url} -> {r.status}, expected 200")
    return {"channel": ch, "seqs": f"0..{N_SEGMENTS - 1}", "bytes": sum(map(len, segs)),
            "sizes": [len(s) for s in segs], "reads": reads_total,
            "secs": time.monotonic() - t0}


async def run_b(pt_pub, pt_sub, session, base: str, errors: ErrorLog) -> dict:
    ch = f"pyinterop-{secrets.token_hex(6)}-b"
    url = f"{base}/{ch}"
    data_rng = random.Random(SEED + 2)
    unread = [data_rng.randbytes(data_rng.randint(1, 64 * 1024)) for _ in range(2)]
    segs = make_segments(data_rng)
    write_rng = random.Random(SEED + 3)
    progress = Progress()
    pub = pt_pub.TricklePublisher(url, "application/octet-stream",
                                  error_callback=errors.callback("B/publisher"))
    sub = pt_sub.TrickleSubscriber(url, start_seq=-1,
                                   error_callback=errors.callback("B/subscriber"))
    first_seq = len(unread)
    reads_total = 0
    eos_secs = None
    t0 = time.monotonic()
    first_next = None
    try:
        await pub.start()
        for j, data in enumerate(unread):
            step(f"B: publish unread seq {j}")
            await publish_segment(pub, errors, "B/publisher", data, write_rng, j)
        step("B: wait for unread POSTs")
        await drain_posts(pub, "B/publisher")
        errors.assert_none("B/publisher", "publishing the unread segments")

        step("B: subscribe at live edge (start_seq=-1)")
        await sub.start()
        first_next = asyncio.ensure_future(sub.next())
        await asyncio.sleep(SETTLE_S)  # its GET /-1 is now parked on the server
        if first_next.done():
            res = first_next.result()
            raise InteropFailure(
                "B: subscriber at start_seq=-1 returned before anything new was "
                "published: " + (f"seq {res.seq()}" if res is not None else
                                 f"None (errors: {errors.of('B/subscriber')})"))

        async def publisher():
            for j, data in enumerate(segs):
                step(f"B: publish seq {first_seq + j} ({len(data)} B)")
                if j >= 1:
                    await progress.wait_read(j - 1, f"B: publisher before seq {first_seq + j}")
                await publish_segment(pub, errors, "B/publisher", data, write_rng,
                                      first_seq + j)

        async def subscriber():
            nonlocal reads_total
            for k, data in enumerate(segs):
                step(f"B: read seq {first_seq + k}")
                aw = first_next if k == 0 else sub.next()
                reads_total += await read_segment(aw, errors, "B/subscriber",
                                                  first_seq + k, data)
                await progress.mark_read()

        await run_concurrently(publisher(), subscriber())
        step("B: wait for POST responses")
        await drain_posts(pub, "B/publisher")
        errors.assert_none("B/publisher", "during run B")
        errors.assert_none("B/subscriber", "during run B")

        # (e) DELETE while the subscriber waits for the next segment.
        step("B: wait for next segment, then DELETE channel")
        await asyncio.sleep(SETTLE_S)  # background GET for the next seq is parked
        eos_next = asyncio.ensure_future(sub.next())
        await asyncio.sleep(0.05)
        if eos_next.done():
            res = eos_next.result()
            raise InteropFailure(
                "B: subscriber.next() returned before the DELETE: "
                + (f"seq {res.seq()}" if res is not None else
                   f"None (errors: {errors.of('B/subscriber')})"))
        t_del = time.monotonic()
        async with session.delete(url) as r:
            check(r.status == 200, f"B: DELETE {url} -> {r.status}, expected 200")
        step("B: wait for end of stream")
        try:
            res = await asyncio.wait_for(eos_next, EOS_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise InteropFailure(
                f"B: subscriber.next() did not return within {EOS_TIMEOUT_S:.0f}s of the "
                "DELETE (waiting GET not answered with Lp-Trickle-Closed?)") from None
        eos_secs = time.monotonic() - t_del
        if res is not None:
            hdrs = dict(res.response.headers)
            await res.close()
            raise InteropFailure(
                f"B: after DELETE expected end of stream (next() -> None), got a segment "
                f"with status {res.response.status} headers {hdrs}")
        errors.assert_none(
            "B/subscriber",
            "at end of stream (next() returned None because of an error, not because of "
            "Lp-Trickle-Closed: e.g. 404 instead of 200 + Lp-Trickle-Closed)")
    finally:
        log.info("B: closing publisher/subscriber")
        if first_next is not None and not first_next.done():
            first_next.cancel()
        await close_quietly(sub, pub)
    return {"channel": ch, "seqs": f"{first_seq}..{first_seq + N_SEGMENTS - 1}",
            "bytes": sum(map(len, segs)), "sizes": [len(s) for s in segs],
            "reads": reads_total, "eos_secs": eos_secs,
            "secs": time.monotonic() - t0}


async def scenario(base: str) -> tuple[list[str], dict, dict]:
    import aiohttp
    step("load pytrickle")
    pt_pub, pt_sub, loaded = load_pytrickle()
    # pytrickle's own handler: silences the "Task exception was never retrieved"
    # ClientConnectionResetError that aiohttp raises when a publisher is closed
    # with an idle preconnected POST (pytrickle's close() cancels it).
    sys.modules["pytrickle.base"].setup_asyncio_exception_handler()
    errors = ErrorLog()
    timeout = aiohttp.ClientTimeout(total=STEP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        a = await run_a(pt_pub, pt_sub, session, base, errors)
        b = await run_b(pt_pub, pt_sub, session, base, errors)
    return loaded, a, b


async def amain(base: str):
    try:
        return await asyncio.wait_for(scenario(base), OVERALL_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise InteropFailure(
            f"overall timeout of {OVERALL_TIMEOUT_S:.0f}s exceeded (at step: {Step.current})"
        ) from None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base_url", help="trickle base URL, e.g. http://127.0.0.1:43123")
    ap.add_argument("-v", "--verbose", action="store_true", help="log pytrickle INFO output")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    base = args.base_url.rstrip("/")
    try:
        import aiohttp
    except ImportError:
        print(f"FAIL: aiohttp is not installed in {sys.executable}; run "
              "scripts/setup-pyvenv.sh and use the python it prints", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        loaded, a, b = asyncio.run(amain(base))
    except InteropFailure as e:
        print(f"FAIL: {e} [step: {Step.current}]", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, OSError) as e:
        if args.verbose:
            traceback.print_exc()
        print(f"FAIL: HTTP/connection error: {type(e).__name__}: {e} [step: {Step.current}]", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        print(f"FAIL: unexpected exception [step: {Step.current}]", file=sys.stderr)
        return 1
    mib = (a["bytes"] + b["bytes"]) / (1 << 20)
    print(f"pytrickle {PYTRICKLE_VERSION} interop OK against {base} "
          f"({time.monotonic() - t0:.1f}s, {mib:.1f} MiB; loaded pytrickle."
          f"{{{','.join(loaded)}}} without __init__)")
    print(f"  run A (from seq 0):     {a['channel']} seqs {a['seqs']}, "
          f"{a['bytes']} B byte-exact in order, sizes {a['sizes']}, {a['secs']:.1f}s")
    print(f"  run B (from live edge): {b['channel']} seqs {b['seqs']} after 2 unread, "
          f"{b['bytes']} B byte-exact in order, sizes {b['sizes']}, {b['secs']:.1f}s")
    print(f"  end of stream: DELETE -> subscriber next() returned None after "
          f"{b['eos_secs']:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
