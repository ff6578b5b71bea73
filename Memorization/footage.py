"""Features of one video anywhere on disk, straight from its frames: no dataset layout, no files
written. With a fitted model this scores a single video from Python:

    model = VideoPatchCore.load("avenue.vpc")
    score = model.score(video_features("clip.avi", model, detector="motion"))
"""
from extra import config
from extra.config import DATASETS
from extra.datasets import open_video
from extra.device import default_device
from extra.errors import VPCError
from Memorization.features import global_features, local_features
from Memorization.model import VideoFeatures
from ObjectDetection.boxes import clip_crops, object_boxes, objects_array
from ObjectDetection.detectors import make_detector


def model_backbone(model, device=None):
    """The encoder the model's banks were made with, checked against the hash the model recorded."""
    from Memorization.backbone import load_backbone

    method = model.method
    backbone = load_backbone(method.backbone, device=device or default_device(), random_weights=method.random_weights)
    recorded = model.backbone.get("weights_sha256")
    if recorded and backbone.identity()["weights_sha256"] != recorded:
        raise VPCError(f"the weights of {method.backbone} differ from those the model's memory banks were made "
                       f"with; pass the same CLIP weights")
    return backbone


def video_features(source, model, detector="yolov5", backbone=None, device=None):
    """VideoFeatures of a video file or frame folder, as the two stages would compute them with the
    model's settings (detection thresholds and sizes of its dataset preset, test confidence)."""
    video = open_video(source)
    method = model.method
    settings = DATASETS[method.dataset]
    if video.n_clips(method.consecutive) == 0:
        raise VPCError(f"{source} has {video.n_frames} frames, fewer than one clip of {method.consecutive}")
    backbone = backbone or model_backbone(model, device)
    finder = make_detector(detector, config.yolo_weights)
    local, glob = [], []
    for (_, frames), detections in zip(video.iter_clips(method.consecutive),
                                       finder.detect_video(video, method.consecutive)):
        boxes = object_boxes(detections, settings, settings.test_conf)
        objects = objects_array(clip_crops(frames, boxes, settings.obj_size))
        features = local_features(objects, backbone, method.cnl_pool, method.compression, method.compression_seed)
        local.append(objects if features is None else features)
        glob.append(global_features(frames, backbone, method.normalization))
    return VideoFeatures({"local": local, "global": glob})
