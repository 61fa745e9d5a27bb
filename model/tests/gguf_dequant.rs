//! Every GGML type secvec reads dequantises to the `gguf` package's values, bit for bit in f32.

mod common;

use std::process::Command;

use secvec_model::gguf::dequant::{self, BF16, F16, Q4_0, Q4_1, Q4_K, Q5_0, Q6_K, Q8_0};

/// Random blocks of `ty` (as many as hold `n` values) whose f16 scales are finite: random bits
/// everywhere else, so that every nibble, bit pair and packed scale takes varied values.
fn random_blocks(ty: u32, n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut byte = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 56) as u8
    };
    let size = dequant::byte_size(ty, n as u64).unwrap();
    let mut data: Vec<u8> = (0..size).map(|_| byte()).collect();
    // Where each block keeps its f16 scales: clear the top exponent bit (finite, at most 2).
    let (block, halves): (usize, &[usize]) = match ty {
        Q4_0 | Q8_0 | Q5_0 => (size / (n / 32), &[0]),
        Q4_1 => (20, &[0, 2]),
        Q4_K => (144, &[0, 2]),
        Q6_K => (210, &[208]),
        _ => (size, &[]),
    };
    for start in (0..size).step_by(block) {
        for h in halves {
            data[start + h + 1] &= 0b1011_1111;
        }
    }
    data
}

#[test]
fn every_type_dequantises_as_the_gguf_package_does_bit_for_bit() {
    let Some(python) = common::peft_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let types = [
        ("F16", F16),
        ("BF16", BF16),
        ("Q4_0", Q4_0),
        ("Q4_1", Q4_1),
        ("Q5_0", Q5_0),
        ("Q8_0", Q8_0),
        ("Q4_K", Q4_K),
        ("Q6_K", Q6_K),
    ];
    let n = 1024;
    for (name, ty) in types {
        let mut data = random_blocks(ty, n, 7 + ty as u64);
        if matches!(ty, F16 | BF16) {
            // Finite halves only: NaN payloads need not survive a conversion.
            for pair in data.chunks_exact_mut(2) {
                pair[1] &= 0b1011_1111;
            }
        }
        let input = dir.path().join(format!("{name}.bin"));
        std::fs::write(&input, &data).unwrap();
        let output = dir.path().join(format!("{name}.f32"));
        let script = "import sys, numpy as np\nfrom gguf import quants, GGMLQuantizationType as T\n\
                      data = np.fromfile(sys.argv[1], dtype=np.uint8)\n\
                      quants.dequantize(data, T[sys.argv[3]]).astype(np.float32).tofile(sys.argv[2])";
        let out = Command::new(&python)
            .args(["-c", script])
            .args([&input, &output])
            .arg(name)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let theirs: Vec<u32> = std::fs::read(&output)
            .unwrap()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let ours: Vec<u32> = dequant::to_f32(ty, &data, n)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(theirs.len(), n, "{name}");
        let differ = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        assert_eq!(
            differ, 0,
            "{name}: {differ} of {n} values differ, the first at {first:?}"
        );
    }
}
