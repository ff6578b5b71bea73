"""A model file is reproducible: the same model, or fit.py on the same footage from scratch, gives the
same bytes; files written before (metadata in any order) still load."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from extra.make_demo import make_demo
from Memorization.banks.specs import PUBLISHED
from Memorization.model import MODEL_FORMAT, MODEL_VERSION, VideoPatchCore
from Memorization.options import MethodConfig
from tests.helpers import small_random_checkpoint

REPO = Path(__file__).resolve().parent.parent
METHOD = MethodConfig("avenue", 3, 8)
# Keys out of order at every level, as a calibration's dicts may come.
CALIBRATION = {"weights": {"sigma": 1, "b2": 0.3, "b1": 0.7, "a2": 0.5, "a1": 0.5}, "threshold": 0.4,
               "normalisation": {b: {"low": 0.0, "high": 2.0} for b in ("temporal", "spatial", "highlevel")}}


def toy_model():
    generator = torch.Generator().manual_seed(0)
    banks = {spec.name: torch.rand(5, 4, generator=generator) for spec in PUBLISHED}
    return VideoPatchCore(METHOD, PUBLISHED, banks, {"random_weights": True, "backbone": "toy"}, CALIBRATION)


def header(path):
    data = Path(path).read_bytes()
    return json.loads(data[8:8 + int.from_bytes(data[:8], "little")])


def test_saving_a_model_twice_gives_the_same_bytes(tmp_path):
    model = toy_model()
    # safetensors writes the metadata in a random order on each call: a few saves would differ
    paths = [model.save(tmp_path / f"toy{i}.vpc") for i in range(4)]
    assert len({path.read_bytes() for path in paths}) == 1
    metadata = header(paths[0])["__metadata__"]
    assert list(metadata) == sorted(metadata)
    loaded = VideoPatchCore.load(paths[0])
    assert (loaded.method, loaded.backbone, loaded.calibration) == (METHOD, model.backbone, CALIBRATION)
    assert all(torch.equal(loaded.banks[name], model.banks[name]) for name in model.banks)


def test_a_file_written_before_still_loads(tmp_path):
    from safetensors.torch import save_file

    model = toy_model()
    metadata = header(model.save(tmp_path / "new.vpc"))["__metadata__"]
    assert (metadata["format"], metadata["version"]) == (MODEL_FORMAT, str(MODEL_VERSION))
    path = tmp_path / "old.vpc"         # as save wrote it before: safetensors' writer alone, any key order
    save_file({f"bank.{name}": bank for name, bank in model.banks.items()}, str(path), metadata=metadata)
    loaded = VideoPatchCore.load(path)
    assert (loaded.method, loaded.backbone, loaded.calibration) == (METHOD, model.backbone, CALIBRATION)


def test_fit_twice_from_scratch_gives_the_same_model_file(tmp_path):
    data = make_demo(tmp_path / "data", "avenue", seed=0, n_train=2, n_test=1, n_frames=16, width=96, height=64)
    weights = small_random_checkpoint(tmp_path / "small.pt")
    models = []
    for run in ("a", "b"):          # a working folder each: the second run recomputes every file
        models.append(tmp_path / run / "camera.vpc")
        result = subprocess.run(
            [sys.executable, "fit.py", data / "training" / "frames", "--out", models[-1], "--detector=motion",
             "--preset=avenue", "--consecutive=4", f"--clip_weights={weights}", f"--work_dir={tmp_path / run}"],
            cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "b" / "footage").glob("*/objects"))) == 1
    assert models[0].read_bytes() == models[1].read_bytes()
