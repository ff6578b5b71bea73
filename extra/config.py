"""The one file a user edits: where the data lives, where results go, per-dataset settings.

``data_root`` and ``work_dir`` below are the defaults; the environment variables
``VPC_DATA_ROOT`` / ``VPC_WORK_DIR`` override them, and the ``--data_root`` / ``--work_dir``
flags of either stage override both, so a run never requires editing code.

Every number in ``DATASETS`` comes from the published code (see ../shared/SPEC.md); change
them only to run a variant of the method.
"""
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Folder that holds avenue/, shanghai/ and iitb/ (layout: DATA_README.md).
data_root = REPO_ROOT / "data"
# Folder that receives objects/, l_features/, g_features/ (layout: WORK_README.md).
work_dir = REPO_ROOT / "work"


@dataclass(frozen=True)
class DatasetSettings:
    """Everything that differs between datasets, as data."""

    name: str
    # Frame layout, relative to data_root/<name>/ (DATA_README.md).
    train_dir: str
    test_dir: str
    gt_format: str                 # "avenue_mat" | "frame_masks" | "per_video_npy"
    gt_path: str                   # file (avenue_mat) or folder (the npy formats)
    skip_first_frame: bool         # iitb: the first frame of every video is not used
    max_w: int                     # frame size: boxes are clipped to it
    max_h: int
    consecutive: int               # d: frames per clip
    # Object detection (SPEC section 2).
    obj_size: int                  # object crops are obj_size x obj_size
    train_conf: float              # a box is kept when its confidence is strictly greater
    test_conf: float
    box_factor: tuple              # (fx, fy) box expansion factors
    # Memorization (SPEC sections 3 to 6).
    cnl_pool: int                  # c': split-pooling groups
    coreset_ratio: float           # same ratio for the three memory banks
    power_n: int                   # score exponent
    backbone: str = "RN101"
    detector_classes: tuple = field(default=(0, 1, 2, 3, 7))  # COCO: person, bicycle, car, motorcycle, truck
    pool_for_sm: int = 4           # p: spatial patches on a (28 // p) x (28 // p) grid
    # Evaluation with weights fixed in advance (not tuned on test labels): local = a1 S + (1-a1) T,
    # total = b1 local + (1-b1) global, Gaussian smoothing sigma (0: none). Neutral defaults.
    fixed_a1: float = 0.5
    fixed_b1: float = 0.5
    fixed_sigma: int = 0


DATASETS = {
    "avenue": DatasetSettings(
        name="avenue", train_dir="training/frames", test_dir="testing/frames",
        gt_format="avenue_mat", gt_path="avenue.mat", skip_first_frame=False,
        max_w=640, max_h=360, consecutive=10,
        obj_size=64, train_conf=0.7, test_conf=0.6, box_factor=(1.0, 1.0),
        cnl_pool=32, coreset_ratio=0.01, power_n=4,
    ),
    "shanghai": DatasetSettings(
        name="shanghai", train_dir="training", test_dir="testing",
        gt_format="frame_masks", gt_path="testframemask", skip_first_frame=False,
        max_w=856, max_h=480, consecutive=4,
        obj_size=224, train_conf=0.8, test_conf=0.6, box_factor=(1.2, 1.2),
        cnl_pool=64, coreset_ratio=0.25, power_n=2,
    ),
    "iitb": DatasetSettings(
        name="iitb", train_dir="training", test_dir="testing",
        gt_format="per_video_npy", gt_path="groundtruth", skip_first_frame=True,
        max_w=1920, max_h=1080, consecutive=4,
        obj_size=224, train_conf=0.8, test_conf=0.6, box_factor=(1.0, 1.0),
        cnl_pool=64, coreset_ratio=0.1, power_n=1,
    ),
}

# Presets of the own-footage commands (fit.py, score.py): the three datasets' settings, and
# "general", the ShanghaiTech numbers (13 scenes, the most varied benchmark) for any other camera.
# The folder fields play no part there, and boxes are clipped to each video's own frame size.
PRESETS = {**DATASETS, "general": replace(DATASETS["shanghai"], name="general")}

# Object detector weights: a YOLOv5 release name (looked up in, or downloaded to, torch's hub
# cache) or a local checkpoint file. The paper uses YOLOv5-L.
yolo_weights = "yolov5l"
