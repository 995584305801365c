// The player of `GET /{ch}/watch`: Media Source Extensions fed from `live.mp4` (one streaming
// fetch; the server sends an init segment, then fMP4 fragments as frames arrive), kept near the
// live edge, reconnecting with backoff. Its state is on `window.player` (read by the tests) and
// on the page.
"use strict";

// How far behind the newest buffered frame the player aims to play: a few frames, so that a
// fragment arriving late does not stall the video.
const TARGET_LAG = 0.3;
// Behind the edge by more than this, the player seeks to the target instead of speeding up.
const SEEK_LAG = 1.0;
// Playback rate while catching up (barely audible as pitch up to about 15%).
const CATCH_UP_RATE = 1.15;
// What is kept behind the playhead; older media is removed so the buffer never fills.
const KEEP_BEHIND = 20;
// Reconnection delays: doubling from the first to the last, reset once media arrives.
const FIRST_RETRY = 0.5;
const LAST_RETRY = 8;

const video = document.getElementById("video");
const stateView = document.getElementById("state");
const lagView = document.getElementById("lag");
const skipsView = document.getElementById("skips");
const detailView = document.getElementById("detail");
// The page is `…/{ch}/watch`: the channel's name is the path's second-to-last part.
document.getElementById("name").textContent = decodeURIComponent(
  window.location.pathname.split("/").slice(-2)[0],
);

const player = {
  state: "connecting", // connecting | live | reconnecting | ended
  lag: 0, // seconds behind the newest buffered frame
  skips: 0, // gaps in the media jumped over (the server dropped segments for this viewer)
  reconnects: 0,
  detail: "",
};
window.player = player;

function show(state, detail) {
  player.state = state;
  player.detail = detail || "";
  stateView.textContent = state;
  stateView.className = state;
  detailView.textContent = player.detail;
}

function sleep(seconds) {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

// One connection: a fresh MediaSource fed from one response until it ends. Resolves with
// "ended" (the server said there is nothing to play), "closed" (the response ended) or throws.
async function play(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) {
    const reason = (await response.text()).trim() || response.statusText;
    if (response.status === 404 || response.status === 415) {
      return { end: "ended", detail: `${response.status} ${reason}` };
    }
    throw new Error(`${response.status} ${reason}`);
  }
  const type = response.headers.get("content-type");
  if (!window.MediaSource || !MediaSource.isTypeSupported(type)) {
    return { end: "ended", detail: `this browser cannot play ${type}` };
  }
  const source = new MediaSource();
  video.src = URL.createObjectURL(source);
  await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
  const buffer = source.addSourceBuffer(type);
  const feeder = new Feeder(buffer);
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      return { end: "closed" };
    }
    await feeder.append(value);
    if (player.state !== "live") {
      show("live");
      retry = FIRST_RETRY;
    }
    video.play().catch(() => {});
  }
}

// Appends to a SourceBuffer one piece at a time (it takes no new data while updating), and
// trims what is far behind the playhead.
class Feeder {
  constructor(buffer) {
    this.buffer = buffer;
  }

  async append(data) {
    await this.idle();
    this.trim();
    await this.idle();
    this.buffer.appendBuffer(data);
    await this.idle();
  }

  idle() {
    if (!this.buffer.updating) {
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      this.buffer.addEventListener("updateend", resolve, { once: true });
      this.buffer.addEventListener("error", () => reject(new Error("media error")), { once: true });
    });
  }

  trim() {
    const ranges = this.buffer.buffered;
    const before = video.currentTime - KEEP_BEHIND;
    if (ranges.length > 0 && ranges.start(0) < before) {
      this.buffer.remove(ranges.start(0), before);
    }
  }
}

// Keeps the playhead near the live edge: jumps gaps (a skip on the server leaves one), seeks
// when far behind, plays a little faster when slightly behind.
function chase() {
  const ranges = video.buffered;
  if (ranges.length === 0) {
    return;
  }
  const edge = ranges.end(ranges.length - 1);
  const now = video.currentTime;
  for (let i = 0; i < ranges.length; i++) {
    if (now < ranges.start(i) && (i === 0 || now >= ranges.end(i - 1) - 0.1)) {
      video.currentTime = ranges.start(i);
      player.skips += i > 0 ? 1 : 0;
      return;
    }
  }
  player.lag = Math.max(0, edge - now);
  if (player.lag > SEEK_LAG) {
    video.currentTime = edge - TARGET_LAG;
  } else {
    video.playbackRate = player.lag > TARGET_LAG + 0.2 ? CATCH_UP_RATE : 1;
  }
  lagView.textContent = `${player.lag.toFixed(2)} s`;
  skipsView.textContent = String(player.skips);
}

let retry = FIRST_RETRY;

async function run() {
  // From the start of the segment being written: a segment starts with a keyframe, so the
  // video starts at once, a little behind, and catches up.
  const url = "live.mp4" + (window.location.search || "?from=current");
  setInterval(chase, 100);
  for (;;) {
    let outcome;
    try {
      outcome = await play(url);
    } catch (err) {
      outcome = { end: "failed", detail: String(err.message || err) };
    }
    if (outcome.end === "ended") {
      show("ended", outcome.detail);
    } else {
      show("reconnecting", outcome.detail);
    }
    player.reconnects += 1;
    await sleep(outcome.end === "ended" ? LAST_RETRY : retry);
    retry = Math.min(retry * 2, LAST_RETRY);
  }
}

show("connecting");
run();
