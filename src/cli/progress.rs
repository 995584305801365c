//! Progress of `trickle publish` / `trickle subscribe` on stderr: a live status line (segments,
//! bytes, rate) when stderr is a terminal, one-line notes for events worth knowing (jumps, failed
//! segments, end of stream), and a summary line at the end.

use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    verb: &'static str,
    bar: ProgressBar,
    started: Instant,
    segments: u64,
    bytes: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    /// When the status line was last refreshed: bytes arrive per chunk, the line changes 4 times a
    /// second at most.
    drawn: Instant,
}

impl Progress {
    /// `verb` says what happens to the bytes ("published", "received").
    pub fn new(verb: &'static str) -> Progress {
        let target = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress {
            verb,
            bar,
            started: Instant::now(),
            segments: 0,
            bytes: 0,
            first_seq: None,
            last_seq: None,
            drawn: Instant::now(),
        }
    }

    fn status(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let seqs = match (self.first_seq, self.last_seq) {
            (Some(first), Some(last)) => format!(" (seq {first}–{last})"),
            _ => String::new(),
        };
        format!(
            "{} {} segment{}{seqs}, {} in {:.1} s ({}/s)",
            self.verb,
            self.segments,
            if self.segments == 1 { "" } else { "s" },
            HumanBytes(self.bytes),
            elapsed,
            HumanBytes((self.bytes as f64 / elapsed) as u64),
        )
    }

    pub fn bytes(&mut self, n: u64) {
        self.bytes += n;
        self.redraw();
    }

    pub fn segment(&mut self, seq: u64) {
        self.segments += 1;
        self.first_seq.get_or_insert(seq);
        self.last_seq = Some(seq);
        self.redraw();
    }

    fn redraw(&mut self) {
        if self.bar.is_hidden() || self.drawn.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.drawn = Instant::now();
        self.bar.set_message(self.status());
    }

    /// A line worth reading, above the status line.
    pub fn note(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("trickle: {line}");
        } else {
            self.bar.println(format!("trickle: {line}"));
        }
    }

    /// Clears the status line and prints the summary.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        eprintln!("trickle: {}", self.status());
    }
}
