"""The annotated video: box colours against the threshold, the key frame's box on every frame of its
clip, the timeline's scale, bars, threshold line and cursor, and the MP4 score_source writes."""
import cv2
import numpy as np
import pytest

from extra.annotate import (AMBER, BAR, CURSOR, GAP, GREEN, NEUTRAL, PLOT_BACKGROUND, RED, WHITE, StripLayout,
                            annotate_frame, clock, column_frames, cursor_column, draw_timeline,
                            enlargement, level_colour, save_annotated_frame, score_label, score_row,
                            timeline_window)
from extra.errors import VPCError
from extra.footage_outputs import ClipResult, score_source
from extra.sources import ClipReader

THRESHOLD = 0.9
BLACK_FRAME = np.zeros((96, 160, 3), np.uint8)     # enlarged 4 times to 640 x 384
BOX = (10, 20, 40, 70)                             # enlarged: columns 40..159, rows 80..279


def test_small_frames_are_enlarged_by_a_whole_factor():
    assert [enlargement(w) for w in (64, 100, 160, 640, 1920)] == [10, 7, 4, 1, 1]
    assert StripLayout.of(640).height == 112 and StripLayout.of(1280).height == 224   # the strip grows with the canvas
    plain = annotate_frame(np.arange(6, dtype=np.uint8).reshape(1, 2, 3).repeat(2, 0))   # no boxes, no alarm
    assert plain.shape == (640, 640, 3) and (plain[319, 319] == [0, 1, 2]).all() and (plain[0, 639] == [3, 4, 5]).all()


@pytest.mark.parametrize("score, colour, label", [(0.45, GREEN, "0.45"), (0.72, GREEN, "0.72"), (0.765, AMBER, "0.77"),
                                                  (0.9, AMBER, "0.90"), (1.08, RED, "1.08")])
def test_a_box_is_coloured_against_the_threshold(score, colour, label):
    assert level_colour(score, THRESHOLD) == colour and score_label(score, THRESHOLD) == label
    image = annotate_frame(BLACK_FRAME, [BOX], [score], THRESHOLD, key_frame=True)
    left_edge = image[100:270, 40]                        # below the label tab
    assert (left_edge == colour).all()                     # solid on the key frame
    assert (image[279, 60:150] == colour).all() and (image[180, 158] == colour).all()
    assert (image[180, 100] == 0).all() and (image[180, 37] == 0).all()    # inside and outside untouched
    assert (image[75, 45] == colour).all()                # the label's tab, above the box


def test_without_a_threshold_or_a_score_a_box_is_neutral():
    assert level_colour(0.5, None) == level_colour(None, 0.9) == level_colour(float("nan"), 0.9) == NEUTRAL
    assert score_label(None, 0.9) == "" and score_label(0.5, -0.2) == "0.50"
    assert level_colour(-0.19, -0.2) == RED and level_colour(-0.23, -0.2) == AMBER and level_colour(-0.3, -0.2) == GREEN
    image = annotate_frame(BLACK_FRAME, [BOX], None, THRESHOLD)
    assert (image[180, 40] == NEUTRAL).all()


def test_the_key_frame_box_stays_dashed_on_the_following_frames():
    image = annotate_frame(BLACK_FRAME, [BOX], [1.08], THRESHOLD, key_frame=False)
    left_edge = image[100:270, 40]
    drawn = (left_edge == RED).all(axis=1)
    assert 0.4 < drawn.mean() < 0.9                      # dashes and gaps
    assert not (left_edge[~drawn] == RED).all(axis=1).any() and (left_edge[~drawn] == 0).all()
    # its tag is longer than the key frame's ("1.08 key frame" against "1.08")
    solid = annotate_frame(BLACK_FRAME, [BOX], [1.08], THRESHOLD, key_frame=True)
    assert (image[75, 40:200] == RED).all(axis=1).sum() > 2 * (solid[75, 40:200] == RED).all(axis=1).sum()


def test_an_alarmed_frame_is_framed_in_red():
    image = annotate_frame(BLACK_FRAME, alarm=True)
    assert (image[0, 0] == RED).all() and (image[200, 1] == RED).all() and (image[383, 639] == RED).all()
    assert (image[200, 320] == 0).all()
    assert (annotate_frame(BLACK_FRAME)[0, 0] == 0).all()


def test_score_rows_by_hand():
    layout = StripLayout(640, 112, 6, 634, 20, 100, 1.0)
    assert score_row(0.9, 0.0, 1.8, layout) == 60          # the threshold halfway
    assert score_row(0.45, 0.0, 1.8, layout) == 80
    assert score_row(0.0, 0.0, 1.8, layout) == 100 and score_row(-3, 0.0, 1.8, layout) == 100
    assert score_row(7.0, 0.0, 1.8, layout) == 20
    assert list(score_row(np.array([0.9, 1.8]), 0.0, 1.8, layout)) == [60, 20]


def test_columns_and_cursor():
    assert list(column_frames(10, 4)) == [0, 3, 5, 8]      # 3, 2, 3, 2 frames per column
    assert [cursor_column(f, 10, 4) for f in (0, 2, 3, 4, 9)] == [0, 0, 1, 1, 3]
    assert list(column_frames(2, 4)) == [0, 0, 1, 1]       # a frame over two columns
    assert [cursor_column(f, 2, 4) for f in (0, 1)] == [0, 2]
    assert list(column_frames(3, 3)) == [0, 1, 2] and cursor_column(2, 3, 3) == 2


def test_timeline_window_of_a_file_and_of_a_live_source():
    first, scores, alarms = timeline_window([0, 1, 2, 5], [0.1, 0.2, 0.3, 1.5], [0, 0, 0, 1], 5, n_frames=8)
    assert first == 0 and len(scores) == 8
    np.testing.assert_array_equal(scores, [0.1, 0.2, 0.3, np.nan, np.nan, 1.5, np.nan, np.nan])
    assert list(alarms) == [0, 0, 0, 0, 0, 1, 0, 0]
    first, scores, alarms = timeline_window([0, 1, 2, 5], [0.1, 0.2, 0.3, 1.5], [0, 0, 0, 1], 5, window=3)
    assert first == 3
    np.testing.assert_array_equal(scores, [np.nan, np.nan, 1.5])
    first, scores, _ = timeline_window([0], [0.1], [0], 0, window=3)     # a live source's first frame
    assert first == 0
    np.testing.assert_array_equal(scores, [0.1, np.nan, np.nan])


def test_clock():
    assert clock(0) == "00:00.0" and clock(65.34) == "01:05.3" and clock(119.96) == "02:00.0"
    assert clock(3725.0) == "62:05.0"


def test_the_strip_draws_scores_gaps_alarms_the_threshold_and_the_cursor():
    layout = StripLayout.of(640)
    assert (layout.height, layout.left, layout.right, layout.bottom) == (112, 6, 634, 105)
    n = layout.columns                                     # one frame per column
    frames = list(range(10)) + list(range(20, 30))         # frames 10..19: no full clip
    scores = [0.45] * 10 + [1.5] * 10
    alarms = [False] * 10 + [True] * 10
    strip = draw_timeline(640, *timeline_window(frames, scores, alarms, 29, n), 29, 29 / 25, THRESHOLD, n)
    assert strip.shape == (112, 640, 3)
    x = layout.left
    threshold_row = layout.bottom - round(0.5 * (layout.bottom - layout.top))   # range 0 .. 1.8
    assert (strip[threshold_row, x + 100] == WHITE).all() and (strip[threshold_row, x + 600] == WHITE).all()
    assert (strip[threshold_row - 2, x + 100] == PLOT_BACKGROUND).all()        # future frames: background
    bar_top = layout.bottom - round(0.25 * (layout.bottom - layout.top))        # 0.45 of 1.8
    assert (strip[bar_top:layout.bottom + 1, x + 5] == BAR).all() and (strip[bar_top - 1, x + 5] == PLOT_BACKGROUND).all()
    gap = np.delete(strip[layout.top:layout.bottom + 1, x + 15], threshold_row - layout.top, axis=0)
    assert (gap == GAP).all()                              # but for the threshold line
    red_top = layout.bottom - round(1.5 / 1.8 * (layout.bottom - layout.top))  # up past the line
    assert (strip[red_top:threshold_row, x + 25] == RED).all() and (strip[red_top - 1, x + 25] == PLOT_BACKGROUND).all()
    assert (strip[layout.top + 1, x + 29] == CURSOR).all()                     # the cursor at frame 29
    assert (strip[layout.bottom, x + 40] == PLOT_BACKGROUND).all()
    # twice as many frames as columns: frame 29 in column 14, and one alarmed frame is never dropped
    scores = [0.1] * 2 * n
    alarms = [False] * 2 * n
    scores[301], alarms[301] = 1.5, True
    strip = draw_timeline(640, *timeline_window(range(2 * n), scores, alarms, 29, 2 * n), 29, 1.2, THRESHOLD, 2 * n)
    assert (strip[layout.top + 1, x + 14] == CURSOR).all()
    assert (strip[red_top, x + 150] == RED).all() and (strip[layout.bottom, x + 151] == BAR).all()


class FixedScorer:
    """A method's scorer that scores every clip the same: the first half of the clips below the
    threshold, the others above, with one object box each."""

    streams = ("total",)

    def score(self, reader):
        for clip in reader:
            value = 0.5 if clip.index < 2 else 1.2
            fused = np.full(len(clip.frames), value)
            yield ClipResult(clip, {"total": fused}, fused, fused > THRESHOLD, [(4, 4, 24, 24)], np.zeros(1), 0.0,
                             THRESHOLD, np.array([value]))


def write_video(path, n_frames, width, height):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (width, height))
    for _ in range(n_frames):
        writer.write(np.full((height, width, 3), 90, np.uint8))
    writer.release()
    return path


def test_score_source_writes_the_annotated_mp4(tmp_path):
    video = write_video(tmp_path / "walk.mp4", 18, 64, 48)          # 4 clips of 4, 2 frames of no clip
    summary = score_source(FixedScorer(), ClipReader(video, 4), tmp_path / "out", video_out=True)
    assert summary.frames == 16
    out = tmp_path / "out" / "walk.mp4"
    assert sorted(p.name for p in out.parent.iterdir()) == ["walk.csv", "walk.mp4", "walk_alarms.json"]
    capture = cv2.VideoCapture(str(out))
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image.astype(int))
    capture.release()
    assert len(images) == 16 and images[0].shape == (480 + 112, 640, 3)     # enlarged 10 times, the strip under
    # the box (enlarged 10 times: columns 40..239) green on a clip below the threshold, red above
    assert np.abs(images[0][150, 40:42] - GREEN).max() < 60
    assert np.abs(images[12][150, 40:42] - RED).max() < 60
    assert np.abs(images[12][240, 1] - RED).max() < 60 and np.abs(images[0][240, 1] - 90).max() < 30   # alarm border
    # the key frame's box on the clip's next frames, dashed: part of its edge drawn
    edge = [(np.abs(image[60:230, 40:42] - RED).max(axis=2) < 60).all(axis=1).mean() for image in images[12:16]]
    assert edge[0] > 0.95 and all(0.3 < e < 0.8 for e in edge[1:]), edge
    # the cursor of frame 5 of 18 in the strip (628 plot columns from x = 6): column ceil(5 * 628 / 18)
    layout = StripLayout.of(640)
    assert np.abs(images[5][480 + layout.top + 1, 6 + 175] - CURSOR).max() < 60
    assert np.abs(images[6][480 + layout.top + 1, 6 + 175] - CURSOR).max() > 100
    png = save_annotated_frame(out, 12, tmp_path / "frame.png")
    assert (cv2.imread(str(png)).astype(int) == images[12]).all()
    with pytest.raises(VPCError, match="has 16 frames, no frame 16"):
        save_annotated_frame(out, 16, tmp_path / "none.png")


class FrameScorer:
    """A frame-level method's scorer (as MNAD's): clips of one frame, the first 3 of no full window,
    no boxes, no per-object scores."""

    streams = ("total",)

    def score(self, reader):
        for clip in reader:
            if clip.first_frame >= 3:
                fused = np.array([0.2])
                yield ClipResult(clip, {"total": fused}, fused, fused > THRESHOLD, [], np.zeros(0), 0.0, THRESHOLD)


def read_frames(path):
    capture, images = cv2.VideoCapture(str(path)), []
    while True:
        ok, image = capture.read()
        if not ok:
            capture.release()
            return images
        images.append(image.astype(int))


def test_a_frame_level_method_and_a_live_source(tmp_path):
    from extra.footage_outputs import ScoreWriter
    from extra.sources import Clip

    video = write_video(tmp_path / "lobby.mp4", 18, 64, 48)
    score_source(FrameScorer(), ClipReader(video, 1), tmp_path / "out", video_out=True)
    images = read_frames(tmp_path / "out" / "lobby.mp4")
    assert len(images) == 15 and images[0].shape == (592, 640, 3)
    assert np.abs(images[0][100, 100] - 90).max() < 30                     # no box, no alarm: the frame as read
    layout = StripLayout.of(640)
    bottom = 480 + layout.bottom
    assert np.abs(images[0][bottom - 2, 6 + 50] - GAP).max() < 30          # frames 0..2 (columns 0..104): no score
    assert np.abs(images[0][bottom - 2, 6 + 110] - BAR).max() < 40         # frame 3
    # a live source (no frame count): the strip spans the last 60 s, 1500 frames at 25 frames/s
    writer = ScoreWriter(tmp_path / "live", "cam", 25, ("total",), video_out=True, n_frames=None)
    for index in range(3):
        frames = [np.full((48, 64, 3), 90, np.uint8)] * 4
        fused = np.full(4, 0.2)
        writer.add(ClipResult(Clip(index, frames, 4 * index, [(4 * index + t) / 25 for t in range(4)]),
                              {"total": fused}, fused, fused > THRESHOLD, [], np.zeros(0), 0.0, THRESHOLD))
    writer.close(12)
    images = read_frames(tmp_path / "live" / "cam.mp4")
    assert len(images) == 12
    assert np.abs(images[11][480 + layout.top + 1, 6 + 11 * 628 // 1500] - CURSOR).max() < 60
    assert np.abs(images[11][480 + layout.top + 1, 6 + 100] - PLOT_BACKGROUND).max() < 30
