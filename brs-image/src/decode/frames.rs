//! Frame counters that read container structure only (no pixel decoding), so an animation is
//! refused before any decoder allocates.

/// Counts image descriptors in a GIF by walking its block structure (no LZW decoding). Stops at
/// 2 because only "more than one" matters; malformed data returns what was counted so far and the
/// decoder reports the corruption.
pub(super) fn gif(b: &[u8]) -> u32 {
    let mut i = 13;
    if b.len() < i {
        return 0;
    }
    if b[10] & 0x80 != 0 {
        i += 3 * (1usize << ((b[10] & 0x07) + 1));
    }
    let mut frames = 0;
    let skip_sub_blocks = |mut i: usize| -> Option<usize> {
        loop {
            let n = *b.get(i)? as usize;
            i += 1;
            if n == 0 {
                return Some(i);
            }
            i += n;
        }
    };
    while let Some(&tag) = b.get(i) {
        match tag {
            0x2C => {
                frames += 1;
                if frames > 1 {
                    return frames;
                }
                let Some(&flags) = b.get(i + 9) else {
                    return frames;
                };
                i += 10;
                if flags & 0x80 != 0 {
                    i += 3 * (1usize << ((flags & 0x07) + 1));
                }
                i += 1; // LZW minimum code size
                match skip_sub_blocks(i) {
                    Some(n) => i = n,
                    None => return frames,
                }
            }
            0x21 => match skip_sub_blocks(i + 2) {
                Some(n) => i = n,
                None => return frames,
            },
            _ => return frames,
        }
    }
    frames
}

/// Counts ANMF chunks of an animated WebP (flag in VP8X); a still WebP counts as one.
pub(super) fn webp(b: &[u8]) -> u32 {
    let mut i = 12;
    let mut frames = 0;
    let mut animated = false;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let size = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        if id == b"VP8X" {
            animated = b.get(i + 8).is_some_and(|f| f & 0x02 != 0);
        } else if id == b"ANMF" {
            frames += 1;
        }
        i = i
            .saturating_add(8)
            .saturating_add(size)
            .saturating_add(size & 1);
    }
    if animated { frames.max(2) } else { 1 }
}

/// Reads the frame count of an APNG's acTL chunk (which precedes the image data); 1 for plain PNG.
pub(super) fn apng(b: &[u8]) -> u32 {
    let mut i = 8;
    while i + 8 <= b.len() {
        let len = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let kind = &b[i + 4..i + 8];
        if kind == b"acTL" {
            return b
                .get(i + 8..i + 12)
                .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]))
                .unwrap_or(1);
        }
        if kind == b"IDAT" || kind == b"IEND" {
            return 1;
        }
        i = i.saturating_add(12).saturating_add(len);
    }
    1
}

