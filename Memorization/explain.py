"""Why one clip scores as it does: per bank, its highest-scoring item, that item's score, and the memory
bank row nearest the item's farthest patch row, with where that row came from (model.provenance).

One clip only: the nearest-neighbour search is run again on it with the rows' indices, cheap next to
the clip's features.
"""
from extra.device import default_device
from extra.errors import VPCError
from extra.evaluation.fusion import normalised
from Memorization.banks.scores import item_scores
from Memorization.banks.specs import stack_items


def explain_clip(model, features, calibration, device=None):
    """Per bank of ``model`` (a VideoPatchCore) with an item in the clip, one dict, the highest "score"
    first: {"bank", "item" (its object in the clip; 0 for a global bank), "score" (normalised as
    ``calibration`` normalises the bank: 1 is the top of its normal range), "raw" (distance ** power),
    "row" (the bank row nearest the item's farthest patch row), "nearest" (that row's origin,
    ``Provenance.origin``, or None)}. ``features``: VideoFeatures of one clip per stream."""
    if any(len(clips) != 1 for clips in features.clips.values()):
        counts = ", ".join(f"{len(clips)} {stream}" for stream, clips in features.clips.items())
        raise VPCError(f"explain_clip takes the features of one clip per stream, got {counts}")
    scales = (calibration or {}).get("normalisation", {})
    missing = [spec.name for spec in model.specs if spec.name not in scales]
    if missing:
        raise VPCError(f"the calibration has no normalisation of the {missing[0]} bank: explaining a clip needs the "
                       f"model's label-free calibration (make it again with fit.py)")
    device = device or default_device()
    banks = model.banks_on(device)
    explained = []
    for spec in model.specs:
        items, _ = stack_items(features.clips[spec.stream])
        if items is None:          # a clip without objects: nothing in it on an object bank
            continue
        scores, rows = item_scores(spec, items.to(device), banks[spec.name], model.method, return_index=True)
        item = int(scores.argmax())
        raw, row = float(scores[item]), int(rows[item])
        explained.append({"bank": spec.name, "item": item, "score": float(normalised(raw, scales[spec.name])),
                          "raw": raw, "row": row,
                          "nearest": None if model.provenance is None else model.provenance.origin(spec.name, row)})
    return sorted(explained, key=lambda entry: -entry["score"])
