import shutil
from dataclasses import replace

import cv2
import h5py
import numpy as np
import pytest
import torch
from torch import nn

from extra.datasets import Video
from extra.errors import VPCError
from extra.provenance import read_h5_record, write_h5_record
from extra.workdir import WorkDir
from Memorization.encoders.clip_resnet import ResNetTaps
from Memorization.encoders.contract import TapLayout
from Memorization.features import (
    channel_matrix, compress_channels, compressed_maps, extract_split_features, extract_video_features,
    frame_major, frames_to_input, gap_plus_gmp, global_features, local_features, pool_map, tapped_maps,
)
from tests.helpers import make_run


class FakeTaps(nn.Module):
    """Stands in for the encoder: layer2 = the image's mean, layer3 = twice it, at CLIP RN101's sizes."""

    name = "fake"
    random_weights = True
    layout = TapLayout(224, ((512, 28), (1024, 14)), 28, 14)

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.inputs = []

    @property
    def device(self):
        return self.anchor.device

    def identity(self):
        return {"backbone": self.name, "random_weights": self.random_weights}

    def forward(self, x):
        self.inputs.append(x.clone())
        mean = x.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
        return mean.expand(-1, 512, 28, 28).clone(), (2 * mean).expand(-1, 1024, 14, 14).clone()


def test_split_pool_averages_consecutive_channel_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert compress_channels(x, 3).flatten().tolist() == [0.5, 2.5, 4.5]
    with pytest.raises(VPCError, match="--cnl_pool 4 must divide the 6"):
        compress_channels(x, 4)


def test_split_pool_group_10_of_32_mixes_layer2_and_layer3_channels():
    x = torch.cat([torch.ones(1, 512, 1, 1), torch.full((1, 1024, 1, 1), 3.0)], dim=1)
    pooled = compress_channels(x, 32).flatten()
    # 48 channels a group: group 10 is channels 480..527 = 32 of layer2 (1) + 16 of layer3 (3).
    assert pooled[9] == 1 and pooled[11] == 3
    assert pooled[10] == pytest.approx((32 * 1 + 16 * 3) / 48)
    index = compress_channels(torch.arange(1536.0).view(1, 1536, 1, 1), 32).flatten()
    assert index[10] == pytest.approx((480 + 527) / 2)


@pytest.mark.parametrize("compression", ["split", "head", "random"])
def test_compressing_before_pooling_equals_pooling_before_compressing(compression):
    generator = torch.Generator().manual_seed(3)
    layer2, layer3 = torch.rand(3, 64, 28, 28, generator=generator), torch.rand(3, 128, 14, 14, generator=generator)

    class Taps:
        def __call__(self, images):
            return layer2, layer3

    published = compress_channels(tapped_maps(Taps(), None, 28), 32, compression, seed=1)
    ours = compressed_maps((layer2, layer3), channel_matrix(192, 32, compression, seed=1), 28)
    assert ours.shape == published.shape == (3, 32, 28, 28)
    if compression == "split":      # sums in another order
        torch.testing.assert_close(ours, published, rtol=1e-6, atol=1e-6)
    else:                           # selections copy values: the same to the bit
        assert torch.equal(ours, published)


def test_pool_map_is_3x3_average_then_adaptive_average():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # 3 x 3 means of a 4 x 4 ramp: [[5, 6], [9, 10]]; adaptive 2 -> 3 takes rows/cols (0), (0, 1), (1).
    assert pool_map(x, 3)[0, 0].tolist() == [[5, 5.5, 6], [7, 7.5, 8], [9, 9.5, 10]]
    assert pool_map(x, 1).item() == 7.5


def test_gap_plus_gmp_sums_mean_and_max():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[-1.0, -1.0], [-1.0, -5.0]]]])
    assert gap_plus_gmp(x).tolist() == [[3 + 6, -2 + -1]]


def test_frame_major_order():
    crops = torch.zeros(3, 3, 2, 1, 1)
    for i in range(3):
        for t in range(2):
            crops[i, :, t] = 10 * i + t
    assert frame_major(crops)[:, 0].flatten().tolist() == [0, 10, 20, 1, 11, 21]


def test_local_features_one_frame_major_batch_upsampled_and_split_pooled():
    crops = torch.zeros(3, 3, 2, 2, 2)
    for i in range(3):
        for t in range(2):
            crops[i, :, t] = 10 * i + t
    crops[0, 0, 0] = torch.tensor([[0.0, 1.0], [2.0, 3.0]])     # a ramp to see the interpolation
    fake = FakeTaps()
    lf = local_features(crops.numpy(), fake, cnl_pool=32)
    assert len(fake.inputs) == 1 and fake.inputs[0].shape == (6, 3, 224, 224)
    first = fake.inputs[0][0, 0]
    # bilinear, align_corners=True: corners kept, the step along a row is 1/223.
    assert [first[0, 0].item(), first[0, -1].item(), first[-1, 0].item(), first[-1, -1].item()] == [0, 1, 2, 3]
    assert first[0, 1].item() == pytest.approx(1 / 223)
    means = fake.inputs[0].mean(dim=(1, 2, 3))
    assert means[1:].tolist() == pytest.approx([10, 20, 1, 11, 21])
    assert lf.shape == (3, 32, 2, 28, 28) and lf.dtype == torch.float32
    assert lf[2, 0, 1, 5, 5].item() == pytest.approx(21)                         # layer2 groups
    assert lf[2, 10, 1, 5, 5].item() == pytest.approx((32 * 21 + 16 * 42) / 48)  # the mixed group
    assert lf[2, 31, 1, 5, 5].item() == pytest.approx(42)                        # layer3 groups
    assert lf[1, 0, 0].unique().tolist() == pytest.approx([10])


def test_local_features_leave_the_placeholder_to_the_caller():
    fake = FakeTaps()
    assert local_features(np.zeros(1, np.float32), fake, 32) is None and not fake.inputs


def test_local_features_of_a_real_clip_resnet_architecture():
    backbone = ResNetTaps(layers=(1, 1, 1), width=8).float()     # taps: 64 + 128 = 192 channels
    lf = local_features(torch.rand(2, 3, 2, 64, 64) * 2 - 1, backbone, cnl_pool=32)
    assert lf.shape == (2, 32, 2, 28, 28) and torch.isfinite(lf).all()


def test_frame_normalisations():
    frame = np.zeros((224, 224, 3), np.uint8)
    frame[...] = (0, 255, 51)                                     # B, G, R
    published = frames_to_input([frame], "published")
    assert published.shape == (1, 3, 224, 224)
    assert published[0, :, 7, 9].tolist() == pytest.approx([-1, 1, 51 / 127.5 - 1])     # BGR order
    clip = frames_to_input([frame], "clip")[0, :, 7, 9]                                  # RGB order
    assert clip.tolist() == pytest.approx([(0.2 - 0.48145466) / 0.26862954, (1 - 0.4578275) / 0.26130258,
                                           (0 - 0.40821073) / 0.27577711])
    big = np.full((360, 640, 3), 255, np.uint8)
    assert frames_to_input([big, big], "published").shape == (2, 3, 224, 224)
    with pytest.raises(VPCError, match="unknown normalization"):
        frames_to_input([frame], "imagenet")


def test_global_features_are_gap_plus_gmp_per_frame():
    frames = [np.full((40, 60, 3), value, np.uint8) for value in (0, 255, 51)]
    fake = FakeTaps()
    gf = global_features(frames, fake)
    assert len(fake.inputs) == 1 and fake.inputs[0].shape == (3, 3, 224, 224)
    assert gf.shape == (1, 1536, 3)
    means = [-1, 1, 51 / 127.5 - 1]
    assert gf[0, 0].tolist() == pytest.approx([2 * m for m in means])        # layer2: mean + max
    assert gf[0, 1535].tolist() == pytest.approx([4 * m for m in means])     # layer3 = 2 x layer2


def make_video(folder, n_frames):
    folder.mkdir(parents=True)
    paths = []
    for i in range(n_frames):
        path = folder / f"{i:04d}.png"                       # lossless: frame values known exactly
        cv2.imwrite(str(path), np.full((24, 32, 3), 10 * i, np.uint8))
        paths.append(path)
    return Video(name=folder.name, index=0, source=folder, frame_paths=paths)


def write_objects(path, batches, record=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if record:
            write_h5_record(f, record)
        for key, batch in batches.items():
            f.create_dataset(key, data=batch)


@pytest.fixture
def video_and_objects(tmp_path):
    video = make_video(tmp_path / "data" / "01", n_frames=7)     # 3 clips of 2 frames, 1 frame left over
    work = WorkDir(tmp_path / "work", "avenue")
    crops = np.zeros((2, 3, 2, 8, 8), np.float32)
    crops[1] = 0.5
    write_objects(work.object_batches("train", "01"),
                  {"0000": crops, "0001": np.zeros(1, np.float32), "0002": crops[:1] - 0.25})
    return video, work


def test_video_features_files_follow_the_published_layout(video_and_objects):
    video, work = video_and_objects
    fake = FakeTaps()
    extract_split_features([video], "train", make_run(work.root, cnl_pool=32), fake)
    local_path = work.root / "l_features/avenue/32/visual/train/01_video_features.h5"
    global_path = work.root / "g_features/avenue/32/visual/train/01_video_features.h5"
    with h5py.File(local_path, "r") as f:
        assert list(f) == ["0000", "0001", "0002"]
        assert f["0000"].shape == (2, 32, 2, 28, 28) and f["0002"].shape == (1, 32, 2, 28, 28)
        assert f["0000"][1, 0, 1, 0, 0] == pytest.approx(0.5) and f["0002"][0, 31, 0, 3, 3] == pytest.approx(-0.5)
        placeholder = f["0001"][()]
        assert placeholder.shape == (1,) and placeholder.dtype == np.float32 and placeholder[0] == 0
        assert read_h5_record(f) == {"dataset": "avenue", "consecutive": 2, "cnl_pool": 32,
                                     "backbone": "fake", "random_weights": True}
    with h5py.File(global_path, "r") as f:
        assert list(f) == ["0000", "0001", "0002"]
        assert f["0002"].shape == (1, 1536, 2)
        # frames 4 and 5 hold 40 and 50: layer2 taps give 2 x (v / 127.5 - 1).
        assert f["0002"][0, 0].tolist() == pytest.approx([2 * (40 / 127.5 - 1), 2 * (50 / 127.5 - 1)])
        assert read_h5_record(f)["normalization"] == "published"
    assert len(fake.inputs) == 2 + 3                             # 2 object clips + 3 frame clips


def test_finished_files_are_kept_and_other_settings_refused(video_and_objects):
    video, work = video_and_objects
    run = make_run(work.root, cnl_pool=32)
    assert extract_video_features(video, "train", run, FakeTaps()) == (True, True)
    fake = FakeTaps()
    assert extract_video_features(video, "train", run, fake) == (False, False)
    assert not fake.inputs
    work.global_features(32, "train", "01").unlink()              # only the missing file is redone
    assert extract_video_features(video, "train", run, fake) == (False, True)
    clip_run = replace(run, method=replace(run.method, normalization="clip"))
    # CLIP's normalisation has a folder of its own: write the published files there to see the refusal
    shutil.copytree(work.global_dir(32), work.global_dir("32_clip"))
    with pytest.raises(VPCError, match="other settings .*normalization: file 'published', this run 'clip'"):
        extract_video_features(video, "train", clip_run, fake)
    assert extract_video_features(video, "train", replace(clip_run, overwrite=True), fake) == (True, True)


def test_object_batches_that_do_not_match_the_video_are_refused(video_and_objects, tmp_path):
    video, work = video_and_objects
    fake = FakeTaps()
    with pytest.raises(VPCError, match="object batches not found: .*rerun ObjectDetection"):
        extract_video_features(video, "train", make_run(tmp_path / "elsewhere", cnl_pool=32), fake)
    with pytest.raises(VPCError, match="holds 3 clips, the video gives 2: .*rerun ObjectDetection"):
        extract_video_features(video, "train", make_run(work.root, consecutive=3, cnl_pool=32), fake)
    recorded = WorkDir(tmp_path / "recorded", "avenue")
    write_objects(recorded.object_batches("train", "01"), {"0000": np.zeros(1), "0001": np.zeros(1)},
                  {"consecutive": 4})
    with pytest.raises(VPCError, match="made with --consecutive 4"):
        extract_video_features(video, "train", make_run(recorded.root, cnl_pool=32), fake)
    assert not recorded.local_features(32, "train", "01").exists()
