//! Sequence parameter sets: the few fields of an H.264 or HEVC SPS that an MP4 sample entry and a
//! codecs string need (profile, level, chroma format, bit depth, picture size). The SPS comes from
//! the stream, so every read is checked: a malformed one gives `None`, never a panic.

/// What an H.264 SPS says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AvcSps {
    pub(super) profile_idc: u8,
    pub(super) chroma_format_idc: u8,
    pub(super) bit_depth_luma: u8,
    pub(super) bit_depth_chroma: u8,
    pub(super) width: u16,
    pub(super) height: u16,
}

/// What an HEVC SPS says (its general profile_tier_level and picture format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HevcSps {
    pub(super) max_sub_layers: u8,
    pub(super) temporal_id_nesting: bool,
    pub(super) profile_space: u8,
    pub(super) tier: bool,
    pub(super) profile_idc: u8,
    /// general_profile_compatibility_flag[0..32], flag 0 in the most significant bit.
    pub(super) compatibility: u32,
    pub(super) constraints: [u8; 6],
    pub(super) level_idc: u8,
    pub(super) chroma_format_idc: u8,
    pub(super) bit_depth_luma: u8,
    pub(super) bit_depth_chroma: u8,
    pub(super) width: u16,
    pub(super) height: u16,
}

/// Reads bits of an RBSP (emulation prevention bytes already removed), most significant first.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |value, _| Some(value << 1 | self.bit()?))
    }

    fn flag(&mut self) -> Option<bool> {
        Some(self.bit()? == 1)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.pos += n;
        (self.pos <= self.data.len() * 8).then_some(())
    }

    /// Exp-Golomb ue(v); values beyond 32 bits are refused (no SPS field is that large).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Option<i64> {
        let value = i64::from(self.ue()?);
        Some(if value % 2 == 1 {
            (value + 1) / 2
        } else {
            -value / 2
        })
    }
}

/// The RBSP of a NAL unit: its payload after the `header_len` header bytes, without emulation
/// prevention bytes (the 03 of 00 00 03).
fn rbsp(nal: &[u8], header_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &byte in nal.get(header_len..).unwrap_or_default() {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// Picture size after the cropping window, in luma samples. `crop` is (left, right, top, bottom)
/// in units of `unit_x` / `unit_y`.
fn cropped(
    width: u32,
    height: u32,
    crop: [u32; 4],
    unit_x: u32,
    unit_y: u32,
) -> Option<(u16, u16)> {
    let [left, right, top, bottom] = crop.map(u64::from);
    let w = u64::from(width).checked_sub((left + right) * u64::from(unit_x))?;
    let h = u64::from(height).checked_sub((top + bottom) * u64::from(unit_y))?;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

/// SubWidthC and SubHeightC for a chroma_format_idc (both 1 for monochrome and 4:4:4).
fn chroma_subsampling(chroma_format_idc: u32) -> (u32, u32) {
    match chroma_format_idc {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    }
}

pub(super) fn parse_avc_sps(nal: &[u8]) -> Option<AvcSps> {
    let data = rbsp(nal, 1);
    let mut r = Bits {
        data: &data,
        pos: 0,
    };
    let profile_idc = r.bits(8)? as u8;
    r.skip(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let (chroma_format_idc, depth_luma, depth_chroma) = avc_chroma_format(&mut r, profile_idc)?;
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.skip(1)?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            for _ in 0..r.ue()?.min(255) {
                r.se()?; // offset_for_ref_frame
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_map_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.skip(1)?; // mb_adaptive_frame_field_flag
    }
    r.skip(1)?; // direct_8x8_inference_flag
    let crop = if r.flag()? {
        [r.ue()?, r.ue()?, r.ue()?, r.ue()?]
    } else {
        [0; 4]
    };
    let (sub_width, sub_height) = if chroma_format_idc == 0 {
        (1, 1)
    } else {
        chroma_subsampling(chroma_format_idc)
    };
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let (width, height) = cropped(
        width_mbs.checked_mul(16)?,
        height_map_units.checked_mul(16 * field_factor)?,
        crop,
        sub_width,
        sub_height * field_factor,
    )?;
    Some(AvcSps {
        profile_idc,
        chroma_format_idc: u8::try_from(chroma_format_idc).ok()?,
        bit_depth_luma: u8::try_from(depth_luma).ok()?,
        bit_depth_chroma: u8::try_from(depth_chroma).ok()?,
        width,
        height,
    })
}

/// chroma_format_idc and bit depths, present only in the SPS of the High profiles (4:2:0 8-bit
/// otherwise); the scaling matrices after them are skipped.
fn avc_chroma_format(r: &mut Bits, profile_idc: u8) -> Option<(u32, u32, u32)> {
    if !matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        return Some((1, 8, 8));
    }
    let chroma_format_idc = r.ue()?;
    if chroma_format_idc == 3 {
        r.skip(1)?; // separate_colour_plane_flag
    }
    let depth_luma = 8 + r.ue()?;
    let depth_chroma = 8 + r.ue()?;
    r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
    if r.flag()? {
        let lists = if chroma_format_idc == 3 { 12 } else { 8 };
        for i in 0..lists {
            if r.flag()? {
                skip_scaling_list(r, if i < 6 { 16 } else { 64 })?;
            }
        }
    }
    Some((chroma_format_idc, depth_luma, depth_chroma))
}

fn skip_scaling_list(r: &mut Bits, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

pub(super) fn parse_hevc_sps(nal: &[u8]) -> Option<HevcSps> {
    let data = rbsp(nal, 2);
    let mut r = Bits {
        data: &data,
        pos: 0,
    };
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    let temporal_id_nesting = r.flag()?;
    // profile_tier_level(1, sps_max_sub_layers_minus1): the general part first.
    let profile_space = r.bits(2)? as u8;
    let tier = r.flag()?;
    let profile_idc = r.bits(5)? as u8;
    let compatibility = r.bits(32)?;
    let mut constraints = [0u8; 6];
    for byte in &mut constraints {
        *byte = r.bits(8)? as u8;
    }
    let level_idc = r.bits(8)? as u8;
    let mut sub_layer_present = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        sub_layer_present.push((r.flag()?, r.flag()?)); // profile, level present
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - max_sub_layers_minus1 as usize))?; // reserved_zero_2bits
    }
    for (profile, level) in sub_layer_present {
        r.skip(if profile { 88 } else { 0 } + if level { 8 } else { 0 })?;
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    if chroma_format_idc == 3 {
        r.skip(1)?; // separate_colour_plane_flag
    }
    let width = r.ue()?;
    let height = r.ue()?;
    let crop = if r.flag()? {
        [r.ue()?, r.ue()?, r.ue()?, r.ue()?]
    } else {
        [0; 4]
    };
    let depth_luma = 8 + r.ue()?;
    let depth_chroma = 8 + r.ue()?;
    let (sub_width, sub_height) = chroma_subsampling(chroma_format_idc);
    let (width, height) = cropped(width, height, crop, sub_width, sub_height)?;
    Some(HevcSps {
        max_sub_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nesting,
        profile_space,
        tier,
        profile_idc,
        compatibility,
        constraints,
        level_idc,
        chroma_format_idc: u8::try_from(chroma_format_idc).ok()?,
        bit_depth_luma: u8::try_from(depth_luma).ok()?,
        bit_depth_chroma: u8::try_from(depth_chroma).ok()?,
        width,
        height,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// x264 (ultrafast: Constrained Baseline, level 1.3) at 320x240, as ffmpeg writes it.
    pub(in crate::media::fmp4) const X264_SPS: [u8; 22] = [
        0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40,
        0x00, 0x00, 0x0c, 0x83, 0xc5, 0x0a, 0xa8,
    ];
    /// x265 (Main, level 2) at 320x240.
    pub(in crate::media::fmp4) const X265_SPS: [u8; 42] = [
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0x52, 0x93, 0x0b, 0xc0, 0x5a,
        0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10,
    ];

    #[test]
    fn h264_sps_of_x264() {
        let parsed = parse_avc_sps(&X264_SPS).unwrap();
        assert_eq!((parsed.width, parsed.height), (320, 240));
        assert_eq!(parsed.profile_idc, 66);
        assert_eq!((parsed.chroma_format_idc, parsed.bit_depth_luma), (1, 8));
    }

    #[test]
    fn hevc_sps_of_x265() {
        let parsed = parse_hevc_sps(&X265_SPS).unwrap();
        assert_eq!((parsed.width, parsed.height), (320, 240));
        assert_eq!(
            (parsed.profile_space, parsed.tier, parsed.profile_idc),
            (0, false, 1)
        );
        assert_eq!(parsed.compatibility, 0x6000_0000);
        assert_eq!(parsed.constraints, [0x90, 0, 0, 0, 0, 0]);
        assert_eq!(parsed.level_idc, 60);
        assert_eq!(
            (parsed.max_sub_layers, parsed.temporal_id_nesting),
            (1, true)
        );
        assert_eq!((parsed.chroma_format_idc, parsed.bit_depth_luma), (1, 8));
    }

    #[test]
    fn malformed_sps_is_none() {
        assert_eq!(parse_avc_sps(&[0x67]), None);
        assert_eq!(parse_avc_sps(&[0x67, 0x64, 0, 0x1f, 0, 0, 0, 0]), None);
        assert_eq!(parse_hevc_sps(&[0x42, 0x01, 0x01]), None);
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = parse_avc_sps(&junk);
            let _ = parse_hevc_sps(&junk);
        }
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(rbsp(&[0x67, 0, 0, 3, 1, 0, 0, 3], 1), [0, 0, 1, 0, 0]);
    }
}
