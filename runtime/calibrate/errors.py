"""The one error calibration raises for its own reasons (the others are the model's: ManifestError,
SigningError)."""


class CalibrationError(ValueError):
    """Calibration impossible: too few usable frames, a bad output directory, a model it cannot adapt."""
