"""Models (config group `model`): each owns the path from waveform to score (front end, backbone, head)."""
