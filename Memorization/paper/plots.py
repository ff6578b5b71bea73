"""Figures of a Memorization run (Memorization/figures.py is their command line). Nothing here runs
the backbone:

- scores: per test video, the saved per-frame score of each bank and the total (at the run's
  fixed weights) with the ground-truth anomalies shaded; needs only the run's results folder.
- objects: for the top clips by local score and a few normal ones, the key frame with each
  object's box coloured and labelled by its score in each local-stream bank; needs the frames,
  the test object batches (for the boxes), the test local features and the memory banks.
- tsne: per memory bank, a t-SNE of (a subsample of) its items and of test patches marked
  normal / anomalous by the labels of their clip; needs the test features and the banks.

The figures iterate over the run's banks (``BankSpec``s, the published three by default), so a new
bank gets its score line, its object panel (a local-stream bank) and its t-SNE.
"""
from dataclasses import dataclass
from itertools import groupby

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure   # no pyplot: figures render with Agg, no display needed
from matplotlib.patches import Rectangle

from extra.datasets import list_videos
from extra.device import default_device
from extra.errors import VPCError
from extra.evaluation.curves import TOTAL_COLOUR, save_figure, score_figures, set_title
from extra.evaluation.fusion import FUSED_TITLES, FusionWeights, fused_per_video
from extra.evaluation.results import RESULTS_FILE, SCORES_FILE, load_results
from extra.progress import progress
from extra.store import clip_key, open_clip_file
from Memorization.banks.scores import item_scores
from Memorization.banks.specs import STREAMS, specs_of, stack_items
from Memorization.model import VideoPatchCore
from Memorization.options import FIGURES, figures_folder, results_folder
from ObjectDetection.boxes import as_detections, key_frame_offset
from ObjectDetection.objects import clip_boxes_of, load_boxes_pickle, n_objects

OBJECT_CMAP = "RdYlGn_r"          # green (close to the memory) -> red (far from it)


SEED = 0                          # subsampling and t-SNE: the same figure on every run


RUN_COMMAND = "python Memorization/run.py"


BACKBONE_FIELDS = ("backbone", "random_weights")    # the run's metadata keys its banks' records hold


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


def bank_styles(specs):
    """Colour and title of each bank's score line and the total's (extra.evaluation.curves)."""
    return {**{spec.name: (spec.colour, spec.title) for spec in specs}, "total": (TOTAL_COLOUR, FUSED_TITLES["total"])}


def load_run(work, method):
    """The run's saved scores, results and metadata (Memorization/evaluation.py's SavedEvaluation)."""
    folder = results_folder(work, method)
    for name in (SCORES_FILE, RESULTS_FILE):
        if not (folder / name).is_file():
            raise VPCError(f"no saved scores: {folder / name} not found; run {RUN_COMMAND} --dataset={work.dataset} "
                           f"with the same flags first")
    saved = load_results(folder / SCORES_FILE, folder / RESULTS_FILE)
    made_with = saved.metadata.get("consecutive")
    if made_with not in (None, method.consecutive):
        raise VPCError(f"the scores in {folder} were made with --consecutive {made_with}: "
                       f"pass --consecutive={made_with}")
    return saved


def fused_streams(saved):
    """Per-video scores of every bank and fused stream at the run's fixed weights: as saved, or
    recomputed from the raw scores when the file holds none."""
    if saved.fused:
        return saved.fused
    return fused_per_video(saved.scores, FusionWeights(**saved.results["fixed"]["weights"]))


def load_banks(work, method, metadata, specs=None):
    """The banks of ``specs`` (default: the method's; name -> tensor on the CPU), checked against the
    run's records."""
    fields = {key: metadata[key] for key in BACKBONE_FIELDS if key in metadata}
    return VideoPatchCore.from_bank_files(work, method, fields, specs).banks


def clip_shapes(path, kind):
    """Shape of every clip's array in a clip file, in clip order."""
    with open_clip_file(path, kind) as opened:
        return opened.shapes()


def clip_boxes(work, video, clip, videos, consecutive):
    """Boxes (k, 6) of one clip of a test video: the object batches' stored boxes, or the test
    boxes pickle for files without them (the authors' files)."""
    (stored,) = clip_boxes_of(work.object_batches("test", video.name), [clip])
    if stored is not None:
        return as_detections(stored)
    pickle_path = work.boxes_pickle("test")
    if not pickle_path.is_file():
        raise VPCError(f"{work.object_batches('test', video.name)} carries no boxes and {pickle_path} does not "
                       f"exist: rerun python ObjectDetection/run.py --dataset={work.dataset} --is_save_test_pickle "
                       f"to record them")
    return load_boxes_pickle(pickle_path, videos, consecutive, "test")[video.name][clip]


def object_scores(lf, banks, method, specs):
    """Score of every object of one clip's local features in each bank of ``specs`` (local-stream
    specs), {name: numpy (n_objects,)}: the stage's own object scores."""
    return {spec.name: item_scores(spec, lf, banks[spec.name], method).cpu().numpy() for spec in specs}


def draw_objects(ax, image_rgb, boxes, scores, colours, label):
    """Key frame with each box outlined and labelled in the colour of its score (``colours``: a
    ScalarMappable, its scale drawn beside the frame)."""
    ax.imshow(image_rgb)
    for box, score in zip(boxes, scores):
        xmin, ymin, xmax, ymax = (float(v) for v in box[:4])
        colour = colours.to_rgba(score)
        ax.add_patch(Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=colour, linewidth=2))
        ax.text(xmin + 1, ymin + 1, f"{score:.3g}", fontsize=8, va="top", ha="left", clip_on=True,
                bbox={"facecolor": colour, "alpha": 0.85, "pad": 1, "linewidth": 0})
    ax.set_xlim(-0.5, image_rgb.shape[1] - 0.5)
    ax.set_ylim(image_rgb.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title(f"{label} score per object")
    ax.figure.colorbar(colours, ax=ax, shrink=0.8, label=f"{label} score")


def plot_clip_objects(key_frame_bgr, boxes, panels, heading, metadata):
    """One panel per (label, object scores, colour norm) of ``panels``, side by side."""
    fig = Figure(figsize=(5.5 * len(panels), 4.4), layout="constrained")
    cmap = colormaps[OBJECT_CMAP]
    image = np.ascontiguousarray(key_frame_bgr[..., ::-1])
    for i, (label, scores, norm) in enumerate(panels):
        draw_objects(fig.add_subplot(1, len(panels), i + 1), image, boxes, scores, ScalarMappable(norm, cmap), label)
    set_title(fig, heading, metadata)
    return fig


def score_norm(frame_scores_per_video):
    """Colour scale of one bank: 0 up to its largest clip score over the test set."""
    top = max(float(np.max(s)) for s in frame_scores_per_video)
    return Normalize(vmin=0.0, vmax=top if top > 0 else 1.0)


def object_figures(saved, run, out_dir, n_top, n_normal, specs=None):
    """Figure 2 for the chosen clips, a panel per local-stream bank of ``specs`` (default: the run's);
    returns the written paths."""
    context, method = run.context, run.method
    specs = specs_of(method.banks) if specs is None else specs
    work = run.work
    d, scores = method.consecutive, saved.scores
    fused = fused_streams(saved)
    if "local" not in fused:
        raise VPCError("the object figures rank clips by the local (spatial+temporal) score, which these "
                       "scores lack")
    videos = {v.name: v for v in list_videos(context.settings, context.data_root, "test", d)}
    missing = [name for name in scores.names if name not in videos]
    if missing:
        raise VPCError(f"the saved scores name test video {missing[0]}, not found under {context.data_root}: "
                       f"pass the --data_root of the run")
    stream = STREAMS["local"]
    paths = [stream.path(work, method, "test", name) for name in scores.names]
    shapes = [clip_shapes(path, stream.kind) for path in paths]
    clip_index = [(v, c) for v, video_shapes in enumerate(shapes) for c in range(len(video_shapes))]
    chosen = choose_clips(
        np.concatenate([clip_values(x, d) for x in fused["local"]]),
        [n_objects(shape) > 0 for video_shapes in shapes for shape in video_shapes],
        np.concatenate([clip_values(y, d) == 0 for y in scores.labels]), n_top, n_normal)
    if not chosen:
        raise VPCError("no test clip holds an object: nothing to draw (check the detection stage's output)")
    local_specs = [spec for spec in specs if spec.stream == "local"]
    device = default_device()
    banks = {name: bank.to(device) for name, bank in load_banks(work, method, saved.metadata, local_specs).items()}
    norms = {spec.name: score_norm(scores.banks[spec.name]) for spec in local_specs}
    offset = key_frame_offset(d)
    for old in (out_dir / "objects").glob("*.png"):      # an earlier selection: its ranks no longer hold
        old.unlink()
    written = []
    for rank, flat in enumerate(progress(chosen, "object figures")):
        v, clip = clip_index[flat]
        name = scores.names[v]
        video = videos[name]
        with open_clip_file(paths[v], stream.kind) as opened:
            lf = torch.from_numpy(opened.clip(clip))
        boxes = clip_boxes(work, video, clip, list(videos.values()), d)
        if len(boxes) != lf.shape[0]:
            raise VPCError(f"clip {clip_key(clip)} of video {name}: {len(boxes)} boxes but {lf.shape[0]} objects "
                           f"in {paths[v]}; rerun {RUN_COMMAND} with --overwrite after the detection stage")
        per_bank = object_scores(lf.to(device), banks, method, local_specs)
        (_, frames), = video.iter_clips(d, [clip])
        first = video.clips(d)[clip][0]
        why = "one of the highest local scores" if rank < min(n_top, len(chosen)) else "a normal clip, for comparison"
        truth = "anomalous" if scores.labels[v][clip * d:(clip + 1) * d].any() else "normal"
        heading = (f"{method.dataset}, test video {name}, clip {clip} (frames {first}-{first + d - 1}, ground truth "
                   f"{truth}): key frame {first + offset}; {why}")
        panels = [(spec.title, per_bank[spec.name], norms[spec.name]) for spec in local_specs]
        fig = plot_clip_objects(frames[offset], boxes, panels, heading, saved.metadata)
        written.append(save_figure(fig, out_dir / "objects" / f"{rank + 1:02d}_{name}_clip{clip_key(clip)}.png"))
    return written


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


def tsne_input(spec, bank, feature_paths, clip_anomalous, method, n_points):
    """At most ``n_points`` points for ``spec``'s bank: up to half of them bank items, the rest test
    patches of clips sampled by ``sample_test_clips`` (``clip_anomalous``: one flag per clip of all
    test videos in order; ``feature_paths``: the test file of ``spec``'s stream of each video). The
    draws are seeded: the same points on every run."""
    rng = np.random.default_rng(SEED)
    kind = STREAMS[spec.stream].kind
    shapes = [clip_shapes(path, kind) for path in feature_paths]
    clip_index = [(v, c) for v, video_shapes in enumerate(shapes) for c in range(len(video_shapes))]
    items_per_clip = np.array([n_objects(shape) for video_shapes in shapes for shape in video_shapes])
    # the items' grid side, as the encoder made it (lf's last axis; the other banks do not read it)
    side = next((shape[-1] for video_shapes in shapes for shape in video_shapes if n_objects(shape)), 0)
    rows_per_item = spec.rows_per_item(method, side)
    clip_anomalous = np.asarray(clip_anomalous, dtype=bool)
    test_budget = n_points - n_points // 2
    chosen = sample_test_clips(items_per_clip * rows_per_item, clip_anomalous, test_budget, rng)
    rows, row_anomalous = [bank.new_zeros(0, bank.shape[1])], [np.zeros(0, dtype=bool)]
    for v, flats in groupby(chosen, key=lambda flat: clip_index[flat][0]):
        flats = list(flats)
        with open_clip_file(feature_paths[v], kind) as opened:
            items, counts = stack_items(opened.clips([clip_index[flat][1] for flat in flats]))
        rows.append(spec.patches(items, method, "test"))       # sampled clips all hold items
        row_anomalous.append(np.repeat(clip_anomalous[flats], np.multiply(counts, rows_per_item)))
    test_rows, row_anomalous = torch.cat(rows), np.concatenate(row_anomalous)
    keep_test = subsample(len(test_rows), test_budget, rng)
    keep_bank = subsample(len(bank), n_points // 2, rng)
    return TsneInput(points=torch.cat([bank[keep_bank], test_rows[keep_test]]).numpy(), n_bank=len(keep_bank),
                     anomalous=np.concatenate([np.zeros(len(keep_bank), dtype=bool), row_anomalous[keep_test]]),
                     bank_size=len(bank))


def plot_tsne(embedding, data, bank_title, metadata):
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
    set_title(fig, f"t-SNE of the {bank_title} memory bank and test patches", metadata)
    return fig


def embed(points, seed=SEED):
    """2-D t-SNE (sklearn, PCA initialisation, fixed random_state) of the rows of ``points``.

    It runs on one OpenMP thread: scikit-learn's OpenMP runtime otherwise competes with torch's
    (a second libgomp in the process) and the t-SNE took 3 to 15 times longer in our measurements.
    """
    from sklearn.manifold import TSNE  # slow import: only when a t-SNE is drawn
    from threadpoolctl import threadpool_limits

    if len(points) < 5:
        raise VPCError(f"a t-SNE needs at least 5 points, got {len(points)}: raise --tsne_points")
    with threadpool_limits(limits=1, user_api="openmp"):
        return TSNE(n_components=2, perplexity=tsne_perplexity(len(points)), init="pca",
                    random_state=seed).fit_transform(np.asarray(points, dtype=np.float32))


def tsne_figures(saved, work, method, out_dir, n_points, specs=None):
    """Figure 3 for each bank of ``specs`` (default: the method's); returns the written paths."""
    specs = specs_of(method.banks) if specs is None else specs
    banks = load_banks(work, method, saved.metadata, specs)
    clip_anomalous = np.concatenate([clip_values(y, method.consecutive) > 0 for y in saved.scores.labels])
    written = []
    for spec in progress(specs, "t-SNE figures"):
        paths = [STREAMS[spec.stream].path(work, method, "test", name) for name in saved.scores.names]
        data = tsne_input(spec, banks[spec.name], paths, clip_anomalous, method, n_points)
        fig = plot_tsne(embed(data.points), data, spec.title, saved.metadata)
        written.append(save_figure(fig, out_dir / f"tsne_{spec.name}.png"))
    return written


def make_figures(run, which=FIGURES, n_top=6, n_normal=3, tsne_points=2000, specs=None):
    """Draw the figures named in ``which`` for a MemorizationRun and ``specs`` (default: the run's banks);
    returns the written paths."""
    specs = specs_of(run.method.banks) if specs is None else specs
    unknown = sorted(set(which) - set(FIGURES))
    if unknown:
        raise VPCError(f"unknown figure {unknown[0]!r}: choose among {', '.join(FIGURES)}")
    if "tsne" in which and tsne_points < 10:
        raise VPCError(f"--tsne_points {tsne_points} is too few for a t-SNE: use 10 or more")
    method = run.method
    work = run.work
    saved = load_run(work, method)
    out_dir = figures_folder(work, method)
    written = []
    if "scores" in which:
        written += score_figures(saved, fused_streams(saved), out_dir, method.dataset, bank_styles(specs))
    if "objects" in which:
        written += object_figures(saved, run, out_dir, n_top, n_normal, specs)
    if "tsne" in which:
        written += tsne_figures(saved, work, method, out_dir, tsne_points, specs)
    return written
