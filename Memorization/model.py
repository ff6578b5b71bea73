"""VideoPatchCore as one object: ``fit`` memorises normal video, ``score`` measures how far new
video lies from it, ``save`` / ``load`` keep it in one self-contained file.

    model = VideoPatchCore(method).fit(training_features)    # an iterable of VideoFeatures
    frames = model.score(test_features)                       # per-frame scores of every bank
    model.save("avenue.vpc"); VideoPatchCore.load("avenue.vpc")

The banks are the ``BankSpec``s of Memorization.banks.specs (the method's, by default the published
three; any registered ones). A model
file is a safetensors file: the banks as tensors, and as JSON the method's configuration, the
banks' names, the identity of the encoder that made their features (architecture, random or not,
SHA-256 of its weights), a calibration slot and, when the banks were fitted with their videos'
origins, the provenance of every bank row (Memorization.banks.origins; a file without it loads with
``provenance`` None). Loading it executes no code and needs no training data.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from extra.config import PRESETS
from extra.device import default_device
from extra.errors import VPCError
from extra.evaluation.fusion import FusionWeights, calibrated_streams, stream_scores
from extra.evaluation.scores import VideoScores
from extra.io import atomic_path
from extra.store import FileKind, load_tensor, save_tensor
from Memorization.banks.coreset import Coreset, build_memory_bank
from Memorization.banks.origins import (
    Provenance, bank_items, is_whole_clip, items_per_clip, load_origins, row_items, save_origins,
)
from Memorization.banks.scores import score_clips
from Memorization.banks.specs import BANKS, bank_kind, bank_path, bank_record, specs_of, training_patches
from Memorization.options import BANK_ORDERS, MethodConfig, method_record

MODEL_FORMAT = "videopatchcore"
MODEL_VERSION = 1
KEEP_ALL = Coreset(1.0)      # concatenation in video order: every row of every video kept
MODEL_KIND = FileKind("model file", "make it again with fit.py, or Memorization/run.py (it writes <work_dir>/models/)")


@dataclass
class VideoFeatures:
    """One video's features: per stream ("local", "global") the array of each clip, in clip order
    (local: lf or the empty-clip placeholder; global: gf)."""

    clips: dict


@dataclass
class VideoScore:
    """Per-frame scores of one video: raw, per bank; the fused streams; and, with a label-free
    calibration, the alarm of each frame (total above the calibrated threshold), else None.

    With a calibration the fused streams are its normalised, weighted and smoothed scores, comparable
    across videos; without one, each is min-maxed over the video at the preset's fixed weights."""

    banks: dict
    fused: dict
    alarms: object = None


def bank_coreset(spec, method):
    """How ``spec``'s bank is subsampled with ``method``'s settings."""
    return Coreset(method.ratios[spec.name], method.bank_order, method.random_projection, method.eps_coreset,
                   method.seed)


def announce_bank(spec, method, how=""):
    print(f"memorising {spec.name} patches (coreset ratio {method.ratios[spec.name]}, {method.bank_order}{how})",
          flush=True)


def memorise(spec, per_video_patches, method, device=None):
    """One memory bank (on the CPU) from its per-video training patches, with the method's ratio and
    order, and per bank row its (video number, row of that video's patches)."""
    announce_bank(spec, method)
    bank, rows = build_memory_bank(per_video_patches, bank_coreset(spec, method), device, with_rows=True)
    return bank.cpu(), rows


def video_coresets(features, specs, method, device=None):
    """Each bank's coreset of one training video's features (VideoFeatures), on the CPU, with the (clip,
    object) of each of its rows: the per-video step of the published order, "subsample_then_concat"
    (empty where the video gives no patch)."""
    coresets = {}
    for spec in specs:
        clips = features.clips[spec.stream]
        patches = training_patches(spec, clips, method)
        if not len(patches):
            coresets[spec.name] = patches, torch.zeros(0, 2, dtype=torch.long)
            continue
        coreset, rows = build_memory_bank([patches], bank_coreset(spec, method), device, progress=False,
                                          with_rows=True)
        coresets[spec.name] = coreset.cpu(), row_items(rows[:, 1], len(patches), items_per_clip(clips),
                                                       is_whole_clip(spec))
    return coresets


def default_weights(method):
    """Fusion weights of a model without calibration: the preset's fixed weights (neutral 0.5 / 0.5)."""
    settings = PRESETS.get(method.dataset, PRESETS["general"])
    return FusionWeights.chosen(settings.fixed_a1, settings.fixed_b1, settings.fixed_sigma)


def sort_metadata(path):
    """Rewrite the header of the safetensors file at ``path`` with its metadata keys sorted, so that the
    same model gives the same bytes: safetensors writes them in a random order on every run (its issue
    #584). The same entries take no more room, and the header keeps its length: nothing else moves."""
    with open(path, "r+b") as file:
        size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(size))
        metadata = dict(sorted(header.pop("__metadata__", {}).items()))
        text = json.dumps({"__metadata__": metadata, **header}, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:
            raise RuntimeError(f"{path}: the sorted safetensors header is longer than the one written")   # a bug
        file.seek(8)
        file.write(text.ljust(size))


class VideoPatchCore:
    """The memory banks of ``specs`` (default: the method's banks) built with ``method``, and what is
    needed to use them."""

    def __init__(self, method, specs=None, banks=None, backbone=None, calibration=None, provenance=None):
        self.method = method
        self.specs = specs_of(method.banks) if specs is None else tuple(specs)
        self.banks = dict(banks or {})            # bank name -> (M, D) tensor on the CPU
        self.backbone = dict(backbone or {})      # identity of the encoder behind the banks' features
        self.calibration = dict(calibration or {})
        self.detection = None       # own footage: the detector and weights fit.py found the objects with
        self.provenance = provenance      # Memorization.banks.origins.Provenance of the banks' rows, or None
        self._on_device = (None, {})

    @property
    def streams(self):
        """{bank: the stream it reads}, in bank order (what the evaluation needs of the banks)."""
        return {spec.name: spec.stream for spec in self.specs}

    # --- memorising ---------------------------------------------------------------------------------

    def fit(self, videos, device=None, origins=None):
        """Build every bank from the training videos' features (VideoFeatures, in video order). Given
        each video's ``origins`` (Memorization.banks.origins.VideoOrigin, in the same order), the model
        keeps the provenance of every bank row; else it has none."""
        per_bank = {spec.name: [] for spec in self.specs}
        counts = {stream: [] for stream in self.streams.values()}       # per stream, each video's items per clip
        for features in videos:
            for spec in self.specs:
                per_bank[spec.name].append(training_patches(spec, features.clips[spec.stream], self.method))
            for stream in counts:
                counts[stream].append(items_per_clip(features.clips[stream]))
        items = {}
        for spec in self.specs:
            patches = per_bank.pop(spec.name)
            self.banks[spec.name], rows = memorise(spec, patches, self.method, device)
            items[spec.name] = bank_items(rows, [len(p) for p in patches], counts[spec.stream], is_whole_clip(spec))
        return self._fitted(items, origins)

    def fit_coresets(self, per_video, origins=None):
        """Every bank from the training videos' coresets drawn elsewhere (``video_coresets``, in video
        order), concatenated as ``fit`` does in the published order: the same bank, to the bit, and with
        ``origins`` the same provenance."""
        if self.method.bank_order != BANK_ORDERS[0]:
            raise RuntimeError(f"per-video coresets make no {self.method.bank_order} bank")   # a bug, not bad input
        items = {}
        for spec in self.specs:
            announce_bank(spec, self.method, ", per-video coresets drawn apart")
            self.banks[spec.name] = build_memory_bank([coresets[spec.name][0] for coresets in per_video], KEEP_ALL,
                                                      progress=False)
            items[spec.name] = torch.cat([torch.cat([torch.full((len(rows), 1), number), rows], dim=1)
                                          for number, rows in enumerate(c[spec.name][1] for c in per_video)])
        return self._fitted(items, origins)

    def _fitted(self, items, origins):
        """The model once its banks are built: their provenance from each row's (video, clip, object)
        ``items`` and the videos' ``origins`` (none without them)."""
        self.provenance = None if origins is None else Provenance.of(items, origins)
        self._on_device = (None, {})
        return self

    # --- scoring ------------------------------------------------------------------------------------

    def banks_on(self, device):
        """The banks moved to ``device`` once and kept there."""
        if self._on_device[0] != device:
            self._on_device = (device, {name: bank.to(device) for name, bank in self.banks.items()})
        return self._on_device[1]

    def score_banks(self, features, device=None, item_scores=None):
        """Raw per-frame scores of one video for every bank, {name: float64 numpy vector}. Given a
        dict, ``item_scores`` receives each bank's per-item scores too ({name: list, clip order})."""
        device = device or default_device()
        missing = [spec.name for spec in self.specs if spec.name not in self.banks]
        if missing:
            raise VPCError(f"the model has no {missing[0]} memory bank: fit it or load a model file first")
        banks = self.banks_on(device)
        frames = {}
        for spec in self.specs:
            items = None if item_scores is None else item_scores.setdefault(spec.name, [])
            frames[spec.name] = score_clips(spec, features.clips[spec.stream], banks[spec.name], self.method,
                                            device, items)
        return frames

    def score(self, features, device=None, name="video"):
        """Per-frame scores of one video (VideoFeatures): every bank, the fused streams, the alarms."""
        banks = self.score_banks(features, device)
        single = VideoScores([name], {bank: [x] for bank, x in banks.items()}, self.streams)
        if not self.calibration:
            return VideoScore(banks, stream_scores(single, default_weights(self.method)))
        fused = calibrated_streams(single, self.calibration)
        return VideoScore(banks, fused, fused["total"] > self.calibration["threshold"] if "total" in fused else None)

    # --- files --------------------------------------------------------------------------------------

    def save(self, path):
        """One self-contained file (safetensors: tensors and JSON), written atomically."""
        from safetensors.torch import save_file

        metadata = {"format": MODEL_FORMAT, "version": str(MODEL_VERSION),
                    "method": json.dumps(method_record(self.method), sort_keys=True),
                    "banks": json.dumps([spec.name for spec in self.specs]),
                    "backbone": json.dumps(self.backbone, sort_keys=True),
                    "calibration": json.dumps(self.calibration, sort_keys=True)}
        if self.detection is not None:      # a dataset run's model records none: its files stay as they were
            metadata["detection"] = json.dumps(self.detection, sort_keys=True)
        tensors = {f"bank.{spec.name}": self.banks[spec.name].detach().cpu().contiguous() for spec in self.specs}
        if self.provenance is not None:
            metadata["provenance"] = self.provenance.metadata()
            tensors.update(self.provenance.tensors())
        with atomic_path(path, needed_bytes=sum(t.nbytes for t in tensors.values())) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
            sort_metadata(tmp)
        return Path(path)

    @classmethod
    def load(cls, path, specs=None):
        """A model saved by ``save``; ``specs`` (default: the registered ones) must define every bank the
        file holds."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise VPCError(f"model file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as opened:
                metadata = opened.metadata() or {}
                tensors = {key: opened.get_tensor(key) for key in opened.keys()}
        except Exception as error:      # every parse failure means the file is not a whole model file
            raise VPCError(f"{path} is not a readable model file (damaged, cut short, or another kind of "
                           f"file: {' '.join(str(error).split())[:120]}); {MODEL_KIND.remedy}") from None
        if metadata.get("format") != MODEL_FORMAT:
            raise VPCError(f"{path} is not a VideoPatchCore model file; {MODEL_KIND.remedy}")
        if metadata.get("version") != str(MODEL_VERSION):
            raise VPCError(f"{path} was written by another version of VideoPatchCore (model format "
                           f"{metadata.get('version')}, this one reads {MODEL_VERSION}); {MODEL_KIND.remedy}")
        try:
            method = MethodConfig(**json.loads(metadata["method"]))
            names = json.loads(metadata["banks"])
            backbone, calibration = json.loads(metadata["backbone"]), json.loads(metadata["calibration"])
            detection = json.loads(metadata.get("detection", "null"))
        except (KeyError, TypeError, ValueError) as error:
            raise VPCError(f"{path} is damaged (its settings cannot be read: {error}); {MODEL_KIND.remedy}") from None
        known = {spec.name: spec for spec in (BANKS.values() if specs is None else specs)}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise VPCError(f"{path} holds a memory bank {unknown[0]!r} that no bank definition describes (register "
                           f"its BankSpec: Memorization.banks.specs.register_bank)")
        banks = {}
        for name in names:
            bank = tensors.get(f"bank.{name}")
            if bank is None or bank.ndim != 2:
                raise VPCError(f"{path} is damaged (its {name} memory bank is missing or not 2-D); "
                               f"{MODEL_KIND.remedy}")
            banks[name] = bank
        try:
            provenance = Provenance.read(metadata.get("provenance"), tensors, banks)
        except ValueError as error:
            raise VPCError(f"{path} is damaged ({error}); {MODEL_KIND.remedy}") from None
        model = cls(method, [known[name] for name in names], banks, backbone, calibration, provenance)
        model.detection = detection
        return model

    def save_bank_files(self, work, backbone_fields):
        """Each bank in the authors' layout (``bank_path``), with its settings record, and beside it the
        provenance of its rows where the model has it (Memorization.banks.origins.save_origins)."""
        for spec in self.specs:
            path = bank_path(work, spec, self.method)
            save_tensor(self.banks[spec.name], path, bank_record(spec, self.method, backbone_fields))
            if self.provenance is not None and spec.name in self.provenance.rows:
                save_origins(self.provenance, spec.name, self.banks[spec.name], path)

    @classmethod
    def from_bank_files(cls, work, method, backbone_fields, specs=None):
        """A model of the banks saved in the working directory (ours, or the authors' published ones),
        each checked against the settings this run would record, with the provenance kept beside them
        (none for the authors' files); ``specs``: default, the method's."""
        specs = specs_of(method.banks) if specs is None else specs
        paths = {spec.name: bank_path(work, spec, method) for spec in specs}
        banks = {spec.name: load_tensor(paths[spec.name], bank_kind(spec), bank_record(spec, method, backbone_fields))
                 for spec in specs}
        provenance = Provenance.joined([load_origins(name, bank, paths[name]) for name, bank in banks.items()])
        return cls(method, specs, banks, backbone_fields, provenance=provenance)

