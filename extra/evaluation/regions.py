"""Region- and track-based detection criteria, RBDC and TBDC (Ramachandra and Jones, "Street Scene:
A new dataset and evaluation protocol for video anomaly detection", WACV 2020), written from the
paper's definitions.

Inputs. A detection is a row [frame, xmin, ymin, xmax, ymax, score]. A ground-truth track is one
anomalous event, rows [frame, xmin, ymin, xmax, ymax]: its boxes, one per frame, are the
ground-truth regions. Frames are global indices, unique over all test videos (callers offset each
video's frames). Boxes are in pixels, area = (xmax - xmin) * (ymax - ymin), IoU = intersection / union.

Counting at a score threshold t, the positive detections being those with score >= t:
- a positive detection is a true positive when its IoU with some ground-truth region of its frame
  is >= 0.1 (one true positive however many regions it overlaps), otherwise a false positive;
- a region is detected when a positive detection of its frame has IoU >= 0.1 with it (counted once
  however many detections do); RBDR = detected regions / all regions;
- a track is detected when at least 10 % of its regions are; TBDR = detected tracks / all tracks;
- FPR = false-positive detections / number of test frames (normal frames included), the
  false positives per frame; it is not bounded by 1.

Curves and areas. Both conventions of ``CONVENTIONS`` make the counts above; they differ in which
thresholds make the curve and how the area is closed at FPR 1 (both range over FPR 0 to 1):
- "georgescu", the default, as the script most published RBDC/TBDC tables use (Georgescu et al.,
  evaluation/compute_tbdc_rbdc.py of github.com/lilygeorgescu/AED): a point (0, 0), then one point
  per detection, taken from the highest score down (tied scores in input order: the script's sort is
  stable), so a true positive is a vertical step and a false positive a flat one. The points with
  FPR <= 1 are kept; when the last of them is below 1 the curve goes on flat with its last rates to
  FPR 1. The trapezoid rule along the points in that order gives the area. FPR moves in steps of
  1 / n_frames, so a curve that goes past 1 has a point exactly at 1 and nothing is interpolated.
- "ssvad", as py-ssvad-metrics (github.com/qlue-dev/py-ssvad-metrics, ssvad_metrics/criteria.py):
  the 103 thresholds np.linspace(1.01, -0.01, 103), so scores must lie in [0, 1]; the points with
  FPR <= 1, sorted by FPR, and the trapezoid rule, with no point added at FPR 1: a curve that ends
  at FPR 0.3 has area only up to 0.3. Scores within one 0.01 step enter together, a diagonal.
RBDC and TBDC are fractions in [0, 1] (the paper prints percentages). Both scripts divide the false
positives by every frame of the test set, normal ones included, so callers pass all test frames as
``n_frames``, those no clip covers too. Not reproduced: the Georgescu script's IoU counts inclusive
pixels (+1 on each side), and the newest py-ssvad-metrics matches connected components of a
rasterised score map instead of boxes; the counts here follow the paper's box definitions above.

Ground truth comes from one JSON file of tracks per test video (``load_region_tracks``) or from
per-frame pixel masks, which Avenue and ShanghaiTech publish (``tracks_from_masks``,
``load_mask_tracks``).
"""
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from extra.datasets import sorted_naturally
from extra.errors import VPCError

IOU_MATCH = 0.1     # IoU a detection needs with a region to detect it (also links mask boxes)


TRACK_PERCENT = 10  # percentage of a track's regions to detect for the track to count as detected


MASK_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


TRACKS_FORMAT = '{"tracks": [[[frame, xmin, ymin, xmax, ymax], ...], ...]}'


CONVENTIONS = {     # name -> how its curve and area are made (module docstring)
    "georgescu": "one threshold per detection, flat to 1 false positive per frame (Georgescu et al.'s script)",
    "ssvad": "103 fixed thresholds 1.01, 1.00, ..., -0.01, no extension to 1 false positive per frame "
             "(py-ssvad-metrics)",
}


DEFAULT_CONVENTION = "georgescu"


SSVAD_THRESHOLDS = np.linspace(1.01, -0.01, 103)  # py-ssvad-metrics' call, so the same floats


@dataclass(frozen=True)
class RegionCurves:
    """One point per threshold: thresholds[0] is +inf (no detection), then the distinct scores, high to
    low, or, per detection, every detection's score in sweep order (tied ones in input order)."""
    fpr: np.ndarray
    rbdr: np.ndarray
    tbdr: np.ndarray
    thresholds: np.ndarray


def _iou(a, b):
    """IoU of boxes broadcast over the leading axes (last axis xmin, ymin, xmax, ymax); 0 for an empty union."""
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area = lambda box: (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])  # noqa: E731
    union = area(a) + area(b) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_iou(a, b):
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4): an (n, m) array."""
    a, b = np.asarray(a, dtype=float).reshape(-1, 4), np.asarray(b, dtype=float).reshape(-1, 4)
    return _iou(a[:, None], b[None])


def _rows(array, width, what):
    """``array`` as a float (n, width) array; an empty one may come in any shape."""
    array = np.asarray(array, dtype=float)
    if array.size == 0:
        array = array.reshape(0, width)
    if array.ndim != 2 or array.shape[1] != width:
        raise VPCError(f"{what} must be an array of shape (n, {width}), got {array.shape}")
    return array


def region_curves(detections, tracks, n_frames, per_detection=False):
    """FPR, RBDR and TBDR at +inf and at every distinct detection score, or with ``per_detection`` after
    each detection in turn (see the module docstring).

    ``detections``: (k, 6) rows [frame, xmin, ymin, xmax, ymax, score]; ``tracks``: list of (r, 5)
    rows [frame, xmin, ymin, xmax, ymax], r >= 1; ``n_frames``: number of test frames.
    """
    det = _rows(detections, 6, "detections")
    tracks = [_rows(track, 5, "a ground-truth track") for track in tracks]
    if not tracks or not all(len(track) for track in tracks):
        raise VPCError("RBDC/TBDC need at least one ground-truth track and no empty track")
    if n_frames <= 0:
        raise VPCError(f"RBDC/TBDC need a positive number of test frames, got {n_frames}")
    if not np.isfinite(det[:, 5]).all():
        raise VPCError("detection scores must be finite")
    det = det[np.argsort(-det[:, 5], kind="stable")]
    scores = det[:, 5]
    new = np.ones(len(det), dtype=bool)
    if not per_detection:
        new[1:] = scores[1:] != scores[:-1]
    group = np.cumsum(new) - 1  # index of the detection's threshold among the curve's thresholds
    n_groups = int(new.sum())

    # Pairs (detection, region of its frame): the regions sorted by frame, each detection's slice of them.
    regions = np.concatenate(tracks)
    by_frame = np.argsort(regions[:, 0], kind="stable")
    lo = np.searchsorted(regions[by_frame, 0], det[:, 0], "left")
    count = np.searchsorted(regions[by_frame, 0], det[:, 0], "right") - lo
    pair_det = np.repeat(np.arange(len(det)), count)
    pair_reg = by_frame[np.repeat(lo - (np.cumsum(count) - count), count) + np.arange(count.sum())]
    match = _iou(det[pair_det, 1:5], regions[pair_reg, 1:5]) >= IOU_MATCH
    pair_det, pair_reg = pair_det[match], pair_reg[match]

    true_positive = np.zeros(len(det), dtype=bool)
    true_positive[pair_det] = True
    # Threshold index at which each region is first detected (n_groups: never).
    region_group = np.full(len(regions), n_groups)
    np.minimum.at(region_group, pair_reg, group[pair_det])
    # A track is detected once its ceil(10 % of r)-th earliest region is: sort regions per track by group.
    sizes = np.array([len(track) for track in tracks])
    track_of = np.repeat(np.arange(len(tracks)), sizes)
    ordered = region_group[np.lexsort((region_group, track_of))]
    needed = -(-sizes * TRACK_PERCENT // 100)  # ceil(10 % of r), in integers
    track_group = ordered[np.cumsum(sizes) - sizes + needed - 1]

    def cumulative(at_group, total):
        """Fraction reached at each threshold, the +inf one first; group n_groups never counts."""
        counts = np.bincount(at_group, minlength=n_groups + 1)[:n_groups]
        return np.concatenate([[0], np.cumsum(counts)]) / total

    return RegionCurves(fpr=cumulative(group[~true_positive], n_frames),
                        rbdr=cumulative(region_group, len(regions)),
                        tbdr=cumulative(track_group, len(tracks)),
                        thresholds=np.concatenate([[np.inf], scores[new]]))


def area_under(fpr, rate, max_fpr=1.0):
    """The "georgescu" area: trapezoids along the curve's points in sweep order up to FPR ``max_fpr``,
    cut there by interpolation on a segment that crosses it (none does on a per-detection curve at
    max_fpr 1: it has a point at 1), or extended flat with the last rate when the curve ends before;
    the area is not divided by ``max_fpr``."""
    fpr, rate = np.asarray(fpr, dtype=float), np.asarray(rate, dtype=float)
    if fpr.ndim != 1 or fpr.shape != rate.shape or not fpr.size:
        raise VPCError(f"area_under needs two equal-length non-empty 1-D arrays, got {fpr.shape} and {rate.shape}")
    order = np.argsort(fpr, kind="stable")          # the sweep's order already; equal FPRs keep theirs
    x, y = fpr[order], rate[order]
    inside = x <= max_fpr
    xs, ys = list(x[inside]), list(y[inside])
    if not inside.all():                            # cut at max_fpr on the segment that crosses it
        j = int(np.argmin(inside))
        x0, y0, x1, y1 = x[j - 1], y[j - 1], x[j], y[j]
        xs.append(max_fpr)
        ys.append(y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0))
    elif xs[-1] < max_fpr:                          # extended flat with the last rate
        xs.append(max_fpr)
        ys.append(ys[-1])
    return float(np.trapezoid(ys, xs))


def ssvad_curves(curves, thresholds=SSVAD_THRESHOLDS):
    """``curves`` (either kind) sampled at ``thresholds``, high to low: a detection counts at t when its
    score is >= t."""
    # The last point whose threshold is >= t (ties included); the +inf point, index 0, when none is.
    at = np.searchsorted(-curves.thresholds, -np.asarray(thresholds, dtype=float), side="right") - 1
    return RegionCurves(curves.fpr[at], curves.rbdr[at], curves.tbdr[at], np.asarray(thresholds, dtype=float))


def ssvad_area(fpr, rate):
    """The "ssvad" area: trapezoids through the points with FPR <= 1, in FPR order (equal FPRs in
    sweep order), nothing added at FPR 1; 0 for fewer than two points."""
    fpr, rate = np.asarray(fpr, dtype=float), np.asarray(rate, dtype=float)
    keep = fpr <= 1
    order = np.argsort(fpr[keep], kind="stable")
    return float(np.trapezoid(rate[keep][order], fpr[keep][order]))


def rbdc_tbdc(detections, tracks, n_frames, convention=DEFAULT_CONVENTION):
    """(RBDC, TBDC) as fractions, the areas under RBDR and TBDR for FPR 0 to 1 by ``convention``, a
    name of ``CONVENTIONS``."""
    if convention == "georgescu":
        c = region_curves(detections, tracks, n_frames, per_detection=True)
        return area_under(c.fpr, c.rbdr), area_under(c.fpr, c.tbdr)
    if convention == "ssvad":
        c = region_curves(detections, tracks, n_frames)
        scores = c.thresholds[1:]                       # the distinct scores, high to low
        if len(scores) and (scores[-1] < 0 or scores[0] > 1):
            raise VPCError(f"the ssvad RBDC/TBDC convention needs detection scores in [0, 1] (its fixed "
                           f"thresholds), got {scores[-1]:.4g} to {scores[0]:.4g}; rescale them first")
        c = ssvad_curves(c)
        return ssvad_area(c.fpr, c.rbdr), ssvad_area(c.fpr, c.tbdr)
    raise VPCError(f"unknown RBDC/TBDC convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")


def load_region_tracks(path):
    """Tracks of one test video from JSON ``TRACKS_FORMAT``, frame = 0-based index of the frame in
    the video: a list of (r, 5) float arrays. The caller offsets frames to global indices."""
    path = Path(path)

    def malformed(reason):
        return VPCError(f"malformed region ground truth {path}: {reason}; expected {TRACKS_FORMAT}")

    try:
        tracks = [np.array(track, dtype=float) for track in json.loads(path.read_text())["tracks"]]
    except FileNotFoundError:
        raise VPCError(f"region ground truth {path} not found") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise malformed(f"{type(error).__name__}: {error}".splitlines()[0]) from None
    for i, track in enumerate(tracks):
        if track.ndim != 2 or track.shape[1] != 5 or not len(track):
            raise malformed(f"track {i} is not a non-empty list of 5-number rows")
        if not np.isfinite(track).all() or (track[:, 0] < 0).any() or (track[:, 0] % 1).any():
            raise malformed(f"track {i} has a non-finite number or a frame that is not an integer >= 0")
        if (track[:, 3] < track[:, 1]).any() or (track[:, 4] < track[:, 2]).any():
            raise malformed(f"track {i} has a box with xmax < xmin or ymax < ymin")
    return tracks


def tracks_from_masks(masks):
    """Region tracks from per-frame pixel masks (2-D, 0 background, non-zero anomalous), frame i of
    the iterable being frame i of the video.

    Each frame's regions are the bounding boxes of its 8-connected anomalous components; a box covers
    whole pixels, so a component over columns c0..c1 gives xmin = c0 and xmax = c1 + 1. Boxes are
    linked into tracks between consecutive frames only: the (box, previous-frame box) pairs with
    IoU >= 0.1 are taken from the highest IoU down, each box of either frame used at most once (so
    a split continues the track in one part and starts a new one in the other; a merge continues one
    of the tracks and ends the others); a box linked to none starts a new track, and a track stops at
    a frame without a box linked to it. Tracks are listed in the order they start.
    """
    tracks = []
    prev_boxes, prev_owner = np.zeros((0, 4)), np.zeros(0, dtype=int)
    for frame, mask in enumerate(masks):
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise VPCError(f"mask of frame {frame} has shape {mask.shape}; expected a 2-D (H, W) mask")
        _, _, stats, _ = cv2.connectedComponentsWithStats((mask != 0).astype(np.uint8), connectivity=8)
        x, y, w, h = (stats[1:, k].astype(float) for k in range(4))  # row 0 is the background
        boxes = np.column_stack([x, y, x + w, y + h])
        owner = np.full(len(boxes), -1)
        iou = box_iou(boxes, prev_boxes)
        taken = np.zeros(len(prev_boxes), dtype=bool)
        for i, j in zip(*np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape)):
            if iou[i, j] < IOU_MATCH:
                break
            if owner[i] < 0 and not taken[j]:
                owner[i], taken[j] = prev_owner[j], True
        for i, box in enumerate(boxes):
            if owner[i] < 0:
                owner[i] = len(tracks)
                tracks.append([])
            tracks[owner[i]].append([frame, *box])
        prev_boxes, prev_owner = boxes, owner
    return [np.array(track, dtype=float) for track in tracks]


def _read_mask(path):
    # ANYDEPTH keeps 16-bit masks whole: an 8-bit conversion would turn small labels into 0.
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    if mask is None:
        raise VPCError(f"cannot read mask image {path} (missing, empty or not an image)")
    return mask


def load_mask_tracks(path):
    """``tracks_from_masks`` of a folder of per-frame mask images (.png/.jpg/.bmp, in the order of the
    integers in their names) or of a .npy array (frames, H, W). Any non-zero pixel is anomalous, so
    masks saved as lossy .jpg count their compression noise too."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            masks = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise VPCError(f"mask ground truth {path} not found") from None
        except (OSError, ValueError):
            raise VPCError(f"cannot read mask ground truth {path} (not a .npy array)") from None
        if masks.ndim != 3:
            raise VPCError(f"mask ground truth {path} has shape {masks.shape}; expected (frames, H, W)")
        return tracks_from_masks(masks)
    if not path.is_dir():
        raise VPCError(f"mask ground truth {path} not found (expected a folder of mask images or a .npy file)")
    files = sorted_naturally([p for p in path.iterdir() if p.suffix.lower() in MASK_SUFFIXES])
    if not files:
        raise VPCError(f"no mask images ({', '.join(sorted(MASK_SUFFIXES))}) in {path}")
    return tracks_from_masks(_read_mask(p) for p in files)
