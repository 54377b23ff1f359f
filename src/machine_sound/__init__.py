"""machine-sound: anomalous machine sound detection with spectrogram image classifiers."""
__version__ = "0.1.0"
