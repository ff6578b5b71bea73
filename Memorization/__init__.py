"""Memorization stage: CLIP features of objects and frames, patch memory banks, anomaly scores."""
