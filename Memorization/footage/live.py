"""Own footage, scoring clip by clip as the frames arrive (score.py, live sources included): raw bank
scores, the calibrated fused score without smoothing (no future frames), alarms above the
calibration's clip threshold.
"""
import time

import numpy as np

from extra.errors import VPCError, warn
from extra.evaluation.fusion import (
    GLOBAL_FUSION, LOCAL_FUSION, calibrated_local, calibrated_streams, clip_values, normalised, objects_fused,
    unsmoothed,
)
from extra.evaluation.scores import VideoScores
from extra.footage_outputs import ClipResult
from ObjectDetection.boxes import key_frame_offset
from ObjectDetection.options import YOLO as DEFAULT_DETECTOR
from Memorization.footage.clips import ClipFeatures
from Memorization.model import VideoFeatures


class FootageScorer:
    """Scores clips as they come with a calibrated model: raw bank scores, the calibrated fused score
    (unsmoothed: no future frames), alarms above the calibration's clip threshold."""

    def __init__(self, model, detector="yolov5", backbone=None, device=None, yolo_weights=None, raw=False):
        if not model.calibration.get("clip_threshold"):
            raise VPCError("the model file has no label-free calibration (made before it or with "
                           "--label_free=False): make it again with fit.py")
        if model.method.search != "exact":     # fit.py --search: said, never silently approximate
            warn(f"the model scores with the {model.method.search} search, not the exact one (README, Many "
                 f"machines; Memorization/run.py measures its error on a test set)")
        self.features = ClipFeatures(model, detector, backbone, device, yolo_weights)
        self.model, self.calibration = model, unsmoothed(model.calibration)
        self.streams = tuple(spec.name for spec in model.specs)
        self.consecutive = model.method.consecutive
        self.raw = raw      # bank columns as raw distances, not calibrated (1: the top of the normal range)

    @classmethod
    def from_file(cls, path, detector=None, precision=None, clip_weights=None, yolo_weights=None, raw=False):
        """The scorer of a model file, with the detector and weights fit.py recorded in it unless given
        (another detector than the recorded one is said); ``precision`` other than the model's re-makes
        its encoder so (said); its CLIP weights found by their hash (Memorization.encoders.loader)."""
        from Memorization.encoders.loader import model_backbone
        from Memorization.model import VideoPatchCore

        model = VideoPatchCore.load(path)
        recorded = model.detection or {}
        if detector is not None and recorded.get("detector") not in (None, detector):
            warn(f"--detector {detector} overrides the model's {recorded['detector']}, which fit.py found its "
                 f"normal objects with: scores and alarms may not mean what it calibrated")
        detector = detector or recorded.get("detector") or DEFAULT_DETECTOR
        if precision not in (None, model.method.precision):
            warn(f"--precision {precision} overrides the model's {model.method.precision}: its banks were made of "
                 f"{model.method.precision} features, so scores and alarms shift a little from what fit.py calibrated")
        backbone = model_backbone(model, precision=precision, clip_weights=clip_weights)
        return cls(model, detector, backbone, yolo_weights=yolo_weights or recorded.get("yolo_weights"), raw=raw)


    def score(self, source):
        """ClipResult of every clip of ``source`` (extra.sources.ClipReader), in order, as they are ready.
        A causally standardised high-level bank (fusion.causal_standardised) is standardised by the
        source's earlier clips, kept here: the same values as the whole video scored at once."""
        streams, scales = self.model.streams, self.calibration["normalisation"]
        earlier = {bank: [] for bank, scale in scales.items() if scale.get("causal")}   # the source's clip values
        for clip, lf, gf, boxes in self.features.clips(source):
            items, features = {}, VideoFeatures({"local": [lf], "global": [gf]})
            banks = self.model.score_banks(features, self.features.device, items)
            single = VideoScores(["clip"], {bank: [x] for bank, x in banks.items()}, streams)
            calibrated = calibrated_streams(single, self.calibration, earlier)
            for bank, values in earlier.items():
                values.extend(clip_values(normalised(banks[bank], scales[bank]), len(banks[bank])))
            fused = calibrated["total"]
            objects = calibrated_local(*(np.asarray(items[bank]) for bank in LOCAL_FUSION), self.calibration)
            columns = banks if self.raw else {bank: calibrated[bank] for bank in banks}
            yield ClipResult(clip, columns, fused, fused > self.calibration["clip_threshold"], boxes, objects,
                             time.perf_counter() - clip.arrived, self.calibration["clip_threshold"],
                             objects_fused(objects, calibrated[GLOBAL_FUSION][0], self.calibration),
                             features=features, key_frame=key_frame_offset(self.consecutive))

    def explain(self, result):
        """Why the clip of ``result`` (a ClipResult of ``score``) scores as it does: ``explain_clip``."""
        from Memorization.explain import explain_clip

        return explain_clip(self.model, result.features, self.calibration, self.features.device)
