//! A raw HTTP/2 client for tests: frames written by hand, so that a test can do what real
//! clients never do (hold half a header block, never answer a ping, reset a stream mid-body).

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PATIENCE;

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const ACK: u8 = 1;
pub const END_STREAM: u8 = 1;
pub const END_HEADERS: u8 = 4;

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header block for `method` (GET or POST) of `path`: HPACK without Huffman coding.
pub fn request(method: &str, path: &str) -> Vec<u8> {
    let method = if method == "POST" { 0x83 } else { 0x82 };
    let mut block = vec![method, 0x86, 0x44, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x41, 1, b'x']);
    block
}

/// Sends a whole GET of `path` on `stream_id` (one HEADERS frame that ends the stream).
pub async fn get(stream: &mut (impl AsyncWrite + Unpin), stream_id: u32, path: &str) {
    let block = request("GET", path);
    let headers = frame(HEADERS, END_HEADERS | END_STREAM, stream_id, &block);
    stream.write_all(&headers).await.unwrap();
}

/// Connects, sends the preface and empty settings.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    hello(&mut stream).await;
    stream
}

/// Sends the preface and empty settings on a connection (over TLS, say).
pub async fn hello(stream: &mut (impl AsyncWrite + Unpin)) {
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(4, 0, 0, &[]));
    stream.write_all(&hello).await.unwrap();
}

/// Reads frames until the server closes the connection, acknowledging every PING as a live
/// client does; returns the bytes read. Fails after [`PATIENCE`].
pub async fn until_closed_answering_pings(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut parsed = 0;
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            while got.len() >= parsed + 9 {
                let head = &got[parsed..parsed + 9];
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                if got.len() < parsed + 9 + len {
                    break;
                }
                let (kind, flags) = (head[3], head[4]);
                if kind == PING && flags & ACK == 0 {
                    let payload = got[parsed + 9..parsed + 9 + len].to_vec();
                    let _ = stream.write_all(&frame(PING, ACK, 0, &payload)).await;
                }
                parsed += 9 + len;
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the server closes the connection in time");
    got
}

/// The frame types in `bytes` (as far as they are whole).
pub fn kinds(mut bytes: &[u8]) -> Vec<u8> {
    let mut kinds = Vec::new();
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        kinds.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    kinds
}

/// A real h2c client (HTTP/2 with prior knowledge, reqwest); `stream_window`, if given, is the
/// receive window it grants each stream (a stream it does not read stops after that many bytes).
pub fn h2c_client(stream_window: Option<u32>) -> reqwest::Client {
    // reqwest is built with TLS but without a default crypto provider; trickle's clients install
    // ring, and so must any other client in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .http2_initial_stream_window_size(stream_window)
        .build()
        .unwrap()
}
