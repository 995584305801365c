//! Where `trickle publish` gets its segments: an input (stdin or a file) read as it arrives and cut
//! into segments by one rule — a byte count and/or a duration, one line each, or MPEG-TS keyframes
//! (through [`crate::media::mpegts::Segmenter`]). The publish loop only sees [`Piece`]s: bytes of
//! the current segment, and the places where a segment ends.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::media::mpegts::{Event, Segmenter, SegmenterConfig};

/// Bytes asked of the input per read.
const READ_SIZE: usize = 64 * 1024;

/// The input, as the publish loop sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// The next bytes of the current segment (a segment starts with its first `Data`).
    Data(Bytes),
    /// The current segment ends here.
    Cut,
}

/// How the input is cut into segments.
pub enum Rule {
    /// At most `bytes` per segment and/or at most `time` from a segment's first byte.
    Size {
        bytes: Option<u64>,
        time: Option<Duration>,
    },
    /// One segment per line (the newline is not part of it; empty lines are skipped).
    Lines,
    /// At MPEG-TS keyframes; `realtime` paces the input by its timestamps.
    MpegTs {
        segmenter: Box<Segmenter>,
        realtime: bool,
    },
}

impl Rule {
    pub fn mpegts(config: SegmenterConfig, realtime: bool) -> Rule {
        Rule::MpegTs {
            segmenter: Box::new(Segmenter::new(config)),
            realtime,
        }
    }
}

/// What is queued between reading and handing out.
enum Queued {
    Piece(Piece),
    /// Realtime pacing: hand out nothing after this until this presentation time is due.
    Pace(u64),
}

/// Reads an input and hands it out as [`Piece`]s.
pub struct Source {
    input: Pin<Box<dyn AsyncRead + Send>>,
    rule: Rule,
    queue: VecDeque<Queued>,
    /// Bytes in the current segment so far.
    segment_bytes: u64,
    /// When the current segment must end (time rule).
    deadline: Option<Instant>,
    /// A partial line (lines rule).
    line: BytesMut,
    /// First presentation timestamp and the instant it was "played" (realtime pacing).
    clock_origin: Option<(u64, Instant)>,
    eof: bool,
}

impl Source {
    pub fn new(input: impl AsyncRead + Send + 'static, rule: Rule) -> Source {
        Source {
            input: Box::pin(input),
            rule,
            queue: VecDeque::new(),
            segment_bytes: 0,
            deadline: None,
            line: BytesMut::new(),
            clock_origin: None,
            eof: false,
        }
    }

    /// What the MPEG-TS segmenter counted (skipped bytes, resyncs, dropped packets).
    pub fn mpegts_stats(&self) -> Option<crate::media::mpegts::Stats> {
        match &self.rule {
            Rule::MpegTs { segmenter, .. } => Some(segmenter.stats().clone()),
            _ => None,
        }
    }

    /// The next piece; `None` at the end of the input (after a final `Cut` if a segment was open).
    pub async fn next(&mut self) -> io::Result<Option<Piece>> {
        loop {
            if let Some(queued) = self.queue.pop_front() {
                let piece = match queued {
                    Queued::Piece(piece) => piece,
                    Queued::Pace(pts) => {
                        self.pace(pts).await;
                        continue;
                    }
                };
                if let Piece::Data(data) = &piece {
                    if self.segment_bytes == 0
                        && let Rule::Size {
                            time: Some(time), ..
                        } = &self.rule
                    {
                        self.deadline = Some(Instant::now() + *time);
                    }
                    self.segment_bytes += data.len() as u64;
                } else {
                    self.segment_bytes = 0;
                    self.deadline = None;
                }
                return Ok(Some(piece));
            }
            if self.eof {
                return Ok(None);
            }
            let mut buf = BytesMut::with_capacity(READ_SIZE);
            let read = match self.deadline {
                Some(deadline) => tokio::select! {
                    read = self.input.read_buf(&mut buf) => read?,
                    _ = tokio::time::sleep_until(deadline) => {
                        self.queue.push_back(Queued::Piece(Piece::Cut));
                        continue;
                    }
                },
                None => self.input.read_buf(&mut buf).await?,
            };
            if read == 0 {
                self.eof = true;
                self.end_of_input();
                continue;
            }
            self.cut(buf.freeze());
        }
    }

    /// Queues the pieces of one read.
    fn cut(&mut self, mut data: Bytes) {
        match &mut self.rule {
            Rule::Size { bytes, .. } => {
                let Some(limit) = *bytes else {
                    self.queue.push_back(Queued::Piece(Piece::Data(data)));
                    return;
                };
                // Reads happen only once the queue is empty, so everything of the current segment
                // so far was handed out and counted.
                let mut used = self.segment_bytes;
                while !data.is_empty() {
                    let room = (limit - used.min(limit)) as usize;
                    if room == 0 {
                        self.queue.push_back(Queued::Piece(Piece::Cut));
                        used = 0;
                        continue;
                    }
                    let piece = data.split_to(room.min(data.len()));
                    used += piece.len() as u64;
                    self.queue.push_back(Queued::Piece(Piece::Data(piece)));
                }
                if used >= limit {
                    self.queue.push_back(Queued::Piece(Piece::Cut));
                }
            }
            Rule::Lines => {
                while let Some(newline) = data.iter().position(|&b| b == b'\n') {
                    let mut line = data.split_to(newline + 1);
                    line.truncate(newline);
                    let mut whole = if self.line.is_empty() {
                        line
                    } else {
                        self.line.extend_from_slice(&line);
                        self.line.split().freeze()
                    };
                    // After joining: the `\r` of a CRLF may have come in the previous read.
                    if whole.ends_with(b"\r") {
                        whole.truncate(whole.len() - 1);
                    }
                    if !whole.is_empty() {
                        self.queue.push_back(Queued::Piece(Piece::Data(whole)));
                        self.queue.push_back(Queued::Piece(Piece::Cut));
                    }
                }
                self.line.extend_from_slice(&data);
            }
            Rule::MpegTs {
                segmenter,
                realtime,
            } => {
                let mut events = Vec::new();
                segmenter.push(&data, &mut events);
                let realtime = *realtime;
                self.queue_events(events, realtime);
            }
        }
    }

    /// Turns segmenter events into queued pieces (and pacing marks, with `realtime`).
    fn queue_events(&mut self, events: Vec<Event>, realtime: bool) {
        for event in events {
            self.queue.push_back(match event {
                Event::Start { .. } => Queued::Piece(Piece::Cut),
                Event::Data(data) => Queued::Piece(Piece::Data(data)),
                Event::Clock(pts) if realtime => Queued::Pace(pts),
                Event::Clock(_) => continue,
            });
        }
    }

    /// Waits until presentation time `pts` is due, counting from the first one seen.
    async fn pace(&mut self, pts: u64) {
        let (origin_pts, origin) = *self.clock_origin.get_or_insert((pts, Instant::now()));
        let micros = pts.saturating_sub(origin_pts).saturating_mul(100) / 9;
        tokio::time::sleep_until(origin + Duration::from_micros(micros)).await;
    }

    fn end_of_input(&mut self) {
        match &mut self.rule {
            Rule::Lines if !self.line.is_empty() => {
                let line = self.line.split().freeze();
                self.queue.push_back(Queued::Piece(Piece::Data(line)));
            }
            Rule::MpegTs { segmenter, .. } => {
                let mut events = Vec::new();
                segmenter.finish(&mut events);
                self.queue_events(events, false);
            }
            _ => {}
        }
        self.queue.push_back(Queued::Piece(Piece::Cut));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn segments(input: &'static [u8], rule: Rule) -> Vec<Vec<u8>> {
        let mut source = Source::new(input, rule);
        let mut out = Vec::new();
        let mut current = Vec::new();
        while let Some(piece) = source.next().await.unwrap() {
            match piece {
                Piece::Data(d) => current.extend_from_slice(&d),
                Piece::Cut if !current.is_empty() => out.push(std::mem::take(&mut current)),
                Piece::Cut => {}
            }
        }
        assert!(current.is_empty(), "input ended inside a segment");
        out
    }

    #[tokio::test]
    async fn cuts_by_size() {
        let rule = Rule::Size {
            bytes: Some(4),
            time: None,
        };
        assert_eq!(
            segments(b"abcdefghij", rule).await,
            vec![b"abcd".to_vec(), b"efgh".to_vec(), b"ij".to_vec()]
        );
    }

    #[tokio::test]
    async fn cuts_lines() {
        assert_eq!(
            segments(b"{\"a\":1}\n\n{\"b\":2}\r\nlast", Rule::Lines).await,
            vec![
                b"{\"a\":1}".to_vec(),
                b"{\"b\":2}".to_vec(),
                b"last".to_vec()
            ]
        );
    }

    #[tokio::test]
    async fn whole_input_without_limits() {
        let rule = Rule::Size {
            bytes: None,
            time: None,
        };
        assert_eq!(
            segments(b"all of it", rule).await,
            vec![b"all of it".to_vec()]
        );
    }

    #[tokio::test]
    async fn crlf_split_across_reads() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut source = Source::new(rx, Rule::Lines);
        use tokio::io::AsyncWriteExt;
        tx.write_all(b"one\r").await.unwrap();
        tx.flush().await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.write_all(b"\ntwo\n").await.unwrap();
        });
        assert_eq!(
            source.next().await.unwrap(),
            Some(Piece::Data(Bytes::from_static(b"one")))
        );
        writer.await.unwrap();
        assert_eq!(source.next().await.unwrap(), Some(Piece::Cut));
        assert_eq!(
            source.next().await.unwrap(),
            Some(Piece::Data(Bytes::from_static(b"two")))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cuts_by_time_even_when_the_input_pauses() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        let mut source = Source::new(
            rx,
            Rule::Size {
                bytes: None,
                time: Some(Duration::from_secs(2)),
            },
        );
        use tokio::io::AsyncWriteExt;
        tx.write_all(b"early").await.unwrap();
        assert_eq!(
            source.next().await.unwrap(),
            Some(Piece::Data(Bytes::from_static(b"early")))
        );
        // Nothing more arrives: the segment still ends two seconds after its first byte.
        assert_eq!(source.next().await.unwrap(), Some(Piece::Cut));
        tx.write_all(b"late").await.unwrap();
        drop(tx);
        assert_eq!(
            source.next().await.unwrap(),
            Some(Piece::Data(Bytes::from_static(b"late")))
        );
        assert_eq!(source.next().await.unwrap(), Some(Piece::Cut));
        assert_eq!(source.next().await.unwrap(), None);
    }
}
