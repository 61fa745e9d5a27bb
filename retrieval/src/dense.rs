//! Dense similarity: cosine of two embeddings, which for the L2-normalised rows an encoder
//! writes is their dot product.

/// Cosine similarity; 0 when either vector is zero.
pub fn cosine(x: &[f32], y: &[f32]) -> f64 {
    let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
    for (a, b) in x.iter().zip(y) {
        let (a, b) = (*a as f64, *b as f64);
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    if xx == 0.0 || yy == 0.0 {
        0.0
    } else {
        xy / (xx * yy).sqrt()
    }
}
