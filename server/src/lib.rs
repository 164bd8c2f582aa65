//! The volcast REST service (issue 4). For now it holds only the request-side validation it will
//! share with the trainer, proving that the server builds on the pure core without the data stack.

use volcast_training::candles::{Candle, CandleError, validate_candles};

/// Validates the candles of a request exactly as the trainer validates files.
///
/// # Errors
/// The first offending candle, with its index, field and rule.
pub fn validate_request_candles(candles: &[Candle]) -> Result<(), CandleError> {
    validate_candles(candles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use volcast_training::candles::CandleProblem;

    #[test]
    fn request_candles_follow_spec_rules() {
        let c = Candle {
            open_time: 0,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 1.0,
            quote_volume: 1.0,
        };
        assert!(validate_request_candles(&[c]).is_ok());
        let e = validate_request_candles(&[c, c]).unwrap_err();
        assert_eq!(e.problem, CandleProblem::Duplicate);
    }
}
