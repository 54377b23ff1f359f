"""The built-in synthetic MIMII-like dataset: machine sound models (`machines.py`, on `signals.py`) and the
generator that writes them as a MIMII tree of WAV files (`generator.py`)."""
