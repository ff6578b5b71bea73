"""Figures of a Memorization run: per-video scores, object-wise key frames, t-SNE of the memory banks.

    python figures.py --dataset=avenue [the flags of the run]   (from this folder, or
                                                                 Memorization/figures.py from the root)

Takes run.py's flags, so the same flags find the same files (the flags that only steer the run,
such as --save_feature or --clip_weights, are accepted and ignored). Nothing here runs a model:

- scores: per test video, the saved per-frame scores of each stream (at the run's fixed weights)
  with the ground-truth anomalies shaded; needs only the run's results folder.
- objects: for the top clips by local score and a few normal ones, the key frame with each
  object's box coloured and labelled by its spatial and temporal score; needs the frames, the
  test object batches (for the boxes), the test local features and the memory banks.
- tsne: per memory bank, a t-SNE of (a subsample of) its items and of test patches marked
  normal / anomalous by the labels of their clip; needs the test features and the banks.

Written into <work_dir>/figures/<dataset>/.
"""
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from fastprogress.fastprogress import progress_bar  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402   (no pyplot: figures render with Agg, no display needed)
from matplotlib.patches import Rectangle  # noqa: E402

from extra.cli import resolve_context  # noqa: E402
from extra.datasets import list_videos  # noqa: E402
from extra.device import default_device  # noqa: E402
from extra.errors import VPCError, run_main  # noqa: E402
from extra.io import atomic_path  # noqa: E402
from extra.datasets import intervals_from_labels  # noqa: E402
from extra.workdir import WorkDir, clip_key  # noqa: E402
from Memorization.evaluation import (  # noqa: E402
    RESULTS_FILE, SCORES_FILE, STREAM_TITLES, FusionWeights, fused_per_video, load_results, micro_auroc,
)
from Memorization.features import LOCAL_GRID, is_placeholder  # noqa: E402
from Memorization.options import BANKS, bank_record, figures_folder, results_folder  # noqa: E402
from Memorization.patches import highlevel_patches, spatial_patches, temporal_patches, temporal_pooling  # noqa: E402
from Memorization.pipeline import bank_path, load_bank, local_object_scores  # noqa: E402
from Memorization.run import build_parser, options_from_args  # noqa: E402
from ObjectDetection.boxes import as_detections, key_frame_offset  # noqa: E402
from ObjectDetection.objects import BOXES_ATTRIBUTE, load_boxes_pickle, n_objects  # noqa: E402

FIGURES = ("scores", "objects", "tsne")
SCORE_LINES = {"spatial": "tab:blue", "temporal": "tab:orange", "highlevel": "tab:green", "total": "black"}
OBJECT_CMAP = "RdYlGn_r"          # green (close to the memory) -> red (far from it)
RANDOM_NOTE = "RANDOM WEIGHTS (not pretrained): these scores say nothing about the method"
DPI = 100
SEED = 0                          # subsampling and t-SNE: the same figure on every run
RUN_COMMAND = "python Memorization/run.py"


# --- pure helpers ---------------------------------------------------------------------------------

def shaded_spans(labels):
    """(x0, x1) of each run of anomalous frames, frame t drawn at x = t and spanning t - 0.5 .. t + 0.5."""
    starts, ends = intervals_from_labels(labels)          # 1-based, inclusive
    return [(start - 1.5, end - 0.5) for start, end in zip(starts.tolist(), ends.tolist())]


def clip_values(frame_values, d):
    """Mean of a per-frame vector over each clip of ``d`` frames (its length is a multiple of d)."""
    return np.asarray(frame_values, dtype=np.float64).reshape(-1, d).mean(axis=1)


def choose_clips(scores, has_objects, normal, n_top, n_normal):
    """Clips to draw, as indices: the ``n_top`` highest-scoring clips with objects (highest first),
    then ``n_normal`` other clips with objects and only normal frames, spread evenly over those
    clips' score ranking from the lowest up (ascending)."""
    scores = np.asarray(scores, dtype=np.float64)
    candidates = np.flatnonzero(np.asarray(has_objects, dtype=bool))
    ranked = candidates[np.argsort(-scores[candidates], kind="stable")]
    top = [int(i) for i in ranked[:max(n_top, 0)]]
    normal_rest = [int(i) for i in ranked[::-1] if normal[i] and int(i) not in top]
    if not normal_rest or n_normal <= 0:
        return top
    positions = np.unique(np.round(np.linspace(0, len(normal_rest) - 1, n_normal)).astype(int))
    return top + [normal_rest[p] for p in positions]


def subsample(n, limit, rng):
    """Sorted indices of at most ``limit`` of ``n`` items, drawn without replacement (all when n <= limit)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, size=max(limit, 0), replace=False))


def pick_clips(rows_per_clip, limit, rng):
    """Clips taken in random order, skipping those without rows, until their rows reach ``limit``
    (all of them when they have fewer). Sorted indices."""
    rows = np.asarray(rows_per_clip)
    if limit <= 0:
        return np.zeros(0, dtype=np.int64)
    order = rng.permutation(len(rows))
    order = order[rows[order] > 0]
    enough = np.searchsorted(np.cumsum(rows[order]), limit) + 1     # first prefix whose rows reach limit
    return np.sort(order[:enough])


def sample_test_clips(rows_per_clip, anomalous, limit, rng):
    """Clips whose patches fill about ``limit`` rows: up to half from anomalous clips, the rest from
    normal ones (anomalous clips are rare; drawn uniformly they would barely show)."""
    rows = np.asarray(rows_per_clip)
    anomalous = np.asarray(anomalous, dtype=bool)
    chosen_anomalous = pick_clips(np.where(anomalous, rows, 0), limit // 2, rng)
    taken = min(int(rows[chosen_anomalous].sum()), limit // 2)
    chosen_normal = pick_clips(np.where(anomalous, 0, rows), limit - taken, rng)
    return np.sort(np.concatenate([chosen_anomalous, chosen_normal]))


def tsne_perplexity(n_points):
    """sklearn's default 30, lowered for small sets (it must stay below the number of points)."""
    return float(min(30.0, max(1.0, (n_points - 1) / 3)))


def query_patches(bank, features, options):
    """Test-time patches of one clip for ``bank``: rows of lf (local banks) or gf (high-level)."""
    if bank == "highlevel":
        return highlevel_patches(features)
    if is_placeholder(features):
        return features.new_zeros(0, options.cnl_pool)
    if bank == "spatial":
        return spatial_patches(features, options.pool_for_sm)
    return temporal_patches(features, temporal_pooling("test", options.temporal_pooling), options.absolute_difference)


def rows_per_object(bank, options, d):
    return {"spatial": (LOCAL_GRID // options.pool_for_sm) ** 2, "temporal": d - 1, "highlevel": d}[bank]


# --- files of the run -----------------------------------------------------------------------------

def load_run(work, options, consecutive):
    """The run's saved scores, results and metadata (Memorization/evaluation.py's SavedEvaluation)."""
    folder = results_folder(work, options)
    for name in (SCORES_FILE, RESULTS_FILE):
        if not (folder / name).is_file():
            raise VPCError(f"no saved scores: {folder / name} not found; run {RUN_COMMAND} --dataset={work.dataset} "
                           f"with the same flags first")
    saved = load_results(folder / SCORES_FILE, folder / RESULTS_FILE)
    made_with = saved.metadata.get("consecutive")
    if made_with not in (None, consecutive):
        raise VPCError(f"the scores in {folder} were made with --consecutive {made_with}: "
                       f"pass --consecutive={made_with}")
    return saved


def fused_streams(saved):
    """Per-video scores of every stream at the run's fixed weights: as saved, or recomputed from
    the raw scores when the file holds none."""
    if saved.fused:
        return saved.fused
    return fused_per_video(saved.scores, FusionWeights(**saved.results["fixed"]["weights"]))


def clip_shapes(path, what, command):
    """Shape of every clip's array in a per-video HDF5 file, in clip order."""
    if not path.is_file():
        raise VPCError(f"{what} not found: {path}; {command}")
    with h5py.File(path, "r") as f:
        return [f[clip_key(i)].shape for i in range(len(f))]


def read_clips(path, clips):
    """The arrays of the given clips of a per-video HDF5 file, as tensors."""
    with h5py.File(path, "r") as f:
        return [torch.from_numpy(f[clip_key(c)][()]) for c in clips]


def features_hint(work):
    return f"run {RUN_COMMAND} --dataset={work.dataset} with the same flags (and --save_feature=True) to extract them"


def load_banks(work, options, consecutive, metadata, device):
    """The three memory banks, checked against the flags as the stage checks them."""
    backbone_fields = {key: metadata[key] for key in ("backbone", "random_weights") if key in metadata}
    banks = {}
    for bank in BANKS:
        path = bank_path(work, bank, options)
        if not path.is_file():
            raise VPCError(f"memory bank not found: {path}; run {RUN_COMMAND} --dataset={work.dataset} "
                           f"with the same flags to build it")
        record = bank_record(bank, options, consecutive, work.dataset, backbone_fields)
        banks[bank] = load_bank(path, record).to(device)
    return banks


def clip_boxes(work, video, clips, videos, consecutive):
    """Boxes (k, 6) of the given clips of a test video: the object batches' ``boxes`` attributes,
    or the test boxes pickle for files without them (the authors' files)."""
    path = work.object_batches("test", video.name)
    if not path.is_file():
        raise VPCError(f"object batches not found: {path}; run python ObjectDetection/run.py "
                       f"--dataset={work.dataset} with the same --consecutive and --work_num first")
    with h5py.File(path, "r") as f:
        attributes = [f[clip_key(c)].attrs.get(BOXES_ATTRIBUTE) for c in clips]
    if all(a is not None for a in attributes):
        return [as_detections(a) for a in attributes]
    pickle_path = work.boxes_pickle("test")
    if not pickle_path.is_file():
        raise VPCError(f"{path} carries no boxes and {pickle_path} does not exist: rerun python "
                       f"ObjectDetection/run.py --dataset={work.dataset} --is_save_test_pickle to record them")
    pickled = load_boxes_pickle(pickle_path, videos, consecutive, "test")[video.name]
    return [pickled[c] for c in clips]


def save_figure(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI)
    return path


def set_title(fig, title, metadata):
    """The figure's title, with the random-weights note (in red) when the run used them."""
    if metadata.get("random_weights"):
        fig.suptitle(f"{title}\n{RANDOM_NOTE}", color="red")
    else:
        fig.suptitle(title)


# --- 1. scores per video --------------------------------------------------------------------------

def plot_video_scores(name, streams, labels, dataset, metadata):
    """One test video: a line per stream over its frames, ground-truth anomalies shaded."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for i, (x0, x1) in enumerate(shaded_spans(labels)):
        ax.axvspan(x0, x1, color="red", alpha=0.15, linewidth=0, label="anomalous (ground truth)" if i == 0 else None)
    frames = np.arange(len(labels))
    for stream, colour in SCORE_LINES.items():
        ax.plot(frames, streams[stream], color=colour, linewidth=1.2, label=STREAM_TITLES[stream])
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score (min-max, all test frames)")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.8)
    title = f"{dataset}, test video {name}"
    if labels.min() != labels.max():
        title += f": AUROC of the total score {100 * micro_auroc(streams['total'], labels):.1f}%"
    set_title(fig, title, metadata)
    return fig


def score_figures(saved, out_dir, dataset):
    """Figure 1 for every test video; returns the written paths."""
    fused = fused_streams(saved)
    written = []
    for v in progress_bar(range(len(saved.scores.names))):
        name = saved.scores.names[v]
        fig = plot_video_scores(name, {s: fused[s][v] for s in SCORE_LINES}, saved.scores.labels[v], dataset,
                                saved.metadata)
        written.append(save_figure(fig, out_dir / "scores" / f"{name}.png"))
    return written


# --- 2. objects on key frames ---------------------------------------------------------------------

def draw_objects(fig, ax, image_rgb, boxes, scores, norm, cmap, stream):
    """Key frame with each box outlined and labelled in the colour of its score."""
    ax.imshow(image_rgb)
    for box, score in zip(boxes, scores):
        xmin, ymin, xmax, ymax = (float(v) for v in box[:4])
        colour = cmap(norm(score))
        ax.add_patch(Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=colour, linewidth=2))
        ax.text(xmin + 1, ymin + 1, f"{score:.3g}", fontsize=8, va="top", ha="left", clip_on=True,
                bbox={"facecolor": colour, "alpha": 0.85, "pad": 1, "linewidth": 0})
    ax.set_xlim(-0.5, image_rgb.shape[1] - 0.5)
    ax.set_ylim(image_rgb.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title(f"{stream} score per object")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8, label=f"{stream} score")


def plot_clip_objects(key_frame_bgr, boxes, spatial, temporal, norms, title, metadata):
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    cmap = colormaps[OBJECT_CMAP]
    image = np.ascontiguousarray(key_frame_bgr[..., ::-1])
    for i, (stream, scores) in enumerate((("spatial", spatial), ("temporal", temporal))):
        draw_objects(fig, fig.add_subplot(1, 2, i + 1), image, boxes, scores, norms[stream], cmap, stream)
    set_title(fig, title, metadata)
    return fig


def score_norm(frame_scores_per_video):
    """Colour scale of one stream: 0 up to its largest clip score over the test set."""
    top = max(float(np.max(s)) for s in frame_scores_per_video)
    return Normalize(vmin=0.0, vmax=top if top > 0 else 1.0)


def object_figures(saved, work, context, options, out_dir, n_top, n_normal):
    """Figure 2 for the chosen clips; returns the written paths."""
    d, settings = context.consecutive, context.settings
    scores = saved.scores
    videos = {v.name: v for v in list_videos(settings, context.data_root, "test", d)}
    missing = [name for name in scores.names if name not in videos]
    if missing:
        raise VPCError(f"the saved scores name test video {missing[0]}, not found under {context.data_root}: "
                       f"pass the --data_root of the run")
    local_paths = [work.local_features(options.local_folder, "test", name) for name in scores.names]
    shapes = [clip_shapes(path, "test local features", features_hint(work)) for path in local_paths]
    local = fused_streams(saved)["local"]
    clip_index = [(v, c) for v, video_shapes in enumerate(shapes) for c in range(len(video_shapes))]
    chosen = choose_clips(
        np.concatenate([clip_values(x, d) for x in local]),
        [n_objects(shape) > 0 for video_shapes in shapes for shape in video_shapes],
        np.concatenate([clip_values(y, d) == 0 for y in scores.labels]), n_top, n_normal)
    if not chosen:
        raise VPCError("no test clip holds an object: nothing to draw (check the detection stage's output)")
    device = default_device()
    banks = load_banks(work, options, d, saved.metadata, device)
    norms = {"spatial": score_norm(scores.spatial), "temporal": score_norm(scores.temporal)}
    offset = key_frame_offset(d)
    for old in (out_dir / "objects").glob("*.png"):      # an earlier selection: its ranks no longer hold
        old.unlink()
    written = []
    for rank, flat in enumerate(progress_bar(chosen)):
        v, clip = clip_index[flat]
        name = scores.names[v]
        video = videos[name]
        (lf,) = read_clips(local_paths[v], [clip])
        (boxes,) = clip_boxes(work, video, [clip], list(videos.values()), d)
        if len(boxes) != lf.shape[0]:
            raise VPCError(f"clip {clip_key(clip)} of video {name}: {len(boxes)} boxes but {lf.shape[0]} objects "
                           f"in {local_paths[v]}; rerun {RUN_COMMAND} with --overwrite after the detection stage")
        spatial, temporal = (scores_of_objects.numpy() for scores_of_objects
                             in local_object_scores(lf.to(device), banks, options, settings.power_n))
        (_, frames), = video.iter_clips(d, [clip])
        first = video.clips(d)[clip][0]
        why = "one of the highest local scores" if rank < min(n_top, len(chosen)) else "a normal clip, for comparison"
        truth = "anomalous" if scores.labels[v][clip * d:(clip + 1) * d].any() else "normal"
        title = (f"{settings.name}, test video {name}, clip {clip} (frames {first}-{first + d - 1}, ground truth "
                 f"{truth}): key frame {first + offset}; {why}")
        fig = plot_clip_objects(frames[offset], boxes, spatial, temporal, norms, title, saved.metadata)
        written.append(save_figure(fig, out_dir / "objects" / f"{rank + 1:02d}_{name}_clip{clip_key(clip)}.png"))
    return written


# --- 3. t-SNE of the memory banks -----------------------------------------------------------------

@dataclass
class TsneInput:
    """The points of one bank's t-SNE: a subsample of the bank's items, then of test patches."""

    points: np.ndarray          # (n_bank + n_test, D)
    n_bank: int
    anomalous: np.ndarray       # per point: the test patch comes from a clip with an anomalous frame
    bank_size: int              # items in the whole bank

    @property
    def is_bank(self):
        return np.arange(len(self.points)) < self.n_bank


def tsne_input(bank, items, feature_paths, clip_anomalous, options, d, n_points, rng, hint):
    """At most ``n_points`` points for ``bank``: up to half of them bank items, the rest test
    patches of clips sampled by ``sample_test_clips`` (``clip_anomalous``: one flag per clip of
    all test videos in order; ``feature_paths``: the test feature file of each video)."""
    what = f"test {'global' if bank == 'highlevel' else 'local'} features"
    shapes = [clip_shapes(path, what, hint) for path in feature_paths]
    clip_index = [(v, c) for v, video_shapes in enumerate(shapes) for c in range(len(video_shapes))]
    objects = np.array([1 if bank == "highlevel" else n_objects(shape) for video_shapes in shapes
                        for shape in video_shapes])
    test_budget = n_points - n_points // 2
    rows, row_anomalous = [items.new_zeros(0, items.shape[1])], [np.zeros(0, dtype=bool)]
    for flat in sample_test_clips(objects * rows_per_object(bank, options, d), clip_anomalous, test_budget, rng):
        v, clip = clip_index[flat]
        (features,) = read_clips(feature_paths[v], [clip])
        rows.append(query_patches(bank, features, options))
        row_anomalous.append(np.full(len(rows[-1]), bool(clip_anomalous[flat])))
    test_rows, row_anomalous = torch.cat(rows), np.concatenate(row_anomalous)
    keep_test = subsample(len(test_rows), test_budget, rng)
    keep_bank = subsample(len(items), n_points // 2, rng)
    return TsneInput(points=torch.cat([items[keep_bank], test_rows[keep_test]]).numpy(), n_bank=len(keep_bank),
                     anomalous=np.concatenate([np.zeros(len(keep_bank), dtype=bool), row_anomalous[keep_test]]),
                     bank_size=len(items))


def plot_tsne(embedding, data, bank, metadata):
    fig = Figure(figsize=(7, 6.4), layout="constrained")
    ax = fig.add_subplot()
    is_bank = data.is_bank
    normal, anomalous = ~is_bank & ~data.anomalous, ~is_bank & data.anomalous
    groups = ((is_bank, "lightgray", 6, f"memory bank ({data.n_bank} of {data.bank_size} items)"),
              (normal, "tab:blue", 8, f"test patches, normal clips ({int(normal.sum())})"),
              (anomalous, "tab:red", 10, f"test patches, anomalous clips ({int(anomalous.sum())})"))
    for mask, colour, size, label in groups:
        ax.scatter(embedding[mask, 0], embedding[mask, 1], s=size, c=colour, label=label, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8, markerscale=2)
    set_title(fig, f"t-SNE of the {bank} memory bank and test patches", metadata)
    return fig


def embed(points, seed=SEED):
    """2-D t-SNE (sklearn, PCA initialisation, fixed random_state) of the rows of ``points``.

    It runs on one OpenMP thread: scikit-learn's OpenMP runtime otherwise competes with torch's
    (a second libgomp in the process) and the t-SNE took 3 to 15 times longer in our measurements.
    """
    from sklearn.manifold import TSNE   # slow import: only when a t-SNE is drawn
    from threadpoolctl import threadpool_limits

    if len(points) < 5:
        raise VPCError(f"a t-SNE needs at least 5 points, got {len(points)}: raise --tsne_points")
    with threadpool_limits(limits=1, user_api="openmp"):
        return TSNE(n_components=2, perplexity=tsne_perplexity(len(points)), init="pca",
                    random_state=seed).fit_transform(np.asarray(points, dtype=np.float32))


def tsne_figures(saved, work, context, options, out_dir, n_points):
    """Figure 3 for each bank; returns the written paths."""
    d, names = context.consecutive, saved.scores.names
    banks = load_banks(work, options, d, saved.metadata, "cpu")
    clip_anomalous = np.concatenate([clip_values(y, d) > 0 for y in saved.scores.labels])
    local_paths = [work.local_features(options.local_folder, "test", name) for name in names]
    paths = {"spatial": local_paths, "temporal": local_paths,
             "highlevel": [work.global_features(options.global_folder, "test", name) for name in names]}
    written = []
    for bank in progress_bar(BANKS):
        data = tsne_input(bank, banks[bank], paths[bank], clip_anomalous, options, d, n_points,
                          np.random.default_rng(SEED), features_hint(work))
        fig = plot_tsne(embed(data.points), data, bank, saved.metadata)
        written.append(save_figure(fig, out_dir / f"tsne_{bank}.png"))
    return written


# --- all of them ----------------------------------------------------------------------------------

def make_figures(context, options, which=FIGURES, n_top=6, n_normal=3, tsne_points=2000):
    """Draw the figures named in ``which`` for the run the options point to; returns the written paths."""
    unknown = sorted(set(which) - set(FIGURES))
    if unknown:
        raise VPCError(f"unknown figure {unknown[0]!r}: choose among {', '.join(FIGURES)}")
    if "tsne" in which and tsne_points < 10:
        raise VPCError(f"--tsne_points {tsne_points} is too few for a t-SNE: use 10 or more")
    work = WorkDir(context.work_dir, context.settings.name)
    saved = load_run(work, options, context.consecutive)
    out_dir = figures_folder(work, options)
    written = []
    if "scores" in which:
        written += score_figures(saved, out_dir, context.settings.name)
    if "objects" in which:
        written += object_figures(saved, work, context, options, out_dir, n_top, n_normal)
    if "tsne" in which:
        written += tsne_figures(saved, work, context, options, out_dir, tsne_points)
    return written


def build_figures_parser():
    parser = build_parser()
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES),
                        help="which figures to draw (default: all of them)")
    parser.add_argument("--top_clips", type=int, default=6,
                        help="object figures: clips with the highest local score (default 6)")
    parser.add_argument("--normal_clips", type=int, default=3,
                        help="object figures: normal clips added for comparison (default 3)")
    parser.add_argument("--tsne_points", type=int, default=2000,
                        help="points per t-SNE, half memory-bank items, half test patches (default 2000)")
    return parser


def main(argv=None):
    args = build_figures_parser().parse_args(argv)
    context = resolve_context(args)
    options = options_from_args(args, context.settings)
    written = make_figures(context, options, args.figures, args.top_clips, args.normal_clips, args.tsne_points)
    print(f"{len(written)} figures in {figures_folder(WorkDir(context.work_dir, context.settings.name), options)}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
