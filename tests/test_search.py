"""The nearest-neighbour search of the scores (Memorization.knn.search, --search): faiss-flat agrees with the
exact search, faiss-ivf's error is measured and printed, and the flag's errors are one line."""
import importlib.util
import re
import sys

import pytest
import torch

import fit
from extra.errors import EXIT_ERROR, run_main
from Memorization.banks.scores import object_scores
from Memorization.banks.search_check import SearchCheck
from Memorization.banks.specs import HIGHLEVEL
from Memorization.knn import search
from Memorization.knn.exact import nearest_distances
from Memorization.model import VideoFeatures
from Memorization.options import MethodConfig, results_name
from Memorization.run import main as memorization_main

needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None,
                                 reason="faiss is not installed: make install-faiss (CI does)")

LINE = re.compile(r"^(\w+) bank, (faiss-ivf \(nlist \d+, nprobe \d+\)) search: recall@1 (\d\.\d{4}), max relative "
                  r"change of an object's score (\S+) \(against the exact search, (\d+) test patches of (\d+) "
                  r"objects, seed 0\)$")


@needs_faiss
@pytest.mark.parametrize("rows, dim", [(3000, 64), (500, 1536)])
def test_faiss_flat_equals_the_exact_search(rows, dim):
    generator = torch.Generator().manual_seed(rows)
    bank = torch.randn(rows, dim, generator=generator) + 3          # off-centre, as features are
    patches = torch.randn(600, dim, generator=generator) + 3
    exact = nearest_distances(patches, bank)
    flat = search.search_nearest(patches, bank, "faiss-flat")
    assert flat.dtype == exact.dtype
    torch.testing.assert_close(flat, exact, rtol=1e-5, atol=0)
    torch.testing.assert_close(object_scores(patches, 12, bank, 2, search="faiss-flat"),
                               object_scores(patches, 12, bank, 2), rtol=2e-5, atol=0)


def test_recall_and_score_change_by_hand():
    exact = torch.tensor([1.0, 1.5, 3.0, 4.0], dtype=torch.float64)
    approximate = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert search.recall_at_1(approximate, exact) == 0.75
    # Two objects of two rows, power 2: (2 ** 2 - 1.5 ** 2) / 1.5 ** 2 for the first, 0 for the second.
    assert search.score_change(approximate, exact, 2, 2) == pytest.approx(1.75 / 2.25)


@needs_faiss
def test_ivf_recall_on_a_case_with_a_known_answer(monkeypatch):
    # Two lists: a ring of radius 5 round (0, 0) and a tight cluster at (12, 0). With one list probed,
    # (6.5, 0) is searched in the cluster's list (its centroid is nearer), though the ring's (5, 0) is
    # its nearest row; (0.5, 0) and (12.2, 0) find theirs.
    angles = torch.arange(39, dtype=torch.float64) * (2 * torch.pi / 39)     # (5, 0) among them
    ring = torch.stack([5 * angles.cos(), 5 * angles.sin()], dim=1)
    cluster = torch.stack([torch.full((39,), 12.0), 0.001 * torch.arange(-19.0, 20.0)], dim=1)
    bank = torch.cat([ring, cluster]).float()
    patches = torch.tensor([[0.5, 0.0], [12.2, 0.0], [6.5, 0.0]])
    monkeypatch.setattr(search, "IVF_NPROBE", 1)
    assert search.ivf_lists(len(bank)) == 2
    error = search.measure_search(patches, 3, bank, "faiss-ivf", 1)
    assert error.recall == pytest.approx(2 / 3)
    assert error.score_change == pytest.approx((5.5 - 1.5) / 1.5)     # 5.5 to (12, 0) for 1.5 to (5, 0)
    monkeypatch.setattr(search, "IVF_NPROBE", 2)          # every list probed: the exact answer
    bank = bank.clone()                                    # a new tensor: its index is built with 2 probes
    error = search.measure_search(patches, 3, bank, "faiss-ivf", 1)
    assert (error.recall, error.score_change) == (1.0, 0.0)


@needs_faiss
def test_a_run_prints_the_ivf_error_once_per_bank(capsys):
    method = MethodConfig("avenue", 4, 32, search="faiss-ivf")
    generator = torch.Generator().manual_seed(1)
    bank = torch.randn(2000, 24, generator=generator)
    videos = [VideoFeatures({"global": [torch.randn(1, 24, 4, generator=generator) for _ in range(n)]})
              for n in (30, 300)]
    check = SearchCheck([HIGHLEVEL], method, len(videos))
    for index, features in enumerate(videos):
        check.add(features, index)
    records = check.report({"highlevel": bank})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    found = LINE.match(lines[0])
    assert found, lines[0]
    name, described, recall, change, rows, objects = found.groups()
    assert (name, described) == ("highlevel", f"faiss-ivf (nlist 45, nprobe {search.IVF_NPROBE})")
    assert 0 <= float(recall) <= 1 and float(change) >= 0
    assert int(rows) == 4 * int(objects) == 4 * (30 + 200)         # up to 400 / 2 clips of each video
    record = records["highlevel"]
    assert record["recall_at_1"] == pytest.approx(float(recall), abs=5e-5) and record["patches"] == int(rows)
    assert record["recall_at_1"] < 1                                   # IVF on random data misses some


def test_results_of_a_faiss_search_are_named_apart():
    exact = MethodConfig("avenue", 5, 32, ratios={"spatial": 0.01, "temporal": 0.01, "highlevel": 0.01})
    assert results_name(exact) == "spatial0.01_temporal0.01_highlevel0.01"
    assert results_name(MethodConfig(**{**exact.__dict__, "search": "faiss-ivf"})).endswith("_faiss-ivf")


@pytest.mark.parametrize("main, argv", [(memorization_main, []), (fit.main, ["in", "--out", "m.vpc"])])
def test_without_faiss_a_faiss_search_is_a_one_line_error_saying_how_to_install_it(main, argv, tmp_path,
                                                                                  monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "faiss", None)      # faiss not importable
    assert run_main(main, [*argv, f"--work_dir={tmp_path}", "--search=faiss-ivf"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "pip install -r requirements-faiss.txt" in err


def test_a_bad_search_is_a_one_line_error(tmp_path, capsys):
    assert run_main(memorization_main, [f"--work_dir={tmp_path}", "--search=ivf"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--search" in err and "faiss-ivf" in err
    with pytest.raises(search.VPCError, match="unknown search 'ivf'"):
        search.search_nearest(torch.zeros(2, 3), torch.zeros(4, 3), "ivf")
