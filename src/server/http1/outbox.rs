//! Bytes on their way to the socket: a response's head, chunk-size lines kept inline, and segment
//! bytes shared with the segment (never copied), written with as few `writev`s as the socket allows.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWrite;

use super::super::conn::SendDeadline;

/// Most slices handed to one `writev` (Linux allows 1024).
pub(super) const MAX_IOV: usize = 64;
/// Bytes on their way to the socket, written with as few `writev`s as the socket allows. Made per
/// response rather than kept for the connection's life: kept, ten thousand idle subscribers'
/// queues and heads would cost more memory (10–20 MB in `c10k`) than their allocations cost time.
pub(super) struct Outbox {
    pub(super) pieces: VecDeque<Piece>,
    /// The response's head ([`Piece::Head`]).
    pub(super) head: Vec<u8>,
    /// Ends the response when the client takes nothing for the send timeout.
    pub(super) deadline: SendDeadline,
}

/// One slice of the outbox: bytes shared with the segment (or static), a chunk-size line kept
/// inline, so that framing a chunk allocates nothing, or what is left of the head.
pub(super) enum Piece {
    Shared(Bytes),
    Line {
        bytes: [u8; 18],
        start: u8,
        end: u8,
    },
    /// `Outbox::head` from `start` on.
    Head {
        start: usize,
    },
}

impl Piece {
    /// `{size:x}\r\n`
    pub(super) fn chunk_size(size: usize) -> Piece {
        let mut bytes = [0u8; 18];
        let mut rest = &mut bytes[..];
        let _ = write!(rest, "{size:x}\r\n");
        let end = (18 - rest.len()) as u8;
        Piece::Line {
            bytes,
            start: 0,
            end,
        }
    }

    pub(super) fn as_slice<'a>(&'a self, head: &'a [u8]) -> &'a [u8] {
        match self {
            Piece::Shared(bytes) => bytes,
            Piece::Line { bytes, start, end } => &bytes[*start as usize..*end as usize],
            Piece::Head { start } => &head[*start..],
        }
    }

    pub(super) fn advance(&mut self, n: usize) {
        match self {
            Piece::Shared(bytes) => bytes.advance(n),
            Piece::Line { start, .. } => *start += n as u8,
            Piece::Head { start } => *start += n,
        }
    }
}

impl Outbox {
    pub(super) fn new(send_timeout: std::time::Duration) -> Outbox {
        // Room for what most responses are: head, size line, data, CRLF, final chunk.
        Outbox {
            pieces: VecDeque::with_capacity(8),
            head: Vec::with_capacity(256),
            deadline: SendDeadline::new(send_timeout),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.pieces.len()
    }

    pub(super) fn push(&mut self, piece: Piece) {
        self.pieces.push_back(piece);
    }

    /// Writes until the outbox is empty or the socket is full.
    pub(super) fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.pieces.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let count = self
                .pieces
                .iter()
                .zip(slices.iter_mut())
                .map(|(piece, slice)| *slice = IoSlice::new(piece.as_slice(&self.head)))
                .count();
            let written = Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..count]);
            let mut written = ready!(self.deadline.guard(cx, written))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while written > 0 {
                let front = &mut self.pieces[0];
                let len = front.as_slice(&self.head).len();
                if written >= len {
                    written -= len;
                    if let Some(Piece::Head { .. }) = self.pieces.pop_front() {
                        // Not held while a live segment streams on for minutes.
                        self.head = Vec::new();
                    }
                } else {
                    front.advance(written);
                    written = 0;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_hex_and_can_be_written_in_parts() {
        assert_eq!(Piece::chunk_size(0).as_slice(&[]), b"0\r\n");
        let mut line = Piece::chunk_size(usize::MAX);
        assert_eq!(line.as_slice(&[]), b"ffffffffffffffff\r\n");
        line.advance(15);
        assert_eq!(line.as_slice(&[]), b"f\r\n");
    }
}
