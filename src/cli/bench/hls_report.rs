//! What an `hls` run shows: the parts (`ll`, `hint`) or segments (`polling`) every player should have
//! received and did, the delivery latency percentiles, requests per second, the errors by kind,
//! the players that fell behind or gave up, and the CPU and memory lines of the other profiles'
//! report ([`super::report`]); as text or as the `--json` object.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::bail;

use super::args::{HlsMode, Settings};
use super::hls::{HlsChannel, HlsShared};
use super::process::ServerUsage;
use super::report::{
    Latency, ServerReport, write_cpu, write_read_at, write_samples, write_traffic,
};

/// Reference → last byte of the measured parts or segments, over all players.
#[derive(Debug, serde::Serialize)]
struct Delivery {
    /// Parts or segments measured.
    count: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, serde::Serialize)]
struct Errors {
    /// Every failure below, plus players that gave up and failures of no request (a publisher's,
    /// players that never began or finished).
    total: u64,
    /// Answers other than `200`, by status code.
    status: BTreeMap<u16, u64>,
    timeouts: u64,
    bad_bodies: u64,
    connection: u64,
    players_gave_up: u32,
    other: u64,
    samples: Vec<String>,
}

/// What an `hls` run measured (the `--json` output).
#[derive(Debug, serde::Serialize)]
pub(super) struct HlsReport {
    settings: Settings,
    mode: HlsMode,
    /// What a player receives and is measured by: `parts` (`ll`, `hint`) or `segments` (`polling`).
    pieces: &'static str,
    seconds: f64,
    players: u64,
    /// Measured segments per channel.
    segments: u64,
    /// Parts or segments every player should have received, summed over the players; `None`
    /// when a measured segment's parts are not known.
    pieces_expected: Option<u64>,
    pieces_received: u64,
    /// Players that received fewer than all the measured parts or segments.
    players_short: u64,
    /// Players that had to jump ahead.
    players_behind: u32,
    /// From the first player receiving a playlist naming a part (`ll`), or having the part
    /// (`hint`), or from the publisher having written a segment's last byte (`polling`), to each
    /// player having its last byte.
    delivery: Option<Delivery>,
    requests: u64,
    requests_per_second: f64,
    published_bytes: u64,
    delivered_bytes: u64,
    errors: Errors,
    bench_cpu_seconds: f64,
    /// Each `--server-pid` process, in the order given.
    servers: Vec<ServerReport>,
}

impl HlsReport {
    pub(super) fn new(
        settings: Settings,
        shared: &HlsShared,
        channels: &[Arc<HlsChannel>],
        elapsed: Duration,
        own_cpu: f64,
        servers: Vec<ServerUsage>,
    ) -> HlsReport {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let mode = shared.mode;
        let totals = &shared.totals;
        let (mut expected, mut short) = (Some(0u64), 0u64);
        for channel in channels {
            let per_player = channel.expected_per_player(mode);
            short += per_player.map_or(u64::from(settings.subs), |n| {
                u64::from(channel.players_short(n))
            });
            expected = expected
                .zip(per_player)
                .map(|(sum, n)| sum + n * u64::from(settings.subs));
        }
        let delivery = shared.latency.lock().as_ref().map(|h| {
            let l = Latency::of(h);
            Delivery {
                count: l.writes,
                p50_ms: l.p50_ms,
                p90_ms: l.p90_ms,
                p99_ms: l.p99_ms,
                max_ms: l.max_ms,
            }
        });
        let requests = shared.requests.load(Ordering::Relaxed);
        let delivered = totals.delivered_bytes.load(Ordering::Relaxed);
        HlsReport {
            mode,
            pieces: match mode {
                HlsMode::Ll | HlsMode::Hint => "parts",
                HlsMode::Polling => "segments",
            },
            seconds,
            players: u64::from(settings.channels) * u64::from(settings.subs),
            segments: settings.segments,
            pieces_expected: expected,
            pieces_received: shared.received.load(Ordering::Relaxed),
            players_short: short,
            players_behind: shared.players_behind.load(Ordering::Relaxed),
            delivery,
            requests,
            requests_per_second: requests as f64 / seconds,
            published_bytes: totals.published_bytes.load(Ordering::Relaxed),
            delivered_bytes: delivered,
            errors: Errors::new(shared),
            bench_cpu_seconds: own_cpu,
            servers: ServerReport::all(servers, seconds, delivered),
            settings,
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let mode = match self.mode {
            HlsMode::Ll => "LL-HLS players (blocking reloads, parts)",
            HlsMode::Polling => "HLS players polling index.m3u8",
            HlsMode::Hint => "LL-HLS players (requests held on the hinted part)",
        };
        let input = self
            .settings
            .input
            .as_deref()
            .unwrap_or(std::path::Path::new(""));
        let _ = writeln!(
            out,
            "profile hls: {} channel(s) × {} {mode}, {} segments of {}",
            self.settings.channels,
            self.settings.subs,
            self.segments,
            input.display()
        );
        write_read_at(&mut out, &self.settings);
        write_traffic(
            &mut out,
            self.seconds,
            self.published_bytes,
            self.delivered_bytes,
        );
        let expected = self
            .pieces_expected
            .map_or("an unknown number".into(), |n| n.to_string());
        let _ = writeln!(
            out,
            "  {:<11} {} of {expected} received; {} players short, {} fell behind",
            self.pieces, self.pieces_received, self.players_short, self.players_behind
        );
        let reference = match self.mode {
            HlsMode::Ll => "after the first player had the playlist naming it",
            HlsMode::Polling => "after the publisher wrote it",
            HlsMode::Hint => "after the first player had it",
        };
        match &self.delivery {
            Some(d) => {
                let _ = writeln!(
                    out,
                    "  delivery    p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms {reference} ({} {})",
                    d.p50_ms, d.p90_ms, d.p99_ms, d.max_ms, d.count, self.pieces
                );
            }
            None => {
                let _ = writeln!(out, "  delivery    nothing measured");
            }
        }
        let _ = writeln!(
            out,
            "  requests    {} ({:.0}/s)",
            self.requests, self.requests_per_second
        );
        let e = &self.errors;
        let statuses: Vec<String> = e.status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        let _ = writeln!(
            out,
            "  errors      {} (status {{{}}}, timeouts {}, bad bodies {}, connection {}, gave up {}, other {})",
            e.total,
            statuses.join(", "),
            e.timeouts,
            e.bad_bodies,
            e.connection,
            e.players_gave_up,
            e.other
        );
        write_samples(&mut out, &e.samples);
        write_cpu(
            &mut out,
            self.bench_cpu_seconds,
            self.seconds,
            &self.servers,
        );
        out
    }

    /// Prints the report, as text or JSON; an error if anything failed or a player missed a part
    /// or segment.
    pub(super) fn print(&self, json: bool) -> anyhow::Result<()> {
        super::report::show(self, || self.text(), json)?;
        let complete = self.pieces_expected == Some(self.pieces_received);
        if self.errors.total > 0 || !complete || self.players_short > 0 {
            bail!(
                "{} of {} {} received, {} players short, {} errors",
                self.pieces_received,
                self.pieces_expected
                    .map_or("an unknown number".into(), |n| n.to_string()),
                self.pieces,
                self.players_short,
                self.errors.total
            );
        }
        Ok(())
    }
}

impl Errors {
    fn new(shared: &HlsShared) -> Errors {
        let f = &shared.failures;
        let status = f.status.lock().clone();
        let timeouts = f.timeouts.load(Ordering::Relaxed);
        let bad_bodies = f.bad_bodies.load(Ordering::Relaxed);
        let connection = f.connection.load(Ordering::Relaxed);
        let gave_up = shared.players_gave_up.load(Ordering::Relaxed);
        let other = shared.totals.other_errors.load(Ordering::Relaxed);
        Errors {
            total: status.values().sum::<u64>()
                + timeouts
                + bad_bodies
                + connection
                + u64::from(gave_up)
                + other,
            status,
            timeouts,
            bad_bodies,
            connection,
            players_gave_up: gave_up,
            other,
            samples: shared.totals.samples.lock().clone(),
        }
    }
}
