"""The Memorization stage's configuration: plain data, cheap to import.

``MethodConfig`` holds every hyperparameter the method's numbers depend on, resolved once from
extra/config.py and the flags (``Memorization.cli.resolve_run``) and passed whole: it is what a
model file stores. ``MemorizationRun`` adds where the run reads and writes and what it may reuse.
"""
from dataclasses import asdict, dataclass, field

from extra.cli import RunContext
from extra.evaluation.alarms import DEFAULT_FALSE_ALARM_RATE
from extra.evaluation.fusion import FusionWeights
from extra.workdir import WorkDir

# The paper's memory banks (Memorization.banks.specs defines them): what a run uses unless --banks says.
PUBLISHED_BANKS = ("spatial", "temporal", "highlevel")
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
# Nearest-neighbour search of the scores: exact (default), or a faiss index (Memorization.knn.search):
# flat (exact up to float32 rounding) or IVF (approximate; its error is measured and printed).
SEARCHES = ("exact", "faiss-flat", "faiss-ivf")
# The figures of a run (figures.py --figures; Memorization.paper.plots draws them).
FIGURES = ("scores", "objects", "tsne")
# How the encoder computes (Memorization.encoders.contract.compute_dtype): exactly as the published code
# (default), or in bfloat16 / float16 (faster, features within about 1 %; README, Speed). Everything after
# the encoder (features stored in float32, coresets, search) is the same for every precision.
PRECISIONS = ("exact", "bf16", "fp16")


@dataclass(frozen=True)
class MethodConfig:
    """Every effective hyperparameter of the method (SPEC sections 1 to 6); defaults: the paper's."""

    dataset: str                     # the preset the per-dataset defaults came from (extra/config.py)
    consecutive: int                 # d: frames per clip
    cnl_pool: int                    # c'
    pool_for_sm: int = 4             # p
    power_n: int = 1
    banks: tuple = PUBLISHED_BANKS   # the memory banks, names of registered BankSpecs (Memorization.banks.specs)
    ratios: dict = field(default_factory=lambda: dict.fromkeys(PUBLISHED_BANKS, 1.0))   # bank -> coreset ratio
    eps_coreset: float = 0.9
    random_projection: bool = False
    temporal_pooling: str = "mismatched"
    absolute_difference: bool = False
    bank_order: str = BANK_ORDERS[0]
    normalization: str = NORMALIZATIONS[0]
    compression: str = COMPRESSIONS[0]
    compression_seed: int = 0        # the "random" compression's channel draw
    seed: int = 0                    # coreset projection
    backbone: str = "RN101"          # encoder name (Memorization.encoders.registry), or a weights file
    random_weights: bool = False
    search: str = SEARCHES[0]       # scores' nearest-neighbour search (not the banks': coresets are exact)
    precision: str = PRECISIONS[0]   # the encoder's arithmetic: its features, banks and files are its own

    def __post_init__(self):
        object.__setattr__(self, "banks", tuple(self.banks))     # JSON gives a list back

    @property
    def local_folder(self):
        """Name of the l_features/<dataset>/ folder: c' for split pooling (the authors' path),
        c'_<compression> for the ablations, then _<precision> for a fast encoder, so their features and banks
        never meet the default's."""
        return local_folder(self.cnl_pool, self.compression, self.precision)

    @property
    def global_folder(self):
        """Name of the g_features/<dataset>/ folder: c' (the authors' path, although the global stream
        does not depend on c' nor on the compression), c'_<normalization> for CLIP's normalisation, then
        _<precision> for a fast encoder."""
        return "_".join([str(self.cnl_pool)] + [self.normalization] * (self.normalization != NORMALIZATIONS[0])
                        + precision_tags(self.precision))


def local_folder(cnl_pool, compression, precision=PRECISIONS[0]):
    return "_".join([str(cnl_pool)] + [compression] * (compression != COMPRESSIONS[0]) + precision_tags(precision))


def precision_tags(precision):
    """The name a fast encoder's files carry (none for the exact one, so its files keep the authors' names)."""
    return [] if precision == PRECISIONS[0] else [precision]


def precision_record(precision):
    """What feature files and banks record about the encoder's arithmetic: nothing when exact (so the
    authors' files and earlier ones still match), the precision otherwise."""
    return {} if precision == PRECISIONS[0] else {"precision": precision}


@dataclass(frozen=True)
class MemorizationRun:
    """One run of the stage: the method, where it runs, what it may reuse, the weights chosen in advance."""

    context: RunContext
    method: MethodConfig
    fixed: FusionWeights             # evaluation with weights chosen in advance
    save_feature: bool = True        # extract test features (false: the saved ones must exist)
    save_memory: bool = True         # build the memory banks (false: the saved ones must exist)
    overwrite: bool = False
    verify: bool = False             # read every reused file whole and check it
    label_free: bool = True          # calibrate on training videos only (Memorization.calibration)
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE   # the label-free alarm threshold's target on normal frames
    report: bool = False             # an HTML report per test video (Memorization.stage_report)

    @property
    def work(self):
        """The run's working directory (WORK_README.md), for its dataset."""
        return WorkDir(self.context.work_dir, self.method.dataset)


def compression_record(compression, seed):
    """What local features record about their compression: nothing for the published split
    pooling (so the authors' files and earlier ones still match), the mode (and draw) otherwise."""
    if compression == COMPRESSIONS[0]:
        return {}
    if compression == "random":
        return {"compression": compression, "compression_seed": seed}
    return {"compression": compression}


def run_tags(method):
    """Short names of the switches a run sets away from the published method, in a fixed order."""
    tags = []
    if method.compression != COMPRESSIONS[0]:
        tags.append(method.compression)
    if method.normalization != NORMALIZATIONS[0]:
        tags.append(f"{method.normalization}norm")
    tags += temporal_tags(method)
    if method.bank_order != BANK_ORDERS[0]:
        tags.append("concatfirst")
    if method.search != SEARCHES[0]:
        tags.append(method.search)
    return tags + precision_tags(method.precision)


def temporal_tags(method):
    """The tags of the temporal patches' switches."""
    tags = []
    if method.temporal_pooling != "mismatched":
        tags.append(f"{method.temporal_pooling}pool")
    if method.absolute_difference:
        tags.append("absdiff")
    return tags


def method_record(method):
    """The method as files record it (asdict): ``banks`` only where the run has other banks than the
    published three, ``precision`` only for a fast encoder, so the files of the published method stay
    as they were."""
    record = asdict(method)
    if method.banks == PUBLISHED_BANKS:
        del record["banks"]
    if method.precision == PRECISIONS[0]:
        del record["precision"]
    return record


def results_name(method):
    """Folder name of a run's results: the banks' ratios, then the switch tags (none by default)."""
    return "_".join([f"{bank}{float(method.ratios[bank])}" for bank in method.banks] + run_tags(method))


def results_folder(work, method):
    """Where a run's scores and results go (an extra.workdir.WorkDir and the run's method)."""
    return work.results(method.cnl_pool) / results_name(method)


def figures_folder(work, method):
    """Where the figures of a run go: beside no other run's."""
    return work.root / "figures" / work.dataset / str(method.cnl_pool) / results_name(method)
