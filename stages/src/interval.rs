//! The params of a bootstrap interval, shared by the kinds that report one (`score`, `margin`, `difference`, `trend`).

use secvec_stage::ParamError;

pub fn d_bootstrap() -> usize {
    1000
}

pub fn d_confidence() -> f64 {
    0.95
}

/// At least one resample, and a confidence level strictly between 0 and 1.
pub fn check(bootstrap: usize, confidence: f64) -> Result<(), ParamError> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(ParamError::new(
            "confidence",
            format!("{confidence} is not a confidence level; give more than 0 and less than 1, e.g. 0.95"),
        ));
    }
    if bootstrap == 0 {
        return Err(ParamError::new("bootstrap", "must be 1 or more resamples, e.g. 1000"));
    }
    Ok(())
}
