"""Where every memory bank row came from: the training video, its clip, the object and its box.

A bank row is one patch row of a training video (``build_memory_bank(with_rows=True)`` says which
video and which of its rows). A video's patch rows come item after item, the same number per item
(Memorization.banks.specs), and its items clip after clip: in the local stream the objects of each
clip, in the order of the boxes its object batches keep (ObjectDetection.objects: the crops, and so
the rows of lf, are cut box after box); in the global stream the clip itself, one item, recorded as
object -1 with no box. The frame is the key frame the clip's boxes were detected on
(ObjectDetection.boxes.key_frame_offset), counted from 0 among all the frames of the video's
source, a dataset's skipped first frame included: ``extra.datasets.Video.frames_at`` reads it. A box
is [x1, y1, x2, y2] in that frame's pixels, truncated to integers as the crops are cut
(x2 and y2 excluded); -1s where the object batches kept no box (the authors' files) or for a whole clip.

``Provenance`` holds per bank an int32 tensor (M, len(ORIGIN_COLUMNS)), and the training videos'
names and sources (a video file or a folder of frames). The model file keeps it; beside a bank file
in the authors' layout it is kept as ``<bank>.origins`` (``save_origins``), tied to the bank's content,
so a run that reuses the bank files has it too.
"""
import json
from dataclasses import dataclass

import torch

from extra.errors import FileKind, VPCError, warn
from extra.provenance import read_sidecar_record
from extra.store import is_empty_clip, load_tensor, save_tensor, tensor_content
from Memorization.banks.coreset import group_positions
from ObjectDetection.boxes import key_frame_offset

ORIGIN_COLUMNS = ("video", "clip", "object", "frame", "x1", "y1", "x2", "y2")
WHOLE_CLIP = -1         # the object of a global stream's item, and each coordinate of a box not known


@dataclass(frozen=True)
class VideoOrigin:
    """What a training video's provenance needs beyond its features."""

    name: str
    source: str             # its video file or frame folder
    key_frames: list        # per clip, the frame its boxes were detected on (0-based in the source)
    boxes: list             # per clip, its objects' boxes (k, >= 4) or None where none were kept


def is_whole_clip(spec):
    """Whether a bank's items are whole clips (the global stream's) rather than objects."""
    return spec.stream == "global"


def items_per_clip(clips):
    """Items of each clip of one stream (objects; 0 for the empty-clip placeholder; 1 for a global clip)."""
    return [0 if is_empty_clip(clip) else clip.shape[0] for clip in clips]


def row_items(rows, n_rows, counts, whole_clip):
    """(clip, object) of some patch ``rows`` of one video, (len(rows), 2) long, from how many rows the
    video gives (``n_rows``) and its ``counts`` of items per clip; ``whole_clip``: items are clips
    (object -1)."""
    items = int(sum(counts))
    if items == 0 or n_rows % items:
        raise RuntimeError(f"{n_rows} patch rows cannot come from {items} items")     # a bug, not bad input
    clip, obj = group_positions(counts, torch.as_tensor(rows, dtype=torch.long) // (n_rows // items))
    return torch.stack([clip, torch.full_like(obj, WHOLE_CLIP) if whole_clip else obj], dim=1)


def bank_items(rows, sizes, counts, whole_clip):
    """(video, clip, object) of each bank row, (M, 3) long, from its (video, row) ``rows`` (M, 2), the
    rows each video gave (``sizes``) and each video's items per clip (``counts``)."""
    out = torch.empty(len(rows), 3, dtype=torch.long)
    out[:, 0] = rows[:, 0]
    for video in rows[:, 0].unique().tolist():
        mine = rows[:, 0] == video
        out[mine, 1:] = row_items(rows[mine, 1], sizes[video], counts[video], whole_clip)
    return out


def training_origins(work, videos, consecutive):
    """VideoOrigin of each training video (extra.datasets.Video), its boxes read from its object batches
    in ``work`` (none where the file is gone or keeps none)."""
    from ObjectDetection.objects import clip_boxes_of

    offset, origins = key_frame_offset(consecutive), []
    for video in videos:
        clips = video.clips(consecutive)
        path = work.object_batches("train", video.name)
        boxes = clip_boxes_of(path, range(len(clips))) if path.is_file() else [None] * len(clips)
        origins.append(VideoOrigin(video.name, str(video.source), [frames[offset] for frames in clips], boxes))
    return origins


def box_table(boxes):
    """A video's boxes (per clip, (k, >= 4) or None) in one table: (the integer boxes (K + 1, 4), whose
    last row is the -1s of an unknown box; the row of each clip's first box; how many each clip has)."""
    known = [clip_boxes for clip_boxes in boxes if clip_boxes is not None and len(clip_boxes)]
    table = torch.cat([torch.as_tensor(b, dtype=torch.float64)[:, :4].long() for b in known] +
                      [torch.full((1, 4), WHOLE_CLIP, dtype=torch.long)])
    sizes = torch.tensor([0 if b is None else len(b) for b in boxes], dtype=torch.long)
    return table, sizes.cumsum(0) - sizes, sizes


class Provenance:
    """The origin of every row of some banks: ``videos`` [{"name", "source"}] in training order, and
    ``rows`` {bank: int32 (M, len(ORIGIN_COLUMNS))}."""

    def __init__(self, videos, rows):
        self.videos, self.rows = list(videos), dict(rows)

    @classmethod
    def of(cls, items, origins):
        """From each bank's (video, clip, object) rows (``bank_items``) and the videos' VideoOrigins."""
        rows = {}
        for bank, triples in items.items():
            table = torch.full((len(triples), len(ORIGIN_COLUMNS)), WHOLE_CLIP, dtype=torch.long)
            table[:, :3] = triples
            for video in triples[:, 0].unique().tolist():
                mine = triples[:, 0] == video
                clip, obj = triples[mine, 1], triples[mine, 2]
                boxes, first, sizes = box_table(origins[video].boxes)
                known = (obj >= 0) & (obj < sizes[clip])
                table[mine, 3] = torch.tensor(origins[video].key_frames, dtype=torch.long)[clip]
                table[mine, 4:] = boxes[torch.where(known, first[clip] + obj, len(boxes) - 1)]
            rows[bank] = table.int()
        return cls([{"name": o.name, "source": o.source} for o in origins], rows)

    def origin(self, bank, row):
        """Where row ``row`` of ``bank`` came from: {"video", "source", "frame", "clip", "object", "box"}
        (box None for a whole clip or a box not kept); None for a bank without provenance."""
        if bank not in self.rows:
            return None
        video, clip, obj, frame, *box = self.rows[bank][row].tolist()
        return {"video": self.videos[video]["name"], "source": self.videos[video]["source"], "frame": frame,
                "clip": clip, "object": obj, "box": None if box == [WHOLE_CLIP] * 4 else box}

    def tensors(self):
        """The model file's tensors of it."""
        return {f"provenance.{bank}": rows.contiguous() for bank, rows in self.rows.items()}

    def metadata(self):
        """The model file's JSON of it."""
        return json.dumps({"columns": list(ORIGIN_COLUMNS), "videos": self.videos}, sort_keys=True)

    @classmethod
    def joined(cls, parts):
        """One Provenance of the banks of ``parts`` (None where a part has none): those of the first part's
        training videos; None without any."""
        parts = [part for part in parts if part is not None]
        if not parts:
            return None
        rows = {}
        for part in parts:
            if part.videos == parts[0].videos:
                rows.update(part.rows)
        return cls(parts[0].videos, rows)

    @classmethod
    def read(cls, text, tensors, banks):
        """The provenance of a model file (``text``: its JSON, None without; ``tensors``: all its tensors;
        ``banks``: {name: bank}), or None; ValueError saying what does not fit."""
        if text is None:
            return None
        try:
            record = json.loads(text)
            videos = [{"name": str(v["name"]), "source": str(v["source"])} for v in record["videos"]]
            columns = record["columns"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"its provenance cannot be read: {error}") from None
        rows = {name: tensors[f"provenance.{name}"] for name in banks if f"provenance.{name}" in tensors}
        for name, table in rows.items():
            if columns != list(ORIGIN_COLUMNS) or table.shape != (len(banks[name]), len(ORIGIN_COLUMNS)) or (
                    len(table) and not 0 <= int(table[:, 0].min()) <= int(table[:, 0].max()) < len(videos)):
                raise ValueError(f"the provenance of its {name} memory bank does not match the bank")
        return cls(videos, rows)


ORIGINS_KIND = FileKind("provenance of a memory bank", "rerun Memorization/run.py with --overwrite=True to build "
                                                       "the bank and its provenance again")


def origins_path(bank_file):
    """Where the provenance of a bank file's rows is kept: beside it, not a .pt (globs of bank files skip it)."""
    return bank_file.with_name(bank_file.stem + ".origins")


def origins_record(bank, videos):
    """What a bank's origins file records: its columns, the training videos, the content of the bank it is of."""
    return {"columns": list(ORIGIN_COLUMNS), "videos": videos, "bank": tensor_content(bank)}


def save_origins(provenance, name, bank, bank_file):
    """The provenance of bank ``name`` (``bank``, saved at ``bank_file``) beside the bank file."""
    save_tensor(provenance.rows[name], origins_path(bank_file), origins_record(bank, provenance.videos))


def load_origins(name, bank, bank_file):
    """The Provenance of bank ``name`` kept beside its file (``save_origins``), or None where none is kept,
    or (said) where the one kept does not belong to this bank: the bank then goes without provenance."""
    path = origins_path(bank_file)
    record = read_sidecar_record(path) if path.is_file() else None
    if record is None:
        return None
    try:
        videos = record.get("videos")
        rows = load_tensor(path, ORIGINS_KIND, origins_record(bank, videos))
        return Provenance.read(json.dumps({"columns": record.get("columns"), "videos": videos}),
                               {f"provenance.{name}": rows}, {name: bank})
    except (VPCError, ValueError, TypeError):
        warn(f"{path} does not fit the {name} memory bank beside it: the bank's rows go without provenance "
             f"(alarm reports without the nearest normal memory); {ORIGINS_KIND.remedy}")
        return None
