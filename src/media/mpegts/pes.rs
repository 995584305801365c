//! PES headers and the timestamps they carry: reading the PTS from the start of a PES packet, and
//! placing 33-bit PTS values on a continuous timeline across wrap-around and source restarts.

/// PTS and DTS count a 90 kHz clock in 33 bits.
pub(super) const PTS_HZ: u128 = 90_000;
pub(super) const PTS_MODULUS: i64 = 1 << 33;
/// Steps between consecutive timestamps of the cutting stream beyond these are discontinuities (a
/// restarted, looped or spliced source), not time passing. Backwards, decode order legitimately
/// goes back by the B-frame reorder delay (well under a second); forwards, by a frame or a few.
const MAX_STEP_BACK: i64 = 3 * 90_000;
const MAX_STEP_FORWARD: i64 = 10 * 90_000;

/// A PES header, parsed from the start of a PES packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PesHeader {
    /// More bytes are needed.
    Incomplete,
    /// Not a PES packet start.
    Invalid,
    /// `length` bytes of header precede the elementary stream data; `pts` and `dts` are raw
    /// 33-bit values (a DTS only where it differs from the PTS); `packet_length` is
    /// PES_packet_length: the bytes after that field, 0 = unbounded (video).
    Parsed {
        length: usize,
        pts: Option<u64>,
        dts: Option<u64>,
        packet_length: usize,
    },
}

pub(crate) fn parse_pes_header(buf: &[u8]) -> PesHeader {
    const START_CODE: [u8; 3] = [0x00, 0x00, 0x01];
    let prefix = buf.len().min(3);
    if buf.get(..prefix) != START_CODE.get(..prefix) {
        return PesHeader::Invalid;
    }
    let Some(&[_, _, _, stream_id, length_high, length_low]) = buf.first_chunk::<6>() else {
        return PesHeader::Incomplete;
    };
    let packet_length = usize::from(length_high) << 8 | usize::from(length_low);
    // These streams have no optional header (and so no PTS).
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return PesHeader::Parsed {
            length: 6,
            pts: None,
            dts: None,
            packet_length,
        };
    }
    let Some(&[_, _, _, _, _, _, marker, flags, header_data_length]) = buf.first_chunk::<9>()
    else {
        return PesHeader::Incomplete;
    };
    if marker & 0xc0 != 0x80 {
        return PesHeader::Invalid;
    }
    let length = 9 + usize::from(header_data_length);
    if buf.len() < length {
        return PesHeader::Incomplete;
    }
    // PTS_DTS_flags 0b10 or 0b11: a PTS is the first optional field, and with 0b11 a DTS follows.
    let timestamp = |at: usize| {
        buf.get(at..at + 5)
            .and_then(|bytes| <[u8; 5]>::try_from(bytes).ok())
            .map(decode_timestamp)
    };
    let pts = (flags & 0x80 != 0 && header_data_length >= 5)
        .then(|| timestamp(9))
        .flatten();
    let dts = (flags & 0xc0 == 0xc0 && header_data_length >= 10)
        .then(|| timestamp(14))
        .flatten();
    PesHeader::Parsed {
        length,
        pts,
        dts,
        packet_length,
    }
}

/// Decodes the 5-byte PTS/DTS field (33 bits split by marker bits).
fn decode_timestamp(b: [u8; 5]) -> u64 {
    (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1)
}

/// Places 33-bit timestamps on a continuous 64-bit timeline. Each value is taken within ±2^32 of
/// the previous one, so crossing 2^33 adds 2^33 while small steps back (B-frames) stay small.
/// A jump beyond [`MAX_STEP_BACK`] / [`MAX_STEP_FORWARD`] is bridged instead: the timeline
/// continues just after the latest value so far, so a pacer neither stalls nor sleeps for hours.
#[derive(Default)]
pub(super) struct Timeline {
    /// The previous raw timestamp and where it was placed.
    last: Option<(i64, i64)>,
    /// The latest placed value.
    latest: i64,
}

impl Timeline {
    /// Returns the placed value and whether a discontinuity was bridged to get there.
    pub(super) fn place(&mut self, pts: u64) -> (u64, bool) {
        let (placed, discontinuity) = self.place_signed(pts);
        // Only a step back right at the start can go below zero.
        (u64::try_from(placed).unwrap_or(0), discontinuity)
    }

    /// [`Timeline::place`] without the clamp at zero: the first value is placed at its raw value,
    /// and a step back from it (a B-frame shown before it, across the wrap-around) goes negative.
    pub(super) fn place_signed(&mut self, pts: u64) -> (i64, bool) {
        let raw = (pts & (PTS_MODULUS as u64 - 1)) as i64;
        let (placed, discontinuity) = match self.last {
            None => (raw, false),
            Some((last_raw, last)) => {
                let step = wrapped_step(last_raw, raw);
                if (-MAX_STEP_BACK..=MAX_STEP_FORWARD).contains(&step) {
                    (last + step, false)
                } else {
                    (self.latest + 1, true)
                }
            }
        };
        self.latest = if self.last.is_none() {
            placed
        } else {
            self.latest.max(placed)
        };
        self.last = Some((raw, placed));
        (placed, discontinuity)
    }
}

/// The step from one 33-bit timestamp to the next, taken within ±2^32: crossing 2^33 is a small
/// step forward, not a jump back by 26 hours.
pub(crate) fn wrapped_step(from: i64, to: i64) -> i64 {
    let step = (to - from).rem_euclid(PTS_MODULUS);
    if step >= PTS_MODULUS / 2 {
        step - PTS_MODULUS
    } else {
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::mpegts::testing::*;

    #[test]
    fn timeline_unwraps_and_bridges_jumps() {
        let mut t = Timeline::default();
        assert_eq!(t.place(100), (100, false));
        assert_eq!(t.place(50), (50, false)); // a step back (B-frame) stays a step back
        assert_eq!(t.place((1 << 33) - 10), (0, false)); // clamped: before the first value
        let mut t = Timeline::default();
        let top = (1 << 33) - 10;
        assert_eq!(t.place(top), (top, false));
        assert_eq!(t.place(5), ((1 << 33) + 5, false));
        assert_eq!(t.place((1 << 33) - 1), ((1 << 33) - 1, false));
        assert_eq!(t.place(20), ((1 << 33) + 20, false));
        // A jump of 13 hours forward: the timeline carries on just after its latest value.
        assert_eq!(t.place(1 << 32), ((1 << 33) + 21, true));
        assert_eq!(t.place((1 << 32) + 3600), ((1 << 33) + 21 + 3600, false));
        // The source restarts at 1000 (back by far more than B-frames could explain).
        assert_eq!(t.place(1000), ((1 << 33) + 21 + 3601, true));
        // Back by a second is still just reordering.
        assert_eq!(
            t.place(1000 + 90_000),
            ((1 << 33) + 21 + 3601 + 90_000, false)
        );
        assert_eq!(t.place(1000), ((1 << 33) + 21 + 3601, false));
    }

    #[test]
    fn pes_header_parsing() {
        let pes = pes_packet(0xe0, 0x1_2345_6789, &[1, 2, 3]);
        assert_eq!(
            parse_pes_header(&pes),
            PesHeader::Parsed {
                length: 14,
                pts: Some(0x1_2345_6789),
                dts: None,
                packet_length: 0,
            }
        );
        for n in 0..14 {
            assert_eq!(parse_pes_header(&pes[..n]), PesHeader::Incomplete, "{n}");
        }
        let with_dts = pes_packet_with_dts(0xe0, 7200, 3600, &[1]);
        assert_eq!(
            parse_pes_header(&with_dts),
            PesHeader::Parsed {
                length: 19,
                pts: Some(7200),
                dts: Some(3600),
                packet_length: 0,
            }
        );
        let audio = pes_packet(0xc0, 0, &[1, 2, 3]);
        assert!(matches!(
            parse_pes_header(&audio),
            PesHeader::Parsed {
                packet_length: 11,
                ..
            }
        ));
        assert_eq!(parse_pes_header(&[0, 1]), PesHeader::Invalid);
        assert_eq!(
            parse_pes_header(&[0, 0, 1, 0xbe, 0, 0]),
            PesHeader::Parsed {
                length: 6,
                pts: None,
                dts: None,
                packet_length: 0,
            }
        );
    }
}
