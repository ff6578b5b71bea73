"""The encoder a run or a model file needs, loaded once: the stage's and the footage path's one way in.
"""
from extra.device import default_device
from extra.errors import VPCError
from Memorization.encoders import registry      # light: CLIP loads when an encoder does


def model_backbone(model, device=None, precision=None):
    """The encoder the model's banks were made with, checked against the hash the model recorded; in the
    model's precision unless ``precision`` says otherwise."""
    method = model.method
    backbone = registry.load_backbone(method.backbone, device=device or default_device(),
                                      random_weights=method.random_weights, precision=precision or method.precision)
    recorded = model.backbone.get("weights_sha256")
    if recorded and backbone.identity()["weights_sha256"] != recorded:
        raise VPCError(f"the weights of {method.backbone} differ from those the model's memory banks were made "
                       f"with; pass the same CLIP weights")
    return backbone


def load_backbone_for(run, device):
    """The run's encoder (``--backbone``, ``--clip_weights``, ``--random_weights``), its description printed."""
    backbone = registry.load_backbone(run.method.backbone, device=device, random_weights=run.method.random_weights,
                                      precision=run.method.precision)
    print(f"backbone: {backbone.description}", flush=True)
    return backbone
