"""TODO docstring"""
from extra.device import default_device
from extra.errors import VPCError


def model_backbone(model, device=None):
    """The encoder the model's banks were made with, checked against the hash the model recorded."""
    from Memorization.encoders.clip_resnet import load_backbone

    method = model.method
    backbone = load_backbone(method.backbone, device=device or default_device(), random_weights=method.random_weights)
    recorded = model.backbone.get("weights_sha256")
    if recorded and backbone.identity()["weights_sha256"] != recorded:
        raise VPCError(f"the weights of {method.backbone} differ from those the model's memory banks were made "
                       f"with; pass the same CLIP weights")
    return backbone


def load_backbone_for(run, device):
    from Memorization.encoders.clip_resnet import (
        load_backbone,  # CLIP's import is slow: only when a model is needed
    )

    backbone = load_backbone(run.method.backbone, device=device, random_weights=run.method.random_weights)
    print(f"backbone: {backbone.description}", flush=True)
    return backbone
