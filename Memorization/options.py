"""The Memorization stage's options and their choices: plain data, cheap to import.

``run.py`` resolves the command line against these before any model code is imported, so a
mistyped flag or a missing folder is reported at once.
"""
from dataclasses import dataclass, field

BANKS = ("spatial", "temporal", "highlevel")
# Blocks of layer1..layer3 and stem width of CLIP's ResNets (the layer4 count plays no part here).
ARCHITECTURES = {
    "RN50": ((3, 4, 6), 64),
    "RN101": ((3, 4, 23), 64),
    "RN50x4": ((4, 6, 10), 80),
    "RN50x16": ((6, 8, 18), 96),
    "RN50x64": ((3, 15, 36), 128),
}
# Whole-frame input scaling: the published x / 127.5 - 1 on BGR, or CLIP's mean/std on RGB.
NORMALIZATIONS = ("published", "clip")
# Temporal patches are pooled over the 28 x 28 grid with "avg" when memorising ("train") and
# "max" at inference ("test") in the published code (SPEC 4, "mismatched pooling"); the other
# two modes are the Table 4 ablations.
TEMPORAL_POOLING = {
    "mismatched": {"train": "avg", "test": "max"},
    "avg": {"train": "avg", "test": "avg"},
    "max": {"train": "max", "test": "max"},
}
# A coreset per training video then concatenation (published), or one coreset of everything.
BANK_ORDERS = ("subsample_then_concat", "concat_then_subsample")


@dataclass(frozen=True)
class MemorizationOptions:
    """Everything the stage's results depend on, resolved from flags and extra/config.py."""

    cnl_pool: int
    pool_for_sm: int
    ratios: dict = field(default_factory=lambda: dict.fromkeys(BANKS, 1.0))   # bank -> coreset ratio
    eps_coreset: float = 0.9
    random_projection: bool = False
    temporal_pooling: str = "mismatched"
    absolute_difference: bool = False
    bank_order: str = BANK_ORDERS[0]
    normalization: str = NORMALIZATIONS[0]
    backbone: str = "RN101"         # architecture name, or a weights file
    random_weights: bool = False
    save_feature: bool = True
    save_memory: bool = True
    overwrite: bool = False
    seed: int = 0
    # Evaluation with weights chosen in advance: a1 (spatial vs temporal), b1 (local vs global).
    fixed_a1: float = 0.5
    fixed_b1: float = 0.5
    fixed_sigma: int = 0


def bank_record(bank, options, consecutive, dataset, backbone_fields):
    """The settings a memory bank depends on (recorded beside it)."""
    record = {"dataset": dataset, "consecutive": consecutive, "ratio": float(options.ratios[bank]),
              "random_projection": options.random_projection, "eps_coreset": options.eps_coreset,
              "bank_order": options.bank_order, "seed": options.seed, **backbone_fields}
    if bank == "highlevel":
        record["normalization"] = options.normalization
    else:
        record["cnl_pool"] = options.cnl_pool
    if bank == "spatial":
        record["pool_for_sm"] = options.pool_for_sm
    if bank == "temporal":
        record.update(temporal_pooling=options.temporal_pooling, absolute_difference=options.absolute_difference)
    return record
