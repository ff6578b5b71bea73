"""CLIP's vision transformer (ViT-B/16) cut after its ninth block: patch tokens as feature maps.

Taps: the patch tokens (class token dropped) after blocks 6 and 9 of 12, each reshaped to a
(B, 768, 14, 14) map in the patches' row-major order. Why these two: two depths, as RN101's layer2
and layer3. Block 6 (half way) still holds each patch's own appearance; block 9 adds context. The
last blocks serve the class token, the only output CLIP's training aligns with text, and their patch
tokens lose locality (dense uses of CLIP ViTs tap intermediate blocks for this reason); blocks 10..12,
``ln_post`` and ``proj`` are never loaded nor run (a quarter of the encoder's cost).

Grid: the banks cut the tokens' own 14 x 14 grid (``layout.local_grid = 14``), not an upsampled 28 x 28:
upsampling adds no information and four times the local feature files. Spatial patches are then
(14 // p) x (14 // p): ``--pool_for_sm 2`` gives RN101's 7 x 7 layout of 32 x 32 pixel cells (the
default p = 4 gives 3 x 3). The global stream pools to 14 x 14 as for RN101.

Loading, fp16 rounding and compute follow ``clip.load`` as the ResNets do (``contract``): on CUDA fp16
(the taps cast to float32), on the CPU float32 with the fp16-rounded weights; ``precision="bf16"`` /
``"fp16"`` casts the same weights CLIP keeps in fp16 on CUDA to that type (LayerNorms stay float32, as
CLIP's). Random weights only when asked for, marked as the ResNets' are.
"""
import torch
from clip.model import VisionTransformer

from extra.errors import VPCError
from Memorization.encoders.contract import (
    Encoder, TapLayout, compute_dtype, computing_in, fp16_rounded, load_weights, place, seeded, visual_weights,
)

# (patch size, width, input side) of the named architectures (CLIP's build_model infers the same).
ARCHITECTURES = {"ViT-B/16": (16, 768, 224)}
TAPPED_BLOCKS = (6, 9)        # 1-based: the outputs of these transformer blocks are the taps
# The one way it computes (the ResNets' "folded" rewrites BatchNorm, which a transformer lacks).
FORMS = ("auto", "published")


class ViTTaps(Encoder):
    """Patch embedding and the first ``TAPPED_BLOCKS[-1]`` blocks of CLIP's ``VisionTransformer``;
    forward returns the patch tokens of the tapped blocks as (B, width, grid, grid) float32 maps.

    Submodule names are CLIP's, so the state dict keys are OpenAI's ``visual.*`` keys without the prefix.
    """

    def __init__(self, patch_size, width, input_size):
        super().__init__()
        vit = VisionTransformer(input_resolution=input_size, patch_size=patch_size, width=width,
                                layers=TAPPED_BLOCKS[-1], heads=width // 64, output_dim=1)
        for name in ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer"):
            setattr(self, name, getattr(vit, name))
        self.grid = input_size // patch_size
        self.name = next((name for name, sizes in ARCHITECTURES.items() if sizes == (patch_size, width, input_size)),
                         f"ViT(patch={patch_size}, width={width}, input={input_size})")
        self.description = f"CLIP {self.name}"
        self.layout = TapLayout(input_size, ((width, self.grid),) * len(TAPPED_BLOCKS), self.grid, self.grid)
        self.eval()

    def forward(self, x):
        # VisionTransformer.forward up to the last tapped block (input cast to the weights' dtype).
        x = self.conv1(x.type(self.conv1.weight.dtype)).flatten(2).permute(0, 2, 1)      # (B, grid², width)
        batch, _, width = x.shape
        cls = self.class_embedding.to(x.dtype) + x.new_zeros(batch, 1, width)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)).permute(1, 0, 2)  # LND
        taps = []
        for number, block in enumerate(self.transformer.resblocks, start=1):
            x = block(x)
            if number in TAPPED_BLOCKS:      # patch tokens (class token dropped) -> (B, width, grid, grid)
                taps.append(x[1:].permute(1, 2, 0).reshape(batch, width, self.grid, self.grid).float().contiguous())
        return tuple(taps)


def finish(model, device=None, form="auto", precision="exact"):
    """``contract.place``: fp16 compute on CUDA, float32 with the rounded values on the CPU; then in
    ``precision``'s type (``contract.computing_in``)."""
    if form not in FORMS:
        raise VPCError(f"unknown encoder form {form!r} for a vision transformer: use one of {', '.join(FORMS)}")
    dtype = compute_dtype(precision, device)
    return computing_in(place(model, device), precision, dtype)


def build_random(name="ViT-B/16", seed=0):
    """The named architecture with CLIP's initialisation (seeded), fp16-rounded, on CPU."""
    if name not in ARCHITECTURES:
        raise VPCError(f"random weights take an architecture name ({', '.join(ARCHITECTURES)}), not {name!r}")
    return fp16_rounded(seeded(lambda: ViTTaps(*ARCHITECTURES[name]), seed)).mark_random(seed)


def infer_architecture(visual):
    """(patch size, width, input side) as clip.model.build_model infers them from the keys."""
    patch_size, width = visual["conv1.weight"].shape[-1], visual["conv1.weight"].shape[0]
    return patch_size, width, patch_size * round((visual["positional_embedding"].shape[0] - 1) ** 0.5)


def model_from_state_dict(state_dict, source="checkpoint"):
    """Build the taps from a CLIP ViT state dict: sizes inferred, fp16-rounded, on CPU in the stored dtypes."""
    visual = visual_weights(state_dict)
    if not {"class_embedding", "conv1.weight", "positional_embedding"} <= set(visual):
        raise VPCError(f"{source} is not a CLIP vision transformer state dict (no 'visual.class_embedding', "
                       f"'visual.conv1.weight' and 'visual.positional_embedding' keys)")
    return load_weights(fp16_rounded(ViTTaps(*infer_architecture(visual))), visual, state_dict, source)
