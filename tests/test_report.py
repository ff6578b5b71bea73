"""The report per scoring run (extra.report): what a scored source puts in the page, the nearest normal
item's crop read back from the training footage, the bounds that keep an hour of footage small, and a
page that holds everything it shows."""
import base64
import json
import re

import cv2
import numpy as np
import pytest

from extra.errors import VPCError
from extra.footage_outputs import ClipResult, ground_truth_labels, score_source
from extra.report.collect import FRAME_LEVEL, MAX_ALARMS, MAX_THUMBNAILS, ReportCollector, jpeg_uri
from extra.report.html import render, report_path
from extra.sources import Clip, ClipReader, frame_of

D = 4                                                    # frames per clip
THRESHOLD = 1.5
FUSED = [0.2, 0.4, 0.3, 1.7, 2.5, 0.1, 0.9, 1.9, 0.5, 0.6]   # per clip: alarms in clips 3-4 and 7
BOXES = [[4, 4, 20, 20], [30, 10, 50, 40]]
MEMORY_BOX = [8, 16, 24, 40]                             # where the nearest item lies in training frame 2
SVG_NAMESPACE = "http://www.w3.org/2000/svg"             # a name in the script, never fetched


def write_frames(folder, n, colour=lambda i: (10 * i, 0, 0)):
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((48, 64, 3), colour(i), np.uint8))
    return folder


def training_footage(root):
    """Three training frames; frame 2 holds a pure green patch where the nearest memory item lies."""
    folder = write_frames(root / "train_cam", 3, lambda i: (90, 90, 90))
    frame = cv2.imread(str(folder / "002.png"))
    x1, y1, x2, y2 = MEMORY_BOX
    frame[y1:y2, x1:x2] = (0, 255, 0)
    cv2.imwrite(str(folder / "002.png"), frame)
    return folder


class FakeScorer:
    """An object-level scorer with known scores: two objects a clip, the second responsible; its
    explanation follows FootageScorer.explain's contract."""

    streams = ("spatial", "global")
    consecutive = D
    calibration = {"support": {"supported": False, "note": "the held-out normal footage gives 8 clips"}}

    def __init__(self, training, fail_at=None):
        self.training, self.fail_at, self.explained = training, fail_at, []

    def score(self, reader):
        for clip in reader:
            if clip.index == self.fail_at:
                raise VPCError("the stream stopped")
            fused = np.full(len(clip.frames), FUSED[clip.index])
            yield ClipResult(clip=clip, banks={"spatial": fused / 2, "global": fused / 4}, fused=fused,
                             alarms=fused > THRESHOLD, boxes=BOXES, object_scores=np.array([0.1, 0.9]), seconds=0.0,
                             threshold=THRESHOLD, object_fused=np.array([0.5, FUSED[clip.index]]))

    def explain(self, result):
        self.explained.append(result.clip.index)
        nearest = {"video": "train_cam", "source": str(self.training), "frame": 2, "clip": 0, "object": 1,
                   "box": MEMORY_BOX}
        return [{"bank": "spatial", "item": 1, "score": 3.25, "raw": 0.42, "row": 7, "nearest": nearest},
                {"bank": "global", "item": 0, "score": 0.5, "raw": 0.1, "row": 2,
                 "nearest": {**nearest, "object": -1, "box": None}}]


class FrameLevelScorer(FakeScorer):
    """A frame-level method: no boxes and no explanation."""

    explain = None


def page_data(path):
    return page_data_text(path.read_text())


def page_data_text(text):
    """The JSON a report page inlines."""
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)[1])


def decoded(uri):
    assert uri.startswith("data:image/jpeg;base64,")
    return cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture
def scored(tmp_path):
    training = training_footage(tmp_path)
    video = write_frames(tmp_path / "street", len(FUSED) * D + 2)       # 2 frames of no clip
    labels = np.zeros(len(FUSED) * D + 2, np.uint8)
    labels[13:19] = 1
    np.save(tmp_path / "labels.npy", labels)
    scorer = FakeScorer(training)
    summary = score_source(scorer, ClipReader(video, D), tmp_path / "out", labels=ground_truth_labels(
        tmp_path / "labels.npy"), report="camera.vpc")
    return tmp_path, scorer, summary


def test_a_scored_source_gives_its_report(scored):
    root, scorer, summary = scored
    page = report_path(root / "out", "street")
    assert page == root / "out" / "street_report.html"
    data = page_data(page)
    alarms = json.loads((root / "out" / "street_alarms.json").read_text())
    # the timeline holds what the alarms JSON says
    assert alarms["threshold"] == data["threshold"] == THRESHOLD
    assert [{k: v for k, v in i.items() if k != "detail"} for i in data["intervals"]] == alarms["alarm_intervals"]
    assert [(i["start_frame"], i["end_frame"]) for i in data["intervals"]] == [(12, 19), (28, 31)]
    assert data["frames_scored"] == 40 and data["frames_read"] == 42 and data["frame_base"] == 0
    assert data["series"]["frame"] == list(range(40)) and data["series"]["time"][5] == 0.2     # 25 frames/s
    assert data["series"]["fused"][17] == 2.5 and data["series"]["streams"]["global"][17] == 0.625
    assert data["series"]["alarm"][11:13] == [0, 1]
    assert data["ground_truth"] == [[13, 18, 0.52, 0.72]]
    assert data["model"] == "camera.vpc" and data["source"].endswith("street")
    assert "the last 2 frames, fewer than a clip of 4, are not scored" in data["notes"]
    assert "the alarm threshold: the held-out normal footage gives 8 clips" in data["notes"]   # the calibration's caution
    # one explanation per interval, of its peak clip (clip 4 scores 2.5 over clip 3's 1.7)
    assert scorer.explained == [4, 7]
    first, second = data["alarms"]
    assert [i["detail"] for i in data["intervals"]] == [0, 1]
    assert (first["frame"], first["time"], first["peak"], first["size"]) == (16, 0.64, 2.5, [64, 48])
    assert second["frame"] == 28
    assert first["boxes"] == BOXES and first["responsible"] == 1
    assert decoded(first["image"]).shape == (48, 64, 3)
    assert [b["bank"] for b in first["banks"]] == ["spatial", "global"] and first["banks"][0]["score"] == 3.25
    # the nearest item's crop is cut from its training frame: the green patch, whole
    spatial, whole = first["banks"][0]["nearest"], first["banks"][1]["nearest"]
    crop = decoded(spatial["crop"])
    assert crop.shape == (24, 16, 3) and spatial["missing"] is None
    assert np.abs(crop.astype(int) - (0, 255, 0)).max() < 40
    assert decoded(whole["crop"]).shape == (48, 64, 3)
    # with the training frame around it, small, for the box drawn on it
    assert decoded(spatial["context"]).shape == (48, 64, 3) and spatial["size"] == [64, 48]
    assert spatial["box"] == MEMORY_BOX and whole["box"] is None
    assert (spatial["video"], spatial["frame"], spatial["clip"], spatial["object"]) == ("train_cam", 2, 0, 1)
    # every frame sampled while the source is short
    thumbnails = data["thumbnails"]
    assert thumbnails["every"] == 1 and [t[0] for t in thumbnails["items"]] == list(range(40))
    assert decoded(thumbnails["items"][3][2]).shape[1] == 64


def test_the_page_loads_nothing(scored):
    text = report_path(scored[0] / "out", "street").read_text()
    assert re.findall(r"[\w+.-]+://[^\s\"'`]*", text) == [SVG_NAMESPACE]
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text) and "url(" not in text and "@import" not in text
    assert "default-src 'none'" in text                # the browser is told to fetch nothing either


def test_training_footage_gone_is_said(tmp_path):
    scorer = FakeScorer(tmp_path / "moved")
    score_source(scorer, ClipReader(write_frames(tmp_path / "street", 20), D), tmp_path / "out", report="m.vpc")
    nearest = page_data(tmp_path / "out" / "street_report.html")["alarms"][0]["banks"][0]["nearest"]
    assert nearest["crop"] is None and nearest["context"] is None
    assert nearest["missing"].startswith("training footage not readable where the model recorded it: ")
    assert str(tmp_path / "moved") in nearest["missing"]


def test_a_frame_level_method_says_why_it_shows_frames_only(tmp_path):
    score_source(FrameLevelScorer(None), ClipReader(write_frames(tmp_path / "street", 20), D), tmp_path / "out",
                 report="m.pt")
    data = page_data(tmp_path / "out" / "street_report.html")
    assert FRAME_LEVEL in data["notes"] and data["alarms"][0]["banks"] == [] and data["ground_truth"] is None


def test_a_failed_source_still_gets_its_report(tmp_path):
    with pytest.raises(VPCError):
        score_source(FakeScorer(training_footage(tmp_path), fail_at=5), ClipReader(write_frames(tmp_path / "s", 40), D),
                     tmp_path / "out", report="m.vpc")
    data = page_data(tmp_path / "out" / "s_report.html")
    assert data["frames_scored"] == 20 and "the source failed: the stream stopped" in data["notes"]
    # the interval open when it failed is closed and explained
    assert [(i["start_frame"], i["end_frame"]) for i in data["intervals"]] == [(12, 19)] and len(data["alarms"]) == 1


def test_no_report_unless_asked_and_no_threshold_is_null(tmp_path):
    class NoThreshold(FrameLevelScorer):
        def score(self, reader):
            for result in super().score(reader):
                result.threshold = None
                yield result

    score_source(NoThreshold(None), ClipReader(write_frames(tmp_path / "street", 8), D), tmp_path / "out")
    assert not (tmp_path / "out" / "street_report.html").exists()
    assert json.loads((tmp_path / "out" / "street_alarms.json").read_text())["threshold"] is None


def test_an_hour_stays_within_bounds():
    """An hour at 25 frames/s, 640 x 360, an alarm every 30 s: thumbnails sampled evenly and no more than
    MAX_THUMBNAILS, the first MAX_ALARMS alarms in detail, the rest listed, the page within tens of MB."""
    fps, per_clip, n_clips = 25, 25, 3600
    rows = np.linspace(0, 255, 360, dtype=np.uint8)[:, None, None]
    noise = np.random.default_rng(0).integers(0, 40, (360, 640, 3), dtype=np.uint8)
    frame = (np.broadcast_to(rows, (360, 640, 3)) // 2 + noise).astype(np.uint8)
    collector = ReportCollector("hour", ("psnr",))
    intervals = []
    for index in range(n_clips):
        alarm = index % 30 == 29
        first = index * per_clip
        fused = np.full(per_clip, 2.0 if alarm else 0.5)
        if alarm:
            intervals.append({"start_frame": first, "end_frame": first + per_clip - 1})
        clip = Clip(index, [frame] * per_clip, first, [(first + t) / fps for t in range(per_clip)])
        collector.add(ClipResult(clip=clip, banks={"psnr": fused}, fused=fused, alarms=fused > 1, boxes=[],
                                 object_scores=np.zeros(0), seconds=0.0, threshold=1.0))
    data = collector.data(intervals, fps)
    frames = [t[0] for t in data["thumbnails"]["items"]]
    every = data["thumbnails"]["every"]
    assert MAX_THUMBNAILS / 2 <= len(frames) <= MAX_THUMBNAILS and every == 512
    assert set(np.diff(frames)) == {every} and frames[0] == 0
    assert len(data["series"]["fused"]) == fps * 3600 and len(data["intervals"]) == 120
    assert len(data["alarms"]) == MAX_ALARMS and data["intervals"][MAX_ALARMS]["detail"] is None
    assert (f"120 alarm intervals: the first {MAX_ALARMS} are shown in detail, the other 20 are listed only"
            in data["notes"])
    size = len(render(data).encode())
    assert 2e6 < size < 40e6, size


def test_the_false_alarms_on_normal_frames_are_set_beside_the_target():
    collector = ReportCollector("v", ("x",), false_alarm_rate=0.05)
    fused = np.array([0.2, 2.0, 2.0, 0.1, 2.0, 0.3])
    clip = Clip(0, [np.zeros((8, 8, 3), np.uint8)] * 6, 0, [t / 25 for t in range(6)])
    collector.add(ClipResult(clip=clip, banks={"x": fused}, fused=fused, alarms=fused > 1, boxes=[],
                             object_scores=np.zeros(0), seconds=0.0, threshold=1.0))
    # frames 0-3 normal (two alarmed: 1 and 2), 4 anomalous; frame 5 lies past the labels: normal, not alarmed
    data = collector.data([], 25.0, labels=np.array([0, 0, 0, 0, 1]))
    assert data["false_alarms"] == {
        "measured": 0.4, "target": 0.05, "normal_frames": 5,
        "note": "false alarms: 40.00% of the 5 normal frames scored, against a target of 5% set on normal held-out "
                "training footage"}
    assert data["false_alarms"]["note"] in data["notes"]
    assert ReportCollector("v", ("x",)).data([], 25.0)["false_alarms"] is None        # no ground truth
    collector = ReportCollector("v", ("x",))
    collector.add(ClipResult(clip=clip, banks={"x": fused}, fused=fused, alarms=fused > 1, boxes=[],
                             object_scores=np.zeros(0), seconds=0.0, threshold=1.0))
    # no target known (a method without a calibration): the measured share alone
    assert collector.data([], 25.0, labels=np.ones(6, int))["false_alarms"] is None    # no normal frame
    assert collector.data([], 25.0, labels=np.zeros(6, int))["false_alarms"]["note"] == (
        "false alarms: 50.00% of the 6 normal frames scored")


def test_images_are_shrunk_and_the_inline_json_cannot_end_its_script():
    assert decoded(jpeg_uri(np.zeros((600, 1600, 3), np.uint8), 800)).shape == (300, 800, 3)
    collector = ReportCollector("a</script><b>", ("x",))
    text = render(collector.data([], 25.0))
    assert "a</script><b>" not in text and page_data_text(text)["name"] == "a</script><b>"
    assert "<title>Alarm report: a&lt;/script&gt;&lt;b&gt;</title>" in text


def test_frame_of_reads_a_frame_and_says_when_there_is_none(tmp_path):
    folder = write_frames(tmp_path / "v", 3)
    assert frame_of(folder, 2)[0, 0, 0] == 20
    with pytest.raises(VPCError, match="has no frame 3"):
        frame_of(folder, 3)
    with pytest.raises(VPCError, match="video not found"):
        frame_of(tmp_path / "gone", 0)


def test_the_memorization_stage_writes_a_report_per_test_video(tmp_path):
    from extra.make_demo import make_demo
    from Memorization.model import VideoPatchCore
    from Memorization.run import main
    from tests.helpers import small_random_checkpoint, write_fixed_box_objects

    make_demo(tmp_path / "data", "avenue", seed=1, n_train=2, n_test=2, n_frames=13, width=96, height=64)
    write_fixed_box_objects(tmp_path / "data", tmp_path / "work", D)
    weights = small_random_checkpoint(tmp_path / "small.pt")
    assert main([f"--data_root={tmp_path / 'data'}", f"--work_dir={tmp_path / 'work'}", "--dataset=avenue",
                 f"--consecutive={D}", f"--clip_weights={weights}", "--report"]) == 0
    reports = sorted((tmp_path / "work").rglob("reports/*_report.html"))
    assert [p.name for p in reports] == ["01_report.html", "02_report.html"]
    (model_file,) = (tmp_path / "work").rglob("*.vpc")
    threshold = VideoPatchCore.load(model_file).calibration["threshold"]
    explained = 0
    for path in reports:
        data = page_data(path)
        series = data["series"]
        assert data["frames_scored"] == 12 and data["frames_read"] == 13 and series["frame"] == list(range(12))
        assert data["threshold"] == threshold and data["ground_truth"] is not None
        assert data["model"] == str(model_file) and data["streams"] == ["spatial", "temporal", "highlevel"]
        assert series["alarm"] == [int(v > threshold) for v in series["fused"]]
        assert len(data["intervals"]) == len(data["alarms"])
        # the false alarms measured on the video's normal frames, beside the calibration's target
        labels = ground_truth_labels(tmp_path / "data" / "avenue" / "avenue.mat", int(path.name[:2]))[0]
        normal = [a for f, a in zip(series["frame"], series["alarm"]) if f >= len(labels) or labels[f] == 0]
        target = VideoPatchCore.load(model_file).calibration["false_alarm_rate"]
        assert data["false_alarms"]["measured"] == pytest.approx(np.mean(normal))
        assert data["false_alarms"]["target"] == target and data["false_alarms"]["normal_frames"] == len(normal)
        assert data["false_alarms"]["note"] in data["notes"]
        for detail in data["alarms"]:
            assert [b["bank"] for b in detail["banks"]][0] in data["streams"] and detail["banks"][0]["nearest"]["crop"]
            explained += 1
    assert explained                  # the generated anomalies raise alarms, each explained


def test_the_stage_report_needs_the_label_free_calibration():
    from Memorization.cli import build_parser, resolve_run

    with pytest.raises(VPCError, match="--report shows alarms of the label-free calibration: it needs --label_free"):
        resolve_run(build_parser("test").parse_args(["--data_root=/d", "--work_dir=/w", "--report",
                                                     "--label_free=False"]))
