//! GGML tensor types to f32, as llama.cpp's reference dequantisation computes them.

const F32: u32 = 0;
const F16: u32 = 1;
const Q4_0: u32 = 2;
const Q4_1: u32 = 3;
const Q8_0: u32 = 8;
const BF16: u32 = 30;

/// Values per quantised block.
const BLOCK: usize = 32;

/// Bytes that `n` values of type `ty` take, or `None` for a type secvec cannot read (or a
/// quantised tensor whose size is not whole blocks).
pub fn byte_size(ty: u32, n: u64) -> Option<usize> {
    let n = usize::try_from(n).ok()?;
    let blocks = || (n % BLOCK == 0).then_some(n / BLOCK);
    match ty {
        F32 => n.checked_mul(4),
        F16 | BF16 => n.checked_mul(2),
        Q4_0 => blocks()?.checked_mul(2 + 16),
        Q4_1 => blocks()?.checked_mul(2 + 2 + 16),
        Q8_0 => blocks()?.checked_mul(2 + 32),
        _ => None,
    }
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
        Q8_0 => {
            for b in bytes.chunks_exact(34) {
                let d = half(b);
                out.extend(b[2..].iter().map(|&x| d * (x as i8) as f32));
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
        assert_eq!(byte_size(12, 32), None, "Q4_K is not read");
    }
}
