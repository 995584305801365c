//! What a live viewer's response may ask of its TCP socket: how many bytes the kernel still holds
//! unsent, and to hold few. The technique of eradio and of Goel et al., "Low-Latency Adaptive
//! Streaming over TCP": a sender that knows how much is queued on the socket can drop whole units
//! for a slow receiver instead of queueing them (and the latency with them).
//!
//! On Linux, `SIOCOUTQNSD` gives the bytes not yet sent (the unacknowledged ones in flight aside),
//! and `TCP_NOTSENT_LOWAT` makes the socket report writable only while fewer than that many bytes
//! wait unsent, so a slow receiver's backlog stays in our hands, at a segment boundary, instead of
//! in a kernel buffer that autotuning grows to megabytes. Elsewhere the probe knows nothing and the
//! viewer's lag in segments decides alone.
//!
//! A [`SocketProbe`] is put in the extensions of the HTTP/1 requests of a TCP connection (an
//! HTTP/2 stream shares its socket with others; its own flow control stands in for the queue).
//! It holds the raw descriptor, which is valid as long as the connection: a response body, the
//! only user, lives no longer than its connection.

#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, RawFd};

/// A TCP connection's socket, for its responses to look at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SocketProbe {
    #[cfg(target_os = "linux")]
    fd: RawFd,
}

impl SocketProbe {
    /// The probe of `stream`'s socket.
    pub(crate) fn of(stream: &tokio::net::TcpStream) -> SocketProbe {
        #[cfg(not(target_os = "linux"))]
        let _ = stream;
        SocketProbe {
            #[cfg(target_os = "linux")]
            fd: stream.as_raw_fd(),
        }
    }

    /// Bytes written to the socket that the kernel has not sent yet; `None` if it cannot tell.
    pub(crate) fn unsent(&self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            /// `SIOCOUTQNSD` from `linux/sockios.h` (not in the libc crate).
            const SIOCOUTQNSD: libc::c_ulong = 0x894B;
            let mut unsent: libc::c_int = 0;
            // SAFETY: the descriptor is open for as long as the connection (module doc), and the
            // ioctl writes one int.
            let ok = unsafe { libc::ioctl(self.fd, SIOCOUTQNSD as _, &mut unsent) } == 0;
            ok.then_some(unsent.max(0) as u64)
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// Asks the kernel to report the socket writable only while fewer than `bytes` wait unsent.
    /// Whether it took.
    pub(crate) fn hold_unsent_below(&self, bytes: u32) -> bool {
        #[cfg(target_os = "linux")]
        {
            let value = bytes as libc::c_int;
            // SAFETY: as in `unsent`; the option takes one int.
            let rc = unsafe {
                libc::setsockopt(
                    self.fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NOTSENT_LOWAT,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            rc == 0
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = bytes;
            false
        }
    }
}
