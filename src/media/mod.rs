//! Media helpers: turning a raw container byte stream into independently decodable Trickle
//! segments (publishing), and remuxing a channel's MPEG-TS segments into fragmented MP4 (viewing).

pub mod fmp4;
pub mod mpegts;
