//! GGML tensor types to f32, as the `gguf` package's reference dequantisation (`quants.py`)
//! computes them: the same f32 products in the same order, so the results are equal bit for bit.

pub const F32: u32 = 0;
pub const F16: u32 = 1;
pub const Q4_0: u32 = 2;
pub const Q4_1: u32 = 3;
pub const Q5_0: u32 = 6;
pub const Q8_0: u32 = 8;
pub const Q4_K: u32 = 12;
pub const Q6_K: u32 = 14;
pub const BF16: u32 = 30;

/// Values per block of the simple types (Q4_0 … Q8_0) and of the k-quants.
const BLOCK: usize = 32;
const SUPER_BLOCK: usize = 256;

/// The values per block and bytes per block of `ty`, or `None` for a type secvec cannot read.
fn layout(ty: u32) -> Option<(usize, usize)> {
    Some(match ty {
        F32 => (1, 4),
        F16 | BF16 => (1, 2),
        Q4_0 => (BLOCK, 2 + 16),
        Q4_1 => (BLOCK, 2 + 2 + 16),
        Q5_0 => (BLOCK, 2 + 4 + 16),
        Q8_0 => (BLOCK, 2 + 32),
        // d, dmin, 12 bytes of packed 6-bit scales and mins, 128 bytes of nibbles.
        Q4_K => (SUPER_BLOCK, 2 + 2 + 12 + 128),
        // 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales, d.
        Q6_K => (SUPER_BLOCK, 128 + 64 + 16 + 2),
        _ => return None,
    })
}

/// Bytes that `n` values of type `ty` take, or `None` for a type secvec cannot read (or a
/// quantised tensor whose size is not whole blocks).
pub fn byte_size(ty: u32, n: u64) -> Option<usize> {
    let n = usize::try_from(n).ok()?;
    let (values, bytes) = layout(ty)?;
    n.is_multiple_of(values).then_some(n / values)?.checked_mul(bytes)
}

/// IEEE 754 half precision to f32, exactly.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        // Subnormal: scale the mantissa by 2^-24.
        (0, m) => {
            let v = m as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn half(b: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[0], b[1]]))
}

/// The `n` values of `bytes` (exactly [`byte_size`] long) as f32.
pub fn to_f32(ty: u32, bytes: &[u8], n: usize) -> Option<Vec<f32>> {
    let mut out = Vec::with_capacity(n);
    match ty {
        F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4"))),
        ),
        F16 => out.extend(bytes.chunks_exact(2).map(half)),
        BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)),
        ),
        // Low nibbles are the block's values 0–15, high nibbles 16–31.
        Q4_0 => {
            for b in bytes.chunks_exact(18) {
                let d = half(b);
                let q = &b[2..];
                out.extend(q.iter().map(|&x| d * ((x & 0x0f) as f32 - 8.0)));
                out.extend(q.iter().map(|&x| d * ((x >> 4) as f32 - 8.0)));
            }
        }
        Q4_1 => {
            for b in bytes.chunks_exact(20) {
                let (d, m) = (half(b), half(&b[2..]));
                let q = &b[4..];
                out.extend(q.iter().map(|&x| d * (x & 0x0f) as f32 + m));
                out.extend(q.iter().map(|&x| d * (x >> 4) as f32 + m));
            }
        }
        Q5_0 => {
            for b in bytes.chunks_exact(22) {
                let d = half(b);
                let high = u32::from_le_bytes(b[2..6].try_into().expect("4"));
                let q = &b[6..];
                // Value k's low nibble is byte k % 16's (low for k < 16, high after); its fifth
                // bit is bit k of `high`.
                out.extend((0..32).map(|k| {
                    let low = (q[k % 16] >> (4 * (k / 16))) & 0x0f;
                    let fifth = ((high >> k) & 1) as u8;
                    d * (((low | (fifth << 4)) as i8 - 16) as f32)
                }));
            }
        }
        Q8_0 => {
            for b in bytes.chunks_exact(34) {
                let d = half(b);
                out.extend(b[2..].iter().map(|&x| d * (x as i8) as f32));
            }
        }
        Q4_K => {
            for b in bytes.chunks_exact(144) {
                let (d, dmin) = (half(b), half(&b[2..]));
                let (scales, q) = (&b[4..16], &b[16..]);
                // Eight 6-bit scales and mins: the first four in the low six bits of bytes 0-3
                // (scales) and 4-7 (mins), the last four from bytes 8-11's nibbles and the top
                // two bits of bytes 0-7.
                for s in 0..8 {
                    let (sc, m) = if s < 4 {
                        (scales[s] & 0x3f, scales[s + 4] & 0x3f)
                    } else {
                        (
                            (scales[s + 4] & 0x0f) | ((scales[s - 4] >> 2) & 0x30),
                            (scales[s + 4] >> 4) | ((scales[s] >> 2) & 0x30),
                        )
                    };
                    let (scale, min) = (d * sc as f32, dmin * m as f32);
                    // Sub-block s is the low (even s) or high nibbles of bytes 32 (s / 2) ...
                    let chunk = &q[32 * (s / 2)..32 * (s / 2 + 1)];
                    out.extend(
                        chunk
                            .iter()
                            .map(|&x| scale * ((x >> (4 * (s % 2))) & 0x0f) as f32 - min),
                    );
                }
            }
        }
        Q6_K => {
            for b in bytes.chunks_exact(210) {
                let (low, high, scales) = (&b[..128], &b[128..192], &b[192..208]);
                let d = half(&b[208..]);
                // Each half of 128 values takes 64 bytes of nibbles (low nibbles first) and 32
                // bytes of bit pairs (shifts 0, 2, 4, 6 for its four runs of 32).
                for (sub, &sc) in scales.iter().enumerate() {
                    let scale = d * (sc as i8) as f32;
                    out.extend((16 * sub..16 * (sub + 1)).map(|p| {
                        let (half_, r) = (p / 128, p % 128);
                        let l = (low[64 * half_ + r % 64] >> (4 * (r / 64))) & 0x0f;
                        let h = (high[32 * half_ + r % 32] >> (2 * (r / 32))) & 0x03;
                        scale * (((l | (h << 4)) as i8 - 32) as f32)
                    }));
                }
            }
        }
        _ => return None,
    }
    (out.len() == n).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn quantised_blocks_follow_llama_cpp() {
        // Q4_1: d = 0.5, m = -1; nibble k of byte k is k (low) and 15 - k (high).
        let mut block = vec![0x00, 0x38, 0x00, 0xbc];
        block.extend((0..16u8).map(|k| k | ((15 - k) << 4)));
        let v = to_f32(Q4_1, &block, 32).unwrap();
        assert_eq!((v[0], v[3], v[16], v[31]), (-1.0, 0.5, 6.5, -1.0));
        // Q8_0: d = 2, values -3 and 5.
        let mut block = vec![0x00, 0x40];
        block.extend([(-3i8) as u8, 5].iter().chain([0u8; 30].iter()));
        let v = to_f32(Q8_0, &block, 32).unwrap();
        assert_eq!((v[0], v[1], v[2]), (-6.0, 10.0, 0.0));
        // Q4_0: d = 1, nibble 0 is -8 and 15 is 7.
        let mut block = vec![0x00, 0x3c];
        block.extend([0xf0u8; 16]);
        let v = to_f32(Q4_0, &block, 32).unwrap();
        assert_eq!((v[0], v[16]), (-8.0, 7.0));
        assert_eq!(byte_size(Q4_1, 33), None, "a partial block");
        assert_eq!(byte_size(Q4_K, 32), None, "a partial super-block");
        assert_eq!(byte_size(Q6_K, 512), Some(420));
        assert_eq!(byte_size(13, 256), None, "Q5_K is not read");
    }
}
