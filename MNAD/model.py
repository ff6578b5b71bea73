"""MNAD's two memory-guided autoencoders (MNAD/SPEC.md, sections 3 to 7) and the step functions a
training loop and an evaluation build on.

    model = MNAD("pred")                                     # or MNAD("recon")
    items = memory.init_items(10, 512, seed=0)
    optimizer, scheduler = optimizer_and_scheduler(model, lr=2e-4, epochs=60)
    items, losses = train_step(model, optimizer, window, items, 0.1, 0.1)   # window: (B, 3 t, H, W)
    model.eval(); frame = score_window(model, window, items, threshold=0.01); items = frame.items

The modules carry the official attribute names (``encoder.moduleConv1.0.weight``, ...), so a state
dict of the official models loads as it is; the memory has no parameters (its items are a tensor the
caller carries along).
"""
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from extra.errors import VPCError
from MNAD import memory
from MNAD.options import FEATURE_DIM, METHOD_DEFAULTS, METHODS, check_window


def _conv(cin, cout):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)


def _double_conv(cin, cout, activated=True):
    """conv-BN-ReLU-conv, then BN-ReLU unless ``activated`` is False (the encoder's last block)."""
    layers = [_conv(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=False), _conv(cout, cout)]
    if activated:
        layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=False)]
    return nn.Sequential(*layers)


def _upsample(cin, cout):
    """Transposed 3 x 3 convolution doubling the size, BN, ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel_size=3, stride=2, padding=1, output_padding=1),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=False))


def _output_block(cin, cout, width=64):
    """conv-BN-ReLU, conv-BN-ReLU, conv to the frame's channels, tanh."""
    return nn.Sequential(_conv(cin, width), nn.BatchNorm2d(width), nn.ReLU(inplace=False), _conv(width, width),
                         nn.BatchNorm2d(width), nn.ReLU(inplace=False), _conv(width, cout), nn.Tanh())


class Encoder(nn.Module):
    """Four conv blocks (64, 128, 256, 512 channels) with 2 x 2 max pooling between them: (B, c, H, W)
    -> features (B, 512, H / 8, W / 8) and, with ``skips``, the outputs of the first three blocks."""

    def __init__(self, in_channels, skips):
        super().__init__()
        self.skips = skips
        # camelCase names: the official ones, so that its state dicts load unchanged
        self.moduleConv1 = _double_conv(in_channels, 64)
        self.modulePool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.moduleConv2 = _double_conv(64, 128)
        self.modulePool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.moduleConv3 = _double_conv(128, 256)
        self.modulePool3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.moduleConv4 = _double_conv(256, FEATURE_DIM, activated=False)
        # never used in the forward pass; kept because the official state dicts hold their parameters
        self.moduleBatchNorm = nn.BatchNorm2d(FEATURE_DIM)
        self.moduleReLU = nn.ReLU(inplace=False)

    def forward(self, x):
        conv1 = self.moduleConv1(x)
        conv2 = self.moduleConv2(self.modulePool1(conv1))
        conv3 = self.moduleConv3(self.modulePool2(conv2))
        features = self.moduleConv4(self.modulePool3(conv3))
        return features, ((conv1, conv2, conv3) if self.skips else ())


class Decoder(nn.Module):
    """(B, 1024, h, w) -> frame (B, c, 8 h, 8 w) in [-1, 1]: three upsamplings, each after a conv block.
    With ``skips`` (prediction) each upsampling gives half the channels and the encoder's matching
    output is concatenated in front of it (U-Net); without (reconstruction) it keeps the channels."""

    def __init__(self, out_channels, skips):
        super().__init__()
        self.skips = skips
        up = 2 if skips else 1
        self.moduleConv = _double_conv(2 * FEATURE_DIM, 512)
        self.moduleUpsample4 = _upsample(512, 512 // up)
        self.moduleDeconv3 = _double_conv(512, 256)
        self.moduleUpsample3 = _upsample(256, 256 // up)
        self.moduleDeconv2 = _double_conv(256, 128)
        self.moduleUpsample2 = _upsample(128, 128 // up)
        self.moduleDeconv1 = _output_block(128, out_channels)

    def _join(self, skip, x):
        return torch.cat((skip, x), dim=1) if self.skips else x

    def forward(self, x, skips=()):
        conv1, conv2, conv3 = skips if self.skips else (None, None, None)
        x = self._join(conv3, self.moduleUpsample4(self.moduleConv(x)))
        x = self._join(conv2, self.moduleUpsample3(self.moduleDeconv3(x)))
        x = self._join(conv1, self.moduleUpsample2(self.moduleDeconv2(x)))
        return self.moduleDeconv1(x)


class TrainStep(NamedTuple):
    """A training forward: the frame, encoder features, the decoder's input (queries and their read), the
    updated items (detached) and the two losses (tensors, attached to the encoder's graph)."""

    output: torch.Tensor
    features: torch.Tensor
    read: torch.Tensor
    items: torch.Tensor
    compactness: torch.Tensor
    separateness: torch.Tensor


class TestStep(NamedTuple):
    """A test forward: the frame, encoder features, the decoder's input, the items (unchanged: the
    test-time update is gated by the frame's error, ``score_window``) and the compactness loss."""

    output: torch.Tensor
    features: torch.Tensor
    read: torch.Tensor
    items: torch.Tensor
    compactness: torch.Tensor


class MNAD(nn.Module):
    """The official ``convAE``: encoder, memory read, decoder. ``method`` "pred" predicts the last frame
    of a ``t_length`` window from the others (U-Net skips); "recon" reconstructs one frame (no skips,
    ``t_length`` 1). ``msize`` is the number of memory items the model is used with."""

    def __init__(self, method="pred", n_channel=3, t_length=None, msize=10, fdim=FEATURE_DIM, mdim=FEATURE_DIM):
        super().__init__()
        if method not in METHODS:
            raise VPCError(f"unknown MNAD method {method!r}: use one of {', '.join(METHODS)}")
        t_length = METHOD_DEFAULTS[method]["t_length"] if t_length is None else t_length
        check_window(method, t_length)
        if fdim != FEATURE_DIM or mdim != FEATURE_DIM:
            raise VPCError(f"MNAD's encoder gives {FEATURE_DIM} channels: --fdim and --mdim must be {FEATURE_DIM}")
        self.method, self.n_channel, self.t_length, self.msize = method, n_channel, t_length, msize
        skips = method == "pred"
        in_channels = n_channel * (t_length - 1) if skips else n_channel
        self.encoder = Encoder(in_channels, skips)
        self.decoder = Decoder(n_channel, skips)

    def config(self):
        """The constructor's arguments, as a JSON-ready dict (``MNAD(**config)`` rebuilds the model)."""
        return {"method": self.method, "n_channel": self.n_channel, "t_length": self.t_length,
                "msize": self.msize, "fdim": FEATURE_DIM, "mdim": FEATURE_DIM}

    def forward(self, x, items, train=True, update_norm="all", reduction="mean"):
        """``x`` (B, c_in, H, W) with H, W multiples of 8; ``items`` (M, 512). Training (``train``) also
        returns both losses and the updated items; test mode returns the compactness loss only.
        Batch norm follows ``model.train()`` / ``model.eval()``, as in the official code. ``update_norm``
        and ``reduction``: the training update's and losses' variants (memory.update_items, SPEC 10)."""
        features, skips = self.encoder(x)
        batch, dim, height, width = features.shape
        queries = memory.queries_of(features)
        if train:
            separateness = memory.separateness_loss(queries, items, reduction=reduction)
            # the official prediction model takes both items from one top-2 ranking
            compactness = memory.compactness_loss(queries, items, 2 if self.method == "pred" else 1, reduction)
        else:
            compactness = memory.compactness_loss(queries, items)
        read = memory.read(queries, items).view(batch, height, width, 2 * dim).permute(0, 3, 1, 2)
        output = self.decoder(read, skips)
        if train:
            return TrainStep(output, features, read, memory.update_items(queries, items, update_norm), compactness,
                             separateness)
        return TestStep(output, features, read, items, compactness)


def split_window(window, method, n_channel=3):
    """A window (B, n_channel t, H, W) -> (model input, target): prediction reads all frames but the last
    and predicts it; reconstruction reads and restores the window's one frame."""
    if method == "pred":
        return window[:, :-n_channel], window[:, -n_channel:]
    return window, window


def pixel_loss(output, target):
    """Mean squared error over every element, on the [-1, 1] range the frames are given in."""
    return torch.mean(nn.functional.mse_loss(output, target, reduction="none"))


def total_loss(pixel, compactness, separateness, loss_compact, loss_separate, swap=False):
    """pixel + loss_compact compactness + loss_separate separateness. ``swap`` gives the official
    reconstruction training, whose Train.py puts the triplet under the compactness weight and the
    compactness under the separateness weight (the same total when the two weights are equal)."""
    if swap:
        compactness, separateness = separateness, compactness
    return pixel + loss_compact * compactness + loss_separate * separateness


def optimizer_and_scheduler(model, lr=2e-4, epochs=60):
    """Adam over the encoder's then the decoder's parameters, and the cosine annealing of its learning
    rate to 0 over ``epochs`` (step the scheduler once per epoch)."""
    params = list(model.encoder.parameters()) + list(model.decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)


class StepLosses(NamedTuple):
    """The losses of one training step, as Python floats."""

    total: float
    pixel: float
    compactness: float
    separateness: float


def train_step(model, optimizer, window, items, loss_compact, loss_separate, swap=False, update_norm="all",
               reduction="mean"):
    """One official training step on a batch of windows: forward, losses, backward, Adam step. Returns
    the updated items (to carry to the next step) and the losses."""
    x, target = split_window(window, model.method, model.n_channel)
    step = model(x, items, train=True, update_norm=update_norm, reduction=reduction)
    optimizer.zero_grad()
    pixel = pixel_loss(step.output, target)
    loss = total_loss(pixel, step.compactness, step.separateness, loss_compact, loss_separate, swap)
    loss.backward()
    optimizer.step()
    return step.items, StepLosses(loss.item(), pixel.item(), step.compactness.item(), step.separateness.item())


class FrameScore(NamedTuple):
    """One test window's results: the PSNR of its frame, its feature compactness distance, the point
    score that gates the update, the items to use for the next window and whether they changed."""

    psnr: float
    distance: float
    point_score: float
    items: torch.Tensor
    updated: bool


@torch.no_grad()
def score_window(model, window, items, threshold, update_norm="all", point_score="official", psnr_peak="one"):
    """Score one test window (1, n_channel t, H, W) as the official evaluation does: a test forward with
    the current items, the frame's PSNR and compactness distance, then the items updated with the
    frame's queries when its point score is below ``threshold``. The model must be in eval mode.
    ``point_score`` and ``psnr_peak``: the forms of memory.point_score and memory.frame_psnr (SPEC 10)."""
    if model.training:
        raise RuntimeError("score_window needs model.eval(): batch norm would use the test batch's statistics")
    if window.shape[0] != 1:
        raise RuntimeError(f"score_window scores one window at a time, not {window.shape[0]}")   # a bug
    x, target = split_window(window, model.method, model.n_channel)
    step = model(x, items, train=False)
    score = memory.point_score(step.output[0], target[0], point_score)
    new_items, updated = memory.test_time_update(memory.queries_of(step.features), items, score, threshold,
                                                 update_norm)
    return FrameScore(memory.frame_psnr(step.output[0], target[0], psnr_peak), step.compactness.item(), score,
                      new_items, updated)


def score_sequence(model, windows, items, config, device):
    """Score ``windows`` (an iterable of (n_channel t, H, W) tensors) in order as the official test loop
    does, the items carried from window to window and updated online (``config``: th, update_norm,
    point_score, psnr_peak). Returns (PSNR per window, distance per window, the items after the last)."""
    psnr, distance = [], []
    for window in windows:
        frame = score_window(model, window[None].to(device), items, config.th, config.update_norm,
                             config.point_score, config.psnr_peak)
        items = frame.items
        psnr.append(frame.psnr)
        distance.append(frame.distance)
    return np.asarray(psnr), np.asarray(distance), items
