"""The Memorization stage's command-line flags and their resolution into one MemorizationRun.

Shared by the stage's commands (run.py, reproduce.py, figures.py); cheap to import, so a mistyped
flag or a missing folder is reported before any model code loads.
"""
from pathlib import Path

from extra.cli import (
    OneLineErrorParser, add_bool_flag, add_false_alarm_argument, add_ray_arguments, base_parser,
    checked_false_alarm_rate, resolve_context,
)
from extra.errors import VPCError
from extra.methods import TRAINED
from extra.evaluation.fusion import GLOBAL_FUSION, LOCAL_FUSION, FusionWeights
from Memorization.banks.specs import BANKS
from Memorization.encoders.registry import DEFAULT_ENCODER, ENCODER_NAMES
from Memorization.options import (
    BANK_ORDERS, COMPRESSIONS, NORMALIZATIONS, PRECISIONS, PUBLISHED_BANKS, SEARCHES, TEMPORAL_POOLING,
    MemorizationRun, MethodConfig,
)


def add_method_arguments(parser):
    """The method's settings and ablation switches (defaults: the paper's method, per dataset)."""
    parser.add_argument("--cnl_pool", type=int, default=None,
                        help="c': channels of the local features (default: the dataset's, 32 avenue / 64 otherwise)")
    parser.add_argument("--compression", default=COMPRESSIONS[0], choices=COMPRESSIONS,
                        help="local channels to c': split pooling (default), the first c' (head) or c' drawn "
                             "at random (random; features in l_features/<dataset>/<c'>_<mode>/)")
    parser.add_argument("--compression_seed", type=int, default=0, help="seed of the random compression's draw")
    parser.add_argument("--pool_for_sm", type=int, default=None,
                        help="p: spatial patches on a (G // p) x (G // p) grid, G the encoder's local grid: 28 for "
                             "the ResNets, 14 for ViT-B/16 (default 4)")
    parser.add_argument("--banks", default=",".join(PUBLISHED_BANKS),
                        help=f"memory banks, comma-separated, among the registered {', '.join(BANKS)} "
                             f"(default: {','.join(PUBLISHED_BANKS)}, the paper's)")
    for bank in BANKS:
        parser.add_argument(f"--{bank}_f_coreset", type=float, default=None,
                            help=f"coreset ratio of the {bank} bank (default: the dataset's; >= 1 keeps all)")
    parser.add_argument("--eps_coreset", type=float, default=0.9, help="eps of the sparse random projection")
    add_bool_flag(parser, "--random_projection", False, "compute coreset distances on a sparse random projection")
    parser.add_argument("--normalization", default="published", choices=NORMALIZATIONS,
                        help="whole-frame input scaling: published x/127.5-1 (default) or CLIP's mean/std")
    parser.add_argument("--temporal_pooling", default="mismatched", choices=sorted(TEMPORAL_POOLING),
                        help="temporal patch pooling: mismatched (avg memorising, max inference; default)")
    add_bool_flag(parser, "--absolute_difference", False, "temporal patches from |lf_t+1 - lf_t| (the slides)")
    parser.add_argument("--bank_order", default=BANK_ORDERS[0], choices=BANK_ORDERS,
                        help="coreset per training video then concatenate (default, published) or the reverse")
    parser.add_argument("--search", default=SEARCHES[0], choices=SEARCHES,
                        help="nearest-neighbour search of the scores: exact (default), faiss-flat (exact to float32 "
                             "rounding) or faiss-ivf (approximate; its recall and score change are measured and "
                             "printed); faiss: pip install -r requirements-faiss.txt")


def add_backbone_arguments(parser):
    """Which CLIP encoder and weights extract the features."""
    parser.add_argument("--backbone", default=DEFAULT_ENCODER,
                        help=f"image encoder: {', '.join(ENCODER_NAMES)} (default {DEFAULT_ENCODER}, the paper's; "
                             f"ViT-B/16 taps blocks 6 and 9 on a 14 x 14 grid, --pool_for_sm 2 gives RN101's 7 x 7 "
                             f"spatial patches), or a weights file of one")
    parser.add_argument("--clip_weights", default=None,
                        help="local CLIP weights file (OpenAI's archive or a state dict) instead of CLIP's cache")
    add_bool_flag(parser, "--random_weights", False,
                  "use seeded RANDOM backbone weights (tests, demos without weights; results are marked)")
    add_precision_argument(parser)


def add_precision_argument(parser, default=PRECISIONS[0], default_text="exact, the published code's arithmetic"):
    parser.add_argument("--precision", default=default, choices=PRECISIONS,
                        help=f"the encoder's arithmetic (default: {default_text}): exact, bf16 (CUDA, or a CPU with "
                             f"AVX512-BF16 or AMX) or fp16 (CUDA), faster with features within about 1 %%, in "
                             f"feature files and banks of their own (README, Speed)")


def add_evaluation_arguments(parser):
    """Weights and smoothing fixed in advance, for the evaluation a user can trust."""
    parser.add_argument("--fixed_a1", type=float, default=None,
                        help="weight of the spatial score, chosen in advance (default: extra/config.py)")
    parser.add_argument("--fixed_b1", type=float, default=None,
                        help="weight of the local stream, chosen in advance (default: extra/config.py)")
    parser.add_argument("--fixed_sigma", type=int, default=None,
                        help="Gaussian smoothing chosen in advance, 0 for none (default: extra/config.py)")
    add_bool_flag(parser, "--label_free", True, "calibrate fusion, normalisation and an alarm threshold on the "
                                                "training videos alone (pseudo-anomalies; README, Evaluation)")
    add_false_alarm_argument(parser)


def build_parser(description):
    """The Memorization stage's command line (run.py; figures.py adds its own flags to it)."""
    parser = base_parser(description)
    add_method_arguments(parser)
    add_bool_flag(parser, "--save_feature", True, "extract test features (false: use the saved ones)")
    add_bool_flag(parser, "--save_memory", True, "build the memory banks (false: use the saved ones)")
    add_bool_flag(parser, "--overwrite", False, "redo features and banks even when saved ones match")
    add_bool_flag(parser, "--verify", False, "read every reused feature file whole and check it against its "
                                             "checksums first (slower; damage in files read anyway is always caught)")
    add_backbone_arguments(parser)
    add_evaluation_arguments(parser)
    add_bool_flag(parser, "--report", False, "also write an HTML report per test video into the results folder's "
                                             "reports/ (README, Reviewing alarms; needs --label_free)")
    return parser


def _pick(value, default):
    return default if value is None else value


def banks_from_args(text):
    """The banks --banks names, in the registry's order (so the same banks make the same run)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BANKS]
    if unknown:
        raise VPCError(f"--banks: no memory bank named {unknown[0]!r} is registered; choose among {', '.join(BANKS)}")
    fused = [name for name in (*LOCAL_FUSION, GLOBAL_FUSION) if name not in names]
    if fused:
        raise VPCError(f"--banks must include {', '.join((*LOCAL_FUSION, GLOBAL_FUSION))} (the fused score, its "
                       f"calibration and alarms are made of them; other banks are scored on their own), "
                       f"{fused[0]} is missing")
    return tuple(name for name in BANKS if name in names)


def method_from_args(args, context):
    """The MethodConfig of the flags, defaults from the dataset's settings (extra/config.py)."""
    settings = context.settings

    if args.clip_weights and args.random_weights:
        raise VPCError("--clip_weights and --random_weights exclude each other")
    if args.backbone not in ENCODER_NAMES:      # caught here, before CLIP's slow import
        if args.random_weights:
            raise VPCError(f"--random_weights takes an encoder name ({', '.join(ENCODER_NAMES)}), "
                           f"not --backbone {args.backbone!r}")
        if not Path(args.backbone).expanduser().is_file():
            raise VPCError(f"--backbone {args.backbone!r} is neither an encoder ({', '.join(ENCODER_NAMES)}) "
                           f"nor a weights file")
    if args.search != SEARCHES[0]:
        from Memorization.knn.search import faiss_module   # torch-heavy: only when a faiss search is asked for

        faiss_module()
    banks = banks_from_args(args.banks)
    return MethodConfig(
        dataset=settings.name, consecutive=context.consecutive,
        cnl_pool=_pick(args.cnl_pool, settings.cnl_pool), pool_for_sm=_pick(args.pool_for_sm, settings.pool_for_sm),
        power_n=settings.power_n, banks=banks,
        ratios={bank: _pick(getattr(args, f"{bank}_f_coreset"), settings.coreset_ratio) for bank in banks},
        eps_coreset=args.eps_coreset, random_projection=args.random_projection,
        temporal_pooling=args.temporal_pooling, absolute_difference=args.absolute_difference,
        bank_order=args.bank_order, normalization=args.normalization,
        compression=args.compression, compression_seed=args.compression_seed,
        backbone=args.clip_weights or args.backbone, random_weights=args.random_weights, search=args.search,
        precision=args.precision)


def resolve_run(args):
    """The whole configuration of a run, resolved once from extra/config.py and the flags."""
    context = resolve_context(args)
    settings = context.settings
    fixed = FusionWeights.chosen(_pick(args.fixed_a1, settings.fixed_a1), _pick(args.fixed_b1, settings.fixed_b1),
                                 _pick(args.fixed_sigma, settings.fixed_sigma))
    report = getattr(args, "report", False)
    if report and not args.label_free:
        raise VPCError("--report shows alarms of the label-free calibration: it needs --label_free")
    return MemorizationRun(context=context, method=method_from_args(args, context), fixed=fixed,
                           save_feature=args.save_feature, save_memory=args.save_memory, overwrite=args.overwrite,
                           verify=getattr(args, "verify", False), label_free=args.label_free,
                           false_alarm_rate=checked_false_alarm_rate(args), report=report)


FOOTAGE_METHODS = ("vpc", *TRAINED)


def method_parser():
    """fit.py's first question, which method to fit: the rest of its flags depend on the answer."""
    parser = OneLineErrorParser(add_help=False)
    parser.add_argument("--method", default=FOOTAGE_METHODS[0], choices=FOOTAGE_METHODS)
    return parser


def footage_parser(description):
    """fit.py's command line: the inputs, the model file, a preset and every method flag."""
    from extra.config import PRESETS
    from ObjectDetection.options import DETECTORS, YOLO

    parser = OneLineErrorParser(description=description)
    parser.add_argument("inputs", nargs="+", help="normal footage: video files, frame folders, or folders of them")
    parser.add_argument("--out", required=True, help="the model file to write (.vpc)")
    parser.add_argument("--method", default=FOOTAGE_METHODS[0], choices=FOOTAGE_METHODS,
                        help="vpc: VideoPatchCore (default, these flags); mnad: MNAD, dual_memory: the dual-memory "
                             "autoencoder (fit.py --method mnad --help for theirs)")
    parser.add_argument("--preset", default="general", choices=PRESETS,
                        help="per-dataset defaults of every setting (default general: the ShanghaiTech numbers)")
    parser.add_argument("--detector", default=YOLO, choices=DETECTORS,
                        help="yolov5 (weights: yolo_weights in extra/config.py), or motion / hog, needing none")
    parser.add_argument("--consecutive", type=int, default=None, help="frames per clip (default: the preset's)")
    parser.add_argument("--work_dir", default=None,
                        help="intermediate files (default: $VPC_WORK_DIR, then extra/config.py), under footage/, in a "
                             "folder of the inputs' own: a rerun on the same footage reuses them")
    add_method_arguments(parser)
    add_backbone_arguments(parser)
    add_false_alarm_argument(parser)
    add_bool_flag(parser, "--overwrite", False, "redo the intermediate files even when saved ones match")
    add_bool_flag(parser, "--verify", False, "read every reused intermediate file whole and check it first")
    add_ray_arguments(parser)
    return parser


# What fit.py's intermediate files (object batches, features) depend on besides the detector and its
# weights: with them, the key of their folder, so that other such settings get a folder of their own
# (extra.cli.footage_folder).
FOOTAGE_FILE_SETTINGS = ("dataset", "consecutive", "backbone", "random_weights", "precision", "cnl_pool",
                         "compression", "compression_seed", "normalization")


def resolve_footage_run(args):
    """(the MemorizationRun of fit.py, the normal videos): the preset's settings, the flags (checked first),
    the inputs (checked before any model code loads), the footage's working folder (extra.cli.footage_folder)."""
    from dataclasses import asdict, replace

    from extra import config
    from extra.cli import RunContext, footage_folder
    from extra.config import PRESETS
    from extra.sharding import ray_cluster
    from ObjectDetection.options import YOLO

    settings = PRESETS[args.preset]
    consecutive = settings.consecutive if args.consecutive is None else args.consecutive
    if consecutive < 3:
        raise VPCError(f"--consecutive must be at least 3 (the high-level patches need it), got {consecutive}")
    context = RunContext(settings=settings, consecutive=consecutive, data_root=None, work_dir=None,
                         ray=ray_cluster(args.ray, args.ray_cpus))
    method = method_from_args(args, context)
    from extra.sources import footage_videos

    videos = footage_videos(args.inputs)
    record = asdict(method)
    key = {"detector": args.detector, **{name: record[name] for name in FOOTAGE_FILE_SETTINGS},
           **({"yolo_weights": str(config.yolo_weights)} if args.detector == YOLO else {})}
    run = MemorizationRun(context=replace(context, work_dir=footage_folder(args.work_dir, videos, key)),
                          method=method,
                          fixed=FusionWeights.chosen(settings.fixed_a1, settings.fixed_b1, settings.fixed_sigma),
                          overwrite=args.overwrite, verify=args.verify,
                          false_alarm_rate=checked_false_alarm_rate(args))
    return run, videos
