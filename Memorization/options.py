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
# Channel compression of the local features to c' channels: split pooling (published), or the
# Table 3 ablations, the first c' channels ("head") or c' channels drawn at random ("random").
COMPRESSIONS = ("split", "head", "random")


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
    compression: str = COMPRESSIONS[0]
    compression_seed: int = 0       # the "random" compression's channel draw
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

    @property
    def local_folder(self):
        return local_folder(self.cnl_pool, self.compression)

    @property
    def global_folder(self):
        return global_folder(self.cnl_pool, self.normalization)


def local_folder(cnl_pool, compression):
    """Name of the l_features/<dataset>/ folder: c' for split pooling (the authors' path),
    c'_<compression> for the ablations, so their features and banks never meet the default's."""
    return str(cnl_pool) if compression == COMPRESSIONS[0] else f"{cnl_pool}_{compression}"


def global_folder(cnl_pool, normalization):
    """Name of the g_features/<dataset>/ folder: c' (the authors' path, although the global stream
    does not depend on c' nor on the compression), c'_<normalization> for CLIP's normalisation."""
    return str(cnl_pool) if normalization == NORMALIZATIONS[0] else f"{cnl_pool}_{normalization}"


def compression_record(compression, seed):
    """What local features record about their compression: nothing for the published split
    pooling (so the authors' files and earlier ones still match), the mode (and draw) otherwise."""
    if compression == COMPRESSIONS[0]:
        return {}
    if compression == "random":
        return {"compression": compression, "compression_seed": seed}
    return {"compression": compression}


def ablation_tags(options, bank=None):
    """Short names of the ablation switches set away from the published method, in a fixed order.

    With ``bank``, only those that bank's file name needs: the ones it depends on that its folder
    (``local_folder`` / ``global_folder``) does not already tell.
    """
    tags = []
    if bank is None and options.compression != COMPRESSIONS[0]:
        tags.append(options.compression)
    if bank is None and options.normalization != NORMALIZATIONS[0]:
        tags.append(f"{options.normalization}norm")
    if bank in (None, "temporal"):
        if options.temporal_pooling != "mismatched":
            tags.append(f"{options.temporal_pooling}pool")
        if options.absolute_difference:
            tags.append("absdiff")
    if options.bank_order != BANK_ORDERS[0]:
        tags.append("concatfirst")
    return tags


def results_name(options):
    """Folder name of a run's results: the three ratios, then the ablation tags (none by default)."""
    return "_".join([f"{bank}{float(options.ratios[bank])}" for bank in BANKS] + ablation_tags(options))


def results_folder(work, options):
    """Where a run's scores and results go (an extra.workdir.WorkDir and the run's options)."""
    return work.results(options.cnl_pool) / results_name(options)


def figures_folder(work, options):
    """Where the figures of a run go: beside no other run's."""
    return work.root / "figures" / work.dataset / str(options.cnl_pool) / results_name(options)


def bank_record(bank, options, consecutive, dataset, backbone_fields):
    """The settings a memory bank depends on (recorded beside it)."""
    record = {"dataset": dataset, "consecutive": consecutive, "ratio": float(options.ratios[bank]),
              "random_projection": options.random_projection, "eps_coreset": options.eps_coreset,
              "bank_order": options.bank_order, "seed": options.seed, **backbone_fields}
    if bank == "highlevel":
        record["normalization"] = options.normalization
    else:
        record.update(cnl_pool=options.cnl_pool, **compression_record(options.compression, options.compression_seed))
    if bank == "spatial":
        record["pool_for_sm"] = options.pool_for_sm
    if bank == "temporal":
        record.update(temporal_pooling=options.temporal_pooling, absolute_difference=options.absolute_difference)
    return record
