//! Media helpers for publishing: turning a raw container byte stream into independently decodable
//! Trickle segments.

pub mod mpegts;
