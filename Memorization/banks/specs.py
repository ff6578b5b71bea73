"""The memory banks, each defined once (SPEC sections 4 to 6).

A bank reads one **stream** of features. Each clip of a stream holds **items**: the objects of
the clip in the local stream (lf, (n, c', d, 28, 28); the empty-clip placeholder holds none), the
clip itself in the global stream (gf, (1, C, d)). A ``BankSpec`` says how the items of a stage
("train": memorising, "test": scoring) become patch rows, the same number of rows per item,
item-major. Everything else is common to every bank: a training video's patches go through the
greedy coreset; an item's score is its farthest row's nearest-neighbour distance to the bank to
the power n; a clip's score is the max over its items (0 without any); every clip score covers
its d frames. The evaluation, the results files, the figures and the table runner iterate over
the specs, so a new bank is one more ``BankSpec``, registered (``register_bank``): a run selects
registered banks by name (``MethodConfig.banks``, ``--banks``), each with its ``--<name>_f_coreset``,
and a model file names its banks. The published three are registered here.

The command lines read the registry before --help, so this module imports no torch: what needs it
imports it when called.
"""
from dataclasses import dataclass
from typing import Callable

from extra.errors import VPCError
from extra.evaluation.fusion import FUSED_TITLES
from Memorization.options import PUBLISHED_BANKS, compression_record, precision_record, temporal_tags

FEATURES_REMEDY = ("run Memorization/run.py with the same flags (and --save_feature=True) to extract them; "
                   "it needs the object batches of ObjectDetection/run.py")


@dataclass(frozen=True)
class Stream:
    """A kind of features: where its files go and what their content depends on."""

    name: str                    # "local" | "global"
    directory: Callable          # (WorkDir, method) -> the folder of its features and banks
    record: Callable             # method -> what the features depend on beyond dataset, d and backbone
    clips_per_call: int = None   # clips scored per nearest-neighbour search (None: a whole video)

    @property
    def kind(self):
        from extra.store import FileKind

        return FileKind(f"{self.name} features", FEATURES_REMEDY)

    def path(self, work, method, split, video_name):
        return work.video_features(self.directory(work, method), split, video_name)


STREAMS = {
    # Local features of one video: bounded memory per search, 32 clips of objects at a time.
    "local": Stream("local", lambda work, m: work.local_dir(m.local_folder),
                    lambda m: {"cnl_pool": m.cnl_pool, **compression_record(m.compression, m.compression_seed)},
                    clips_per_call=32),
    "global": Stream("global", lambda work, m: work.global_dir(m.global_folder),
                     lambda m: {"normalization": m.normalization}),
}


@dataclass(frozen=True)
class BankSpec:
    name: str
    stream: str                  # a key of STREAMS
    patches: Callable            # (items, method, stage) -> rows, item-major
    rows_per_item: Callable      # (method, grid side of the items) -> rows each item gives
    record: Callable = lambda method: {}      # settings of this bank beyond its stream's
    tags: Callable = lambda method: []        # file-name tags of the switches it depends on
    title: str = ""
    colour: str = "tab:gray"                   # its line in the figures

    def file_tags(self, method):
        """Tags of a bank's file: its own switches, then the memorising order's."""
        order = [] if method.bank_order == "subsample_then_concat" else ["concatfirst"]
        return self.tags(method) + order


def _patches():
    from Memorization.banks import patches   # torch: once patches are cut, not when the registry is read

    return patches


SPATIAL = BankSpec(
    "spatial", "local",
    patches=lambda lf, m, stage: _patches().spatial_patches(lf, m.pool_for_sm),
    rows_per_item=lambda m, side: (side // m.pool_for_sm) ** 2,
    record=lambda m: {"pool_for_sm": m.pool_for_sm},
    title="spatial", colour="tab:blue")


TEMPORAL = BankSpec(
    "temporal", "local",
    patches=lambda lf, m, stage: _patches().temporal_patches(
        lf, _patches().temporal_pooling(stage, m.temporal_pooling), m.absolute_difference),
    rows_per_item=lambda m, side: m.consecutive - 1,
    record=lambda m: {"temporal_pooling": m.temporal_pooling, "absolute_difference": m.absolute_difference},
    tags=temporal_tags, title="temporal", colour="tab:orange")


HIGHLEVEL = BankSpec(
    "highlevel", "global",
    patches=lambda gf, m, stage: _patches().highlevel_patches(gf),
    rows_per_item=lambda m, side: m.consecutive,
    title="global (high-level)", colour="tab:green")


BANKS = {}      # name -> BankSpec: the banks a run can select, in the order a run's banks take


def register_bank(spec):
    """Make ``spec`` selectable by name (--banks, MethodConfig.banks, model files); returns it."""
    if BANKS.get(spec.name, spec) is not spec:
        raise VPCError(f"a memory bank named {spec.name!r} is already registered")
    BANKS[spec.name] = spec
    return spec


def specs_of(names):
    """The registered specs of bank ``names``, in their order."""
    unknown = [name for name in names if name not in BANKS]
    if unknown:
        raise VPCError(f"no memory bank named {unknown[0]!r} is registered (registered: {', '.join(BANKS)}); "
                       f"define its BankSpec and register it (Memorization.banks.specs.register_bank)")
    return tuple(BANKS[name] for name in names)


for _spec in (SPATIAL, TEMPORAL, HIGHLEVEL):
    register_bank(_spec)
PUBLISHED = specs_of(PUBLISHED_BANKS)      # the paper's banks: the default of every run


def stream_titles(specs):
    """How reports and figures name the banks' streams and the fused ones."""
    return {**{spec.name: spec.title for spec in specs}, **FUSED_TITLES}


def streams_of(specs):
    """The streams the banks read, in STREAMS order."""
    return tuple(name for name in STREAMS if any(spec.stream == name for spec in specs))


def bank_kind(spec):
    from extra.store import FileKind

    return FileKind(f"{spec.name} memory bank", "run Memorization/run.py with the same flags (and "
                                                "--save_memory=True) to build it")


def bank_record(spec, method, backbone):
    """The settings a memory bank depends on (recorded beside it); ``backbone``: its record fields."""
    return {"dataset": method.dataset, "consecutive": method.consecutive, "ratio": float(method.ratios[spec.name]),
            "random_projection": method.random_projection, "eps_coreset": method.eps_coreset,
            "bank_order": method.bank_order, "seed": method.seed, **backbone, **precision_record(method.precision),
            **STREAMS[spec.stream].record(method), **spec.record(method)}


def bank_path(work, spec, method):
    """A bank's file: the authors' name for the published settings, a distinct one for the switches."""
    name = "_".join([f"{spec.name}_memory_bank_{float(method.ratios[spec.name])}", *spec.file_tags(method)])
    return STREAMS[spec.stream].directory(work, method) / f"{name}.pt"


def stack_items(clips):
    """The items of some clips in one tensor (None when there are none), and the item count per clip."""
    import torch

    from extra.store import is_empty_clip

    clips = [torch.as_tensor(clip) for clip in clips]
    present = [clip for clip in clips if not is_empty_clip(clip)]
    counts = [0 if is_empty_clip(clip) else clip.shape[0] for clip in clips]
    return (torch.cat(present) if present else None), counts


def training_patches(spec, clips, method):
    """The memorising-stage patches of one video's clips for ``spec`` ((0, 0) when it has no item)."""
    import torch

    items, _ = stack_items(clips)
    return torch.zeros(0, 0) if items is None else spec.patches(items, method, "train")
