import json

import cv2
import numpy as np
import pytest

from extra.errors import VPCError
from extra.evaluation.regions import (
    area_under, box_iou, load_mask_tracks, load_region_tracks, rbdc_tbdc, region_curves, ssvad_area, ssvad_curves,
    tracks_from_masks,
)


def box_track(*rows):
    return np.array(rows, dtype=float)


def square_track(frames, box=(0, 0, 10, 10)):
    return box_track(*([f, *box] for f in frames))


def test_box_iou_hand_values():
    a = [[0, 0, 10, 10], [5, 5, 15, 15]]
    b = [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [2, 2, 4, 4], [10, 0, 20, 10]]
    # [5,5,15,15] vs [0,0,10,10] or [10,0,20,10]: inter 5*5 = 25, union 100 + 100 - 25 = 175;
    # [5,0,15,10] vs either: inter 50, union 150; [2,2,4,4] inside [0,0,10,10]: 4 / 100;
    # boxes that only touch ([0,0,10,10] and [10,0,20,10]) or are apart: 0.
    np.testing.assert_allclose(box_iou(a, b), [[1, 1 / 3, 0, 0.04, 0],
                                               [1 / 7, 1 / 3, 0, 0, 1 / 7]], rtol=1e-12, atol=0)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 5)
    # Two zero-area boxes: empty union, IoU 0 (not nan).
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]]).tolist() == [[0.0]]


def test_two_tracks_curves_and_areas_by_hand():
    tracks = [square_track([0, 1]),                  # A: regions A0 (frame 0), A1 (frame 1)
              box_track([2, 20, 20, 30, 30])]        # B: region B0 (frame 2)
    detections = np.array([
        [3, 0, 0, 5, 5, 0.2],       # FP: no region on frame 3
        [1, 8, 8, 18, 18, 0.7],     # FP: IoU with A1 = 4 / 196 < 0.1
        [0, 0, 0, 10, 10, 0.9],     # TP on A0 (IoU 1)
        [5, 0, 0, 10, 10, 0.8],     # FP: no region on frame 5
        [2, 25, 20, 35, 30, 0.7],   # TP on B0: IoU 50 / 150
        [1, 0, 0, 10, 10, 0.5],     # TP on A1
    ])
    c = region_curves(detections, tracks, n_frames=10)
    # t     positives           FP  FPR  RBDR (of 3)  TBDR (of 2)
    # inf   -                   0   0    0            0
    # 0.9   A0                  0   0    1/3          1/2  (A: 1 of 2 regions >= 10 %)
    # 0.8   + FP                1   0.1  1/3          1/2
    # 0.7   + B0, + FP (tie)    2   0.2  2/3          1
    # 0.5   + A1                2   0.2  1            1
    # 0.2   + FP                3   0.3  1            1
    np.testing.assert_array_equal(c.thresholds, [np.inf, 0.9, 0.8, 0.7, 0.5, 0.2])
    np.testing.assert_allclose(c.fpr, [0, 0, 0.1, 0.2, 0.2, 0.3], rtol=1e-12, atol=0)
    np.testing.assert_allclose(c.rbdr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1], rtol=1e-12, atol=0)
    np.testing.assert_allclose(c.tbdr, [0, 0.5, 0.5, 1, 1, 1], rtol=1e-12, atol=0)
    # Georgescu (the default): one point per detection, the 0.7 tie in input order (the FP on frame 1
    # first, then B0), then flat to FPR 1:
    # RBDR: (0, 0) (0, 1/3) (0.1, 1/3) (0.2, 1/3) (0.2, 2/3) (0.2, 1) (0.3, 1) (1, 1)
    #   0.1 * 1/3 + 0.1 * 1/3 + 0.1 * 1 + 0.7 * 1 = (1 + 1 + 3 + 21) / 30 = 0.8666...
    # TBDR: (0, 0) (0, 1/2) (0.1, 1/2) (0.2, 1/2) (0.2, 1) (0.2, 1) (0.3, 1) (1, 1): 0.05 + 0.05 + 0.8 = 0.9
    assert rbdc_tbdc(detections, tracks, n_frames=10) == pytest.approx((26 / 30, 0.9), abs=1e-12)
    # py-ssvad-metrics: the grid separates every distinct score here, so its points are those of the
    # table (repeated), the tie a diagonal, and nothing after FPR 0.3:
    # RBDR: 0.1 * 1/3 + 0.1 * (1/3 + 2/3) / 2 + 0 + 0.1 * 1 = (1 + 1.5 + 3) / 30; TBDR 0.05 + 0.075 + 0.1
    assert rbdc_tbdc(detections, tracks, n_frames=10, convention="ssvad") == pytest.approx((5.5 / 30, 0.225),
                                                                                            abs=1e-12)
    # The table's curve only up to FPR 0.2: RBDR 1/30 + 1.5/30, TBDR 0.05 + 0.075 (not divided by 0.2).
    assert (area_under(c.fpr, c.rbdr, 0.2), area_under(c.fpr, c.tbdr, 0.2)) == pytest.approx((2.5 / 30, 0.125),
                                                                                          abs=1e-12)


def test_the_two_conventions_by_hand():
    # One track, regions on frames 0 and 1 (a detection of either detects it); 4 test frames, so each
    # false positive adds 0.25 to FPR.
    tracks = [square_track([0, 1])]
    tp0, fp2, fp3, tp1 = ([f, 0, 0, 10, 10, s] for f, s in ((0, 0.905), (2, 0.903), (3, 0.505), (1, 0.505)))
    detections = [tp0, fp2, fp3, tp1]
    # Georgescu, the default: (0, 0); one point per detection, the 0.505 tie in input order (FP, then TP);
    # flat from the last point to FPR 1.
    # RBDR: (0, 0) (0, 1/2) (0.25, 1/2) (0.5, 1/2) (0.5, 1) (1, 1): 0.25 * 0.5 + 0.25 * 0.5 + 0.5 * 1 = 0.75
    # TBDR: 1 from the first detection on: 1.0
    assert rbdc_tbdc(detections, tracks, n_frames=4) == (0.75, 1.0)
    assert rbdc_tbdc(detections, tracks, n_frames=4, convention="georgescu") == (0.75, 1.0)
    # The tie the other way round (TP first): (0, 0) (0, 1/2) (0.25, 1/2) (0.25, 1) (0.5, 1) (1, 1):
    # 0.125 + 0.25 + 0.5 = 0.875; the script's area depends on the order of tied detections.
    assert rbdc_tbdc([tp0, fp2, tp1, fp3], tracks, n_frames=4) == (0.875, 1.0)
    # py-ssvad-metrics: thresholds 1.01, 1.00, ..., -0.01. Down to 0.91 nothing; from 0.90 to 0.51 the
    # two scores of (0.90, 0.91] together: (0.25, 1/2); from 0.50 on all four: (0.5, 1). No extension:
    # RBDR: (0, 0) (0.25, 1/2) (0.5, 1): 0.25 * 0.25 + 0.25 * 0.75 = 0.25
    # TBDR: (0, 0) (0.25, 1) (0.5, 1): 0.125 + 0.25 = 0.375 (either order of the tie)
    assert rbdc_tbdc(detections, tracks, n_frames=4, convention="ssvad") == (0.25, 0.375)
    assert rbdc_tbdc([tp0, fp2, tp1, fp3], tracks, n_frames=4, convention="ssvad") == (0.25, 0.375)
    c = ssvad_curves(region_curves(detections, tracks, n_frames=4))
    assert len(c.fpr) == 103
    assert (c.fpr[9:12].tolist(), c.rbdr[9:12].tolist()) == ([0.0, 0.0, 0.25], [0.0, 0.0, 0.5])  # 0.92 0.91 0.90
    assert (c.fpr[-3:].tolist(), c.rbdr[-3:].tolist()) == ([0.5] * 3, [1.0] * 3)
    # Points past FPR 1 are dropped, no point is added at 1: (0, 0) (0.5, 1) and not (2, 1).
    assert ssvad_area([0, 0.5, 2], [0, 1, 1]) == 0.25


def test_region_results_count_every_test_frame_as_the_denominator(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from Memorization import pipeline
    from extra.datasets import clip_frame_indices

    # One test video of 7 frames in clips of 3: frames 0-2 and 3-5 scored, frame 6 (the tail) in no clip.
    (tmp_path / "avenue" / "test_regions").mkdir(parents=True)
    (tmp_path / "avenue" / "test_regions" / "01.json").write_text(
        json.dumps({"tracks": [[[f, 0, 0, 10, 10] for f in range(3)]]}))
    video = SimpleNamespace(name="01", n_raw_frames=7, clips=lambda d: clip_frame_indices(7, d))
    run = SimpleNamespace(context=SimpleNamespace(data_root=tmp_path),
                          method=SimpleNamespace(dataset="avenue", consecutive=3),
                          work=SimpleNamespace(object_batches=lambda split, name: f"{name}.objects"))
    # Clip 0: an object on the track (score 0.8); clip 1: one elsewhere (score 0.9).
    boxes = [np.array([[0, 0, 10, 10, 1, 0]]), np.array([[50, 50, 60, 60, 1, 0]])]
    monkeypatch.setattr(pipeline, "clip_boxes_of", lambda path, clips: [boxes[c] for c in clips])
    objects = [([1, 1], {"spatial": [0.8, 0.9], "temporal": [0.0, 0.0]})]
    result = pipeline.region_results(run, [video], objects, SimpleNamespace(a1=1.0, a2=0.0), None)
    # Three false positives (frames 3-5, score 0.9) come first, then the three regions: over 7 frames
    # FPR 3/7, then flat at rate 1 to FPR 1: RBDC = TBDC = 1 - 3/7 = 4/7 (over the 6 scored frames: 1/2).
    assert result["rbdc"] == pytest.approx(4 / 7, abs=1e-12) and result["tbdc"] == pytest.approx(4 / 7, abs=1e-12)
    assert (result["frames"], result["detections"], result["regions"], result["tracks"]) == (7, 6, 3, 1)
    assert result["convention"] == "georgescu"


def test_detection_overlapping_two_regions_is_one_true_positive_detecting_both():
    tracks = [square_track([0]), square_track([0], (10, 0, 20, 10))]
    c = region_curves([[0, 5, 0, 15, 10, 1.0]], tracks, n_frames=4)  # IoU 1/3 with each region
    assert c.fpr.tolist() == [0.0, 0.0]
    assert c.rbdr.tolist() == [0.0, 1.0]
    assert c.tbdr.tolist() == [0.0, 1.0]


def test_two_detections_on_one_region_count_it_once_and_are_both_true_positives():
    tracks = [square_track([0, 1])]
    c = region_curves([[0, 0, 0, 10, 10, 0.9], [0, 1, 1, 10, 10, 0.8]], tracks, n_frames=4)
    assert c.fpr.tolist() == [0.0, 0.0, 0.0]
    assert c.rbdr.tolist() == [0.0, 0.5, 0.5]
    assert c.tbdr.tolist() == [0.0, 1.0, 1.0]


def test_track_detected_once_ten_percent_of_its_regions_are():
    # T1: 11 regions (needs 2), T2: 10 regions (needs 1), T3: 30 regions (needs 3, not 4).
    tracks = [square_track(range(0, 11)), square_track(range(20, 30)), square_track(range(100, 130))]
    on = lambda frame, score: [frame, 0, 0, 10, 10, score]  # noqa: E731 - a row on the track's box
    detections = [on(0, 0.9), on(20, 0.8), on(5, 0.7), on(100, 0.6), on(101, 0.6), on(102, 0.5)]
    c = region_curves(detections, tracks, n_frames=200)
    # 0.9: T1 1/11; 0.8: T2 1/10 -> detected; 0.7: T1 2/11 -> detected; 0.6: T3 2/30; 0.5: T3 3/30 -> detected
    np.testing.assert_allclose(c.tbdr, [0, 0, 1 / 3, 2 / 3, 2 / 3, 1], rtol=1e-12, atol=0)
    np.testing.assert_allclose(c.rbdr, np.array([0, 1, 2, 3, 5, 6]) / 51, rtol=1e-12, atol=0)
    assert c.fpr.tolist() == [0.0] * 6


def test_area_flat_extension_to_fpr_one():
    # (0, 0) (0.2, 0.5) then flat: 0.2 * 0.25 + 0.8 * 0.5 = 0.45
    assert area_under([0, 0.2], [0, 0.5]) == pytest.approx(0.45, abs=1e-12)
    # True positives before any false positive: the rate counts from FPR 0, area 1.
    assert rbdc_tbdc([[0, 0, 0, 10, 10, 0.9]], [square_track([0])], n_frames=10) == (1.0, 1.0)


def test_area_clipped_at_fpr_one_by_interpolation():
    # The segment (0.5, 0.5) -> (1.5, 1) crosses FPR 1 at rate 0.75:
    # 0.5 * 0.25 + 0.5 * (0.5 + 0.75) / 2 = 0.4375 (the point at 1.5 adds nothing).
    assert area_under([0, 0.5, 1.5], [0, 0.5, 1]) == pytest.approx(0.4375, abs=1e-12)
    # From the sweep, 2 frames: FP, FP, TP, FP -> (0,0) (0.5,0) (1,0) (1,1) (1.5,1): the region is
    # found only at FPR 1, a vertical step there, so nothing below FPR 1: area 0.
    detections = [[1, 50, 50, 60, 60, 0.9], [1, 70, 70, 80, 80, 0.8], [0, 0, 0, 10, 10, 0.7],
                  [1, 90, 90, 99, 99, 0.6]]
    c = region_curves(detections, [square_track([0])], n_frames=2)
    assert c.fpr.tolist() == [0.0, 0.5, 1.0, 1.0, 1.5]
    assert rbdc_tbdc(detections, [square_track([0])], n_frames=2) == (0.0, 0.0)
    # the same region found one false positive earlier: (0,0) (0.5,0) (0.5,1) (1,1): area 0.5
    assert area_under([0, 0.5, 0.5, 1.0], [0, 0, 1, 1]) == pytest.approx(0.5, abs=1e-12)


def test_no_detections_give_zero():
    c = region_curves(np.zeros((0, 6)), [square_track([0])], n_frames=5)
    assert (c.fpr.tolist(), c.rbdr.tolist(), c.tbdr.tolist(), c.thresholds.tolist()) == ([0.0], [0.0], [0.0], [np.inf])
    assert rbdc_tbdc([], [square_track([0])], n_frames=5) == (0.0, 0.0)


def counts(positives, tracks, n_frames):
    """(FPR, RBDR, TBDR) when ``positives`` are the positive detections, the definitions applied literally."""
    regions, owner = np.concatenate(tracks), np.repeat(np.arange(len(tracks)), [len(t) for t in tracks])
    false_positives, detected = 0, np.zeros(len(regions), dtype=bool)
    for d in positives:
        hits = (regions[:, 0] == d[0]) & (box_iou(d[1:5], regions[:, 1:5])[0] >= 0.1)
        false_positives += not hits.any()
        detected |= hits
    found = [10 * detected[owner == i].sum() >= (owner == i).sum() for i in range(len(tracks))]
    return false_positives / n_frames, detected.mean(), np.mean(found)


def recount(detections, tracks, n_frames, thresholds=None):
    """Threshold by threshold (+inf and the distinct scores unless given): (FPR, RBDR, TBDR) rows."""
    if thresholds is None:
        thresholds = np.r_[np.inf, np.unique(detections[:, 5])[::-1]]
    return np.array([counts(detections[detections[:, 5] >= t], tracks, n_frames) for t in thresholds])


def random_case(seed):
    rng = np.random.default_rng(seed)
    tracks = []
    for _ in range(rng.integers(1, 5)):
        start, (x, y), n = rng.integers(0, 10), rng.integers(0, 20, 2), rng.integers(1, 25)
        w, h = rng.integers(1, 10, 2)
        tracks.append(square_track(range(start, start + n), (x, y, x + w, y + h)))
    k = rng.integers(0, 40)
    xy = rng.integers(0, 20, (k, 2))
    # Scores in eighths: many ties.
    detections = np.column_stack([rng.integers(0, 30, k), xy, xy + rng.integers(1, 10, (k, 2)),
                                  rng.integers(0, 8, k) / 8]).astype(float)
    return detections, tracks


@pytest.mark.parametrize("seed", range(20))
def test_sweep_matches_a_threshold_by_threshold_recount(seed):
    detections, tracks = random_case(seed)
    c = region_curves(detections, tracks, n_frames=30)
    np.testing.assert_allclose(np.column_stack([c.fpr, c.rbdr, c.tbdr]), recount(detections, tracks, 30),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed", range(12))
def test_both_conventions_match_their_scripts_steps(seed):
    detections, tracks = random_case(seed)
    n = (10, 60)[seed % 2]  # over 10 frames FPR passes 1, over 60 it mostly ends before
    # Georgescu: a point after each detection from the highest score down, ties in input order (Python's
    # sort is stable), after (0, 0); the points with FPR <= 1, then (1, last rates) if they end before 1.
    ordered = np.array(sorted(detections.tolist(), key=lambda d: -d[5])).reshape(-1, 6)
    p = np.array([counts(ordered[:i], tracks, n) for i in range(len(ordered) + 1)])
    p = p[p[:, 0] <= 1]
    if p[-1, 0] < 1:
        p = np.vstack([p, [1, *p[-1, 1:]]])
    expected = np.trapezoid(p[:, 1], p[:, 0]), np.trapezoid(p[:, 2], p[:, 0])
    assert rbdc_tbdc(detections, tracks, n) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # py-ssvad-metrics: np.linspace(1.01, -0.01, 103), the points with FPR <= 1 in FPR order, nothing added.
    p = recount(detections, tracks, n, np.linspace(1.01, -0.01, 103))
    p = p[p[:, 0] <= 1]
    p = p[np.argsort(p[:, 0], kind="stable")]
    expected = np.trapezoid(p[:, 1], p[:, 0]), np.trapezoid(p[:, 2], p[:, 0])
    assert rbdc_tbdc(detections, tracks, n, convention="ssvad") == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_bad_inputs_raise():
    with pytest.raises(VPCError, match="at least one ground-truth track"):
        region_curves([], [], n_frames=5)
    with pytest.raises(VPCError, match="positive number of test frames"):
        region_curves([], [square_track([0])], n_frames=0)
    with pytest.raises(VPCError, match="finite"):
        region_curves([[0, 0, 0, 1, 1, np.nan]], [square_track([0])], n_frames=1)
    with pytest.raises(VPCError, match="unknown RBDC/TBDC convention 'auc'"):
        rbdc_tbdc([], [square_track([0])], n_frames=1, convention="auc")
    with pytest.raises(VPCError, match=r"scores in \[0, 1\].*got -0.5 to 2"):
        rbdc_tbdc([[0, 0, 0, 1, 1, 2.0], [0, 0, 0, 1, 1, -0.5]], [square_track([0])], n_frames=1, convention="ssvad")


def blob_masks():
    """3 frames 20 x 20: blob 1 moves right (frame 0 has a pixel joined only diagonally),
    blob 2 moves down, blob 3 appears on frame 2."""
    masks = np.zeros((3, 20, 20), dtype=np.uint8)
    for f in range(3):
        masks[f, 2:6, 2 + f:6 + f] = 255      # rows 2-5, columns 2+f..5+f
        masks[f, 10 + f:14 + f, 10:14] = 1    # rows 10+f..13+f, columns 10-13
    masks[0, 6, 6] = 255                      # 8-connected to (5, 5) only
    masks[2, 0:3, 15:19] = 7
    return masks


BLOB_TRACKS = [[[0, 2, 2, 7, 7], [1, 3, 2, 7, 6], [2, 4, 2, 8, 6]],
               [[0, 10, 10, 14, 14], [1, 10, 11, 14, 15], [2, 10, 12, 14, 16]],
               [[2, 15, 0, 19, 3]]]


def test_tracks_from_masks_links_blobs_across_frames():
    assert [t.tolist() for t in tracks_from_masks(blob_masks())] == BLOB_TRACKS


def test_tracks_from_masks_split_continues_one_track_and_a_gap_ends_it():
    masks = np.zeros((4, 10, 30), dtype=np.uint8)
    masks[0, 0:4, 0:10] = 1                       # box [0,0,10,4]
    masks[1, 0:4, 0:4] = masks[1, 0:4, 6:10] = 1  # split: IoU 0.4 each; the first (in label order) links
    masks[3, 0:4, 0:4] = 1                        # after the empty frame 2: a new track
    tracks = tracks_from_masks(masks)
    assert [t.tolist() for t in tracks] == [[[0, 0, 0, 10, 4], [1, 0, 0, 4, 4]], [[1, 6, 0, 10, 4]],
                                            [[3, 0, 0, 4, 4]]]


def test_load_mask_tracks_from_images_and_npy(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    # Names 9, 10, 11: sorted as text, frame 10 would come first.
    for mask, number in zip(blob_masks(), (9, 10, 11)):
        cv2.imwrite(str(folder / f"frame{number}.png"), mask)
    (folder / "notes.txt").write_text("ignored")
    assert [t.tolist() for t in load_mask_tracks(folder)] == BLOB_TRACKS
    np.save(tmp_path / "masks.npy", blob_masks())
    assert [t.tolist() for t in load_mask_tracks(tmp_path / "masks.npy")] == BLOB_TRACKS


def test_load_mask_tracks_errors(tmp_path):
    with pytest.raises(VPCError, match="nowhere.*not found"):
        load_mask_tracks(tmp_path / "nowhere")
    with pytest.raises(VPCError, match="missing.npy not found"):
        load_mask_tracks(tmp_path / "missing.npy")
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    with pytest.raises(VPCError, match=r"flat.npy has shape \(4, 4\)"):
        load_mask_tracks(tmp_path / "flat.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VPCError, match="no mask images"):
        load_mask_tracks(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0.png").write_bytes(b"not a png")
    with pytest.raises(VPCError, match=r"cannot read mask image .*0\.png"):
        load_mask_tracks(tmp_path / "bad")


def test_load_region_tracks(tmp_path):
    path = tmp_path / "01.json"
    path.write_text(json.dumps({"tracks": [[[3, 1, 2, 11, 12], [4, 2, 2, 12, 12.5]], [[7, 0, 0, 5, 5]]]}))
    tracks = load_region_tracks(path)
    assert [t.tolist() for t in tracks] == [[[3, 1, 2, 11, 12], [4, 2, 2, 12, 12.5]], [[7, 0, 0, 5, 5]]]
    assert all(t.dtype == np.float64 for t in tracks)


@pytest.mark.parametrize("text, reason", [
    ("{not json", "JSONDecodeError"),
    ('{"boxes": []}', "KeyError: 'tracks'"),
    ('{"tracks": [[[0, 1, 2, 3]]]}', "track 0 is not a non-empty list of 5-number rows"),
    ('{"tracks": [[[0, 0, 0, 1, 1]], []]}', "track 1 is not a non-empty list"),
    ('{"tracks": [[[0.5, 0, 0, 1, 1]]]}', "frame that is not an integer"),
    ('{"tracks": [[[0, 5, 0, 1, 1]]]}', "xmax < xmin"),
])
def test_load_region_tracks_malformed(tmp_path, text, reason):
    path = tmp_path / "07.json"
    path.write_text(text)
    with pytest.raises(VPCError) as error:
        load_region_tracks(path)
    message = str(error.value)
    assert message.startswith(f"malformed region ground truth {path}: ") and reason in message
    assert "\n" not in message


def test_load_region_tracks_missing(tmp_path):
    with pytest.raises(VPCError, match="region ground truth .*absent.json not found"):
        load_region_tracks(tmp_path / "absent.json")
