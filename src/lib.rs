//! trickle-rs: a Trickle server and its clients.
//!
//! Trickle streams live data over plain HTTP as numbered segments: a publisher POSTs each segment of
//! a channel to `/{channel}/{seq}` as a streaming body, and subscribers GET it while it is still
//! being written. See `README.md` for the protocol in brief and `docs/PROTOCOL.md` for the
//! contract.
//!
//! - [`protocol`]: header names, seq parsing, name rules and the [`Error`] type.
//! - [`server`]: the server ([`Server`]), embeddable as an axum router, and [`serve`] to run it.
//! - [`local`]: in-process publisher and subscriber.
//! - [`media`]: media helpers; [`media::mpegts`] cuts an MPEG-TS stream into keyframe-aligned
//!   segments for `trickle publish --mpegts`.
//! - [`auth`]: access tokens (JWT HS256) for the server and `trickle token`.
//! - `client` (feature `client`): HTTP publisher and subscriber with the Go reference clients'
//!   semantics.
//! - `cli` (feature `cli`): the `trickle` command line.
//!
//! Cargo features, all on by default: `tls` (`server::serve_tls` and `server::tls`: rustls,
//! certificates from PEM files or self-signed), `client` (reqwest) and `cli` (clap, indicatif,
//! hdrhistogram; implies the other two). With `default-features = false` the crate is the server
//! alone, for embedding.

pub mod auth;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
pub mod local;
pub mod media;
pub mod protocol;
pub mod server;

pub use protocol::Error;
pub use server::{Config, Server, serve};

/// The README's Rust example is compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
