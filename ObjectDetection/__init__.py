"""Stage 1: detect objects on one key frame per clip and store their crops (SPEC section 2)."""
