"""Code shared by the ObjectDetection and Memorization stages."""
