"""The encoder a run or a model file needs, loaded once: the stage's and the footage path's one way in.
"""
from extra.device import default_device
from extra.errors import VPCError
from Memorization.encoders import registry      # light: CLIP loads when an encoder does


def model_backbone(model, device=None, precision=None, clip_weights=None):
    """The encoder the model's banks were made with, in the model's precision unless ``precision`` says
    otherwise: the first of ``clip_weights``, the weights the model recorded (a name or a file) and CLIP's
    cache for its architecture whose hash is the one the model recorded. None matching is one line naming
    the weights needed."""
    method = model.method
    recorded = model.backbone.get("weights_sha256")
    architecture = model.backbone.get("backbone") or method.backbone
    candidates = list(dict.fromkeys(c for c in (clip_weights, method.backbone, architecture) if c))
    tried = []
    for candidate in candidates:
        try:
            backbone = registry.load_backbone(candidate, device=device or default_device(),
                                              random_weights=method.random_weights,
                                              precision=precision or method.precision)
        except VPCError as error:       # not there (a moved file, an empty cache): the next place
            tried.append(f"{candidate} ({' '.join(str(error).split())[:80]})")
            continue
        if not recorded or backbone.identity()["weights_sha256"] == recorded:
            return backbone
        tried.append(f"{candidate} (other weights)")
    raise VPCError(f"the model's memory banks were made with {architecture} weights of SHA-256 {recorded[:16]}...; "
                   f"none found: {'; '.join(tried)}; pass that weights file with --clip_weights")


def load_backbone_for(run, device):
    """The run's encoder (``--backbone``, ``--clip_weights``, ``--random_weights``), its description printed."""
    backbone = registry.load_backbone(run.method.backbone, device=device, random_weights=run.method.random_weights,
                                      precision=run.method.precision)
    print(f"backbone: {backbone.description}", flush=True)
    return backbone
