"""CLIP's modified ResNet image encoder cut after layer3: the feature taps of SPEC section 3.

Loading (``Memorization.encoders.registry.load_backbone``) follows OpenAI's ``clip.load``: a model
name resolves to CLIP's download cache (``~/.cache/clip/<file>.pt``, downloaded by clip's own code
when missing), a path to a local file (OpenAI's TorchScript archive or a state dict); sizes are
inferred from the weights; conv and linear weights are rounded to fp16
(``clip.model.convert_weights``). On CUDA the encoder then runs in fp16, on CPU in float32 with the
rounded weights (SPEC section 10).

On the CPU the encoder runs by default in its inference form (``fold_batchnorm``): every
BatchNorm folded into the convolution before it, computed in float64 from the same fp16-rounded
weights, in channels-last memory. Its taps equal the published form's within about 1e-6 relative
(tested within 1e-4) and it runs about 1.3 times as fast; ``form="published"`` keeps the
published layer sequence. On CUDA the published fp16 form is the default, as the published code.

``precision="bf16"`` / ``"fp16"`` (``contract.compute_dtype``: bfloat16 on CUDA or a CPU with bfloat16
instructions, float16 on CUDA) folds on either device, each BatchNorm rounded once from float64 into the
convolution's weights of that type, channels-last; the taps come back in float32, within about 1 %.

Random weights are built only when asked for (``random_weights=True``) and say so in
``.description``; a checkpoint saved from them keeps a marker, so it says so when loaded back.
"""
import torch
from clip.model import ModifiedResNet
from torch import nn

from extra.errors import VPCError
from Memorization.encoders.contract import (
    Encoder, TapLayout, compute_dtype, computing_in, fp16_rounded, load_weights, place, seeded, visual_weights,
)

# Blocks of layer1..layer3 and stem width of CLIP's ResNets (the layer4 count plays no part here);
# their names are listed in Memorization.encoders.registry.
ARCHITECTURES = {
    "RN50": ((3, 4, 6), 64),
    "RN101": ((3, 4, 23), 64),
    "RN50x4": ((4, 6, 10), 80),
    "RN50x16": ((6, 8, 18), 96),
    "RN50x64": ((3, 15, 36), 128),
}
# The published input side (for every ResNet): layer2 is then 28 x 28 (stride 8), layer3 14 x 14
# (stride 16). The local features keep layer2's grid, the global stream layer3's (SPEC section 3).
INPUT_SIZE = 224
LOCAL_GRID, GLOBAL_GRID = INPUT_SIZE // 8, INPUT_SIZE // 16

# How the encoder computes: BatchNorm folded and channels-last (CPU default), or the published layers.
FORMS = ("auto", "folded", "published")


class ResNetTaps(Encoder):
    """Stem and layer1..layer3 of CLIP's ``ModifiedResNet``; forward returns (layer2, layer3) in float32.

    Submodule names are CLIP's, so the state dict keys are OpenAI's ``visual.*`` keys without the
    prefix. ``layer4`` and the attention pool are dropped as soon as the ResNet is constructed:
    they are never loaded nor run.
    """

    def __init__(self, layers, width):
        super().__init__()
        # layer4 with a single block and a 1 x 1 attention pool: the smallest throw-away tail.
        resnet = ModifiedResNet(layers=(*layers, 1), output_dim=width * 32, heads=width * 32 // 64,
                                input_resolution=32, width=width)
        for name in ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "relu3",
                     "avgpool", "layer1", "layer2", "layer3"):
            setattr(self, name, getattr(resnet, name))
        self.layers = tuple(layers)
        self.width = width
        self.name = _architecture_name(layers, width)
        self.description = f"CLIP {self.name}"
        self.layout = TapLayout(INPUT_SIZE, ((width * 8, LOCAL_GRID), (width * 16, GLOBAL_GRID)),
                                LOCAL_GRID, GLOBAL_GRID)
        self.folded = False
        self.eval()                      # inference only: BatchNorm uses its running statistics

    def forward(self, x):
        # Same sequence as ModifiedResNet.forward up to layer3 (input cast to the weights' dtype).
        # A folded encoder's BatchNorms are identities and its memory channels-last; the taps are
        # returned in the default layout, so what pools them sums in the same order either way.
        x = x.type(self.conv1.weight.dtype)
        if self.folded:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer1(x)
        layer2 = self.layer2(x)
        layer3 = self.layer3(layer2)     # layer3's first block only reads its input (it has a downsample)
        return layer2.float().contiguous(), layer3.float().contiguous()


def _folded_convolution(conv, batchnorm, dtype=None):
    """One convolution computing ``batchnorm(conv(x))`` (inference statistics), weights folded in float64
    and rounded once to ``dtype`` (default: the convolution's)."""
    scale = batchnorm.weight.double() / torch.sqrt(batchnorm.running_var.double() + batchnorm.eps)
    shift = batchnorm.bias.double() - batchnorm.running_mean.double() * scale
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, conv.groups, bias=True, device=conv.weight.device)
    dtype = dtype or conv.weight.dtype
    folded.weight.data = (conv.weight.double() * scale[:, None, None, None]).to(dtype)
    folded.bias.data = shift.to(dtype)
    return folded


def fold_batchnorm(model, dtype=None):
    """``model`` (ResNetTaps) in its inference form, in place: each BatchNorm folded into its convolution
    (weights in ``dtype``, default: the convolution's).

    CLIP's ResNet applies every BatchNorm right after one convolution: ``bnK`` after ``convK`` in the
    stem and the bottlenecks, and ``downsample``'s "2" after its "1". The weights hash
    (``identity``) stays that of the published weights, taken before folding.
    """
    if model.folded:
        return model
    model.identity()
    for module in list(model.modules()):
        children = dict(module.named_children())
        for name, child in children.items():
            if isinstance(child, nn.BatchNorm2d):
                conv_name = "conv" + name[2:] if name.startswith("bn") else str(int(name) - 1)
                setattr(module, conv_name, _folded_convolution(children[conv_name], child, dtype))
                setattr(module, name, nn.Identity())
    model.folded = True
    return model.to(memory_format=torch.channels_last)


def _architecture_name(layers, width):
    for name, architecture in ARCHITECTURES.items():
        if architecture == (tuple(layers), width):
            return name
    return f"ResNet(layers={tuple(layers)}, width={width})"


def finish(model, device=None, form="auto", precision="exact"):
    """CLIP's loader semantics (``contract.place``: fp16 compute on CUDA, float32 with the rounded
    values on the CPU), then folded when ``form`` says so ("auto": folded on the CPU, published on CUDA;
    folded on both at a fast ``precision``), computing in ``precision``'s type (``contract.computing_in``)."""
    if form not in FORMS:
        raise VPCError(f"unknown encoder form {form!r}: use one of {', '.join(FORMS)}")
    dtype = compute_dtype(precision, device)
    model = place(model, device)
    if form == "folded" or (form == "auto" and (model.device.type == "cpu" or dtype is not None)):
        fold_batchnorm(model, dtype)
    return computing_in(model, precision, dtype)


def build_random(name="RN101", seed=0):
    """The named architecture with PyTorch's default initialisation (seeded), fp16-rounded, on CPU."""
    if name not in ARCHITECTURES:
        raise VPCError(f"random weights take an architecture name ({', '.join(ARCHITECTURES)}), not {name!r}")
    return fp16_rounded(seeded(lambda: ResNetTaps(*ARCHITECTURES[name]), seed)).mark_random(seed)


def visual_state_dict(state_dict, source="checkpoint"):
    """The image encoder's weights without the ``visual.`` prefix, checked to be a CLIP ResNet's."""
    visual = visual_weights(state_dict)
    if "proj" in visual or "class_embedding" in visual:
        raise VPCError(f"{source} holds a CLIP vision transformer, not a CLIP ResNet: load it with "
                       f"Memorization.encoders.registry.load_backbone")
    if "layer1.0.conv1.weight" not in visual:
        raise VPCError(f"{source} is not a CLIP ResNet state dict (no 'visual.layer1.0.conv1.weight' "
                       f"nor 'layer1.0.conv1.weight' key)")
    return visual


def infer_architecture(visual):
    """(blocks of layer1..layer3, width) as clip.model.build_model infers them from the keys."""
    layers = tuple(len({k.split(".")[1] for k in visual if k.startswith(f"layer{b}.")}) for b in (1, 2, 3))
    return layers, visual["layer1.0.conv1.weight"].shape[0]


def model_from_state_dict(state_dict, source="checkpoint"):
    """Build the taps from a CLIP state dict: sizes inferred, fp16-rounded, on CPU in the stored dtypes."""
    visual = visual_state_dict(state_dict, source)
    return load_weights(fp16_rounded(ResNetTaps(*infer_architecture(visual))), visual, state_dict, source)
