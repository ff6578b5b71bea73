"""MNAD's memory, models and checkpoints (MNAD/SPEC.md): each memory function against arithmetic done
by hand, the two models' shapes and official parameter names, one training step, one test window,
and checkpoints (ours, the official state dict and keys.pt, damaged files)."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from extra.errors import VPCError
from MNAD import memory
from MNAD.checkpoints import ITEMS_KEY, METADATA_KEY, load_checkpoint, load_items, save_checkpoint
from MNAD.model import (MNAD, optimizer_and_scheduler, score_window, split_window, total_loss, train_step)

E = math.exp
P1, P2 = [1.0, 0.0], [0.0, 1.0]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def official_names(method):
    """The official convAE's state dict keys, written from its layer lists (model/*.py)."""
    def conv(prefix):
        return [f"{prefix}.weight", f"{prefix}.bias"]

    def bn(prefix):
        return [f"{prefix}.{x}" for x in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

    def block(prefix, layers):      # layers: index -> "c" (conv) or "b" (batch norm)
        return [name for index, kind in layers for name in (conv if kind == "c" else bn)(f"{prefix}.{index}")]

    basic = [(0, "c"), (1, "b"), (3, "c"), (4, "b")]
    names = [n for i in (1, 2, 3) for n in block(f"encoder.moduleConv{i}", basic)]
    names += block("encoder.moduleConv4", [(0, "c"), (1, "b"), (3, "c")]) + bn("encoder.moduleBatchNorm")
    names += [n for p in ("moduleConv", "moduleDeconv3", "moduleDeconv2") for n in block(f"decoder.{p}", basic)]
    names += [n for i in (4, 3, 2) for n in block(f"decoder.moduleUpsample{i}", [(0, "c"), (1, "b")])]
    names += block("decoder.moduleDeconv1", basic + [(6, "c")])
    return set(names)


# --- memory ------------------------------------------------------------------------------------------

def test_initial_items_are_normalised_uniform_noise():
    items = memory.init_items(10, 512, seed=3)
    assert items.shape == (10, 512) and (items >= 0).all()
    assert torch.allclose(items.norm(dim=1), torch.ones(10))
    assert torch.equal(items, memory.init_items(10, 512, seed=3))
    assert not torch.equal(items, memory.init_items(10, 512, seed=4))
    torch.manual_seed(7)        # no seed: torch's global generator, as the official Train.py draws them
    expected = F.normalize(torch.rand((10, 512)), dim=1)
    torch.manual_seed(7)
    assert torch.equal(memory.init_items(10, 512), expected)


def test_queries_are_normalised_over_channels_position_major():
    features = torch.zeros(1, 2, 1, 2)
    features[0, :, 0, 0] = torch.tensor([3.0, 4.0])     # position (0, 0): (3, 4) / 5
    features[0, :, 0, 1] = torch.tensor([0.0, 2.0])     # position (0, 1): (0, 1)
    queries = memory.queries_of(features)
    assert queries.shape == (1, 1, 2, 2)
    assert torch.allclose(memory.flat(queries), t([[0.6, 0.8], [0.0, 1.0]]))


def test_read_concatenates_each_query_with_its_attention_over_items():
    queries, items = t([[1.0, 0.0], [0.6, 0.8]]), t([P1, P2])
    # similarities: q1 (1, 0), q2 (0.6, 0.8); softmax over items of q1: e / (e + 1), 1 / (e + 1);
    # of q2: e^0.6 / (e^0.6 + e^0.8), e^0.8 / (...); the read is that mixture of p1 = (1, 0), p2 = (0, 1)
    a = E(1) / (E(1) + 1)
    b = E(0.6) / (E(0.6) + E(0.8))
    expected = t([[1.0, 0.0, a, 1 - a], [0.6, 0.8, b, 1 - b]])
    assert torch.allclose(memory.read(queries, items), expected, atol=1e-6)
    by_query, by_item = memory.attention(queries, items)
    assert torch.allclose(by_item.sum(dim=1), torch.ones(2)) and torch.allclose(by_query.sum(dim=0), torch.ones(2))


def test_read_passes_gradients_through_the_query_half_only():
    queries = t([[1.0, 0.0], [0.6, 0.8]]).requires_grad_()
    memory.read(queries, t([P1, P2]))[:, 2:].sum().backward()
    assert queries.grad is None or torch.equal(queries.grad, torch.zeros(2, 2))     # weights detached


def test_update_adds_the_max_normalised_assigned_queries_then_normalises():
    queries = t([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    items = t([P1, P2, [-1.0, 0.0]])
    # similarities (rows: queries; columns p1, p2, p3): (1, 0, -1), (0.8, 0.6, -0.8), (0, 1, 0)
    # nearest item: q1 -> p1, q2 -> p1, q3 -> p2; nobody -> p3 (unchanged)
    # softmax over the queries, divided by its column's max, is exp(s - max s) of the column:
    # p1's column max is q1's 1: weights q1 1, q2 e^-0.2; p2's max is q3's 1: weight 1
    p1 = torch.tensor(P1) + 1.0 * torch.tensor([1.0, 0.0]) + E(-0.2) * torch.tensor([0.8, 0.6])
    p2 = torch.tensor(P2) + torch.tensor([0.0, 1.0])
    expected = torch.stack([p1 / p1.norm(), p2 / p2.norm(), torch.tensor([-1.0, 0.0])])
    updated = memory.update_items(queries, items)
    assert torch.allclose(updated, expected, atol=1e-6)
    assert torch.allclose(updated.norm(dim=1), torch.ones(3)) and not updated.requires_grad


def test_update_normalises_by_the_max_over_all_queries_not_the_assigned_ones():
    # q_a = (0.8, 0.6): p1 0.8, p2 0.6 -> assigned to p1; q_b = (-sqrt(0.75), 0.5): p1 -0.866, p2 0.5 -> p2.
    # p2's column max is q_a's 0.6 (a query of p1), so q_b weighs e^(0.5 - 0.6), not 1 (the paper's max
    # over p2's own queries would give 1)
    qa, qb = [0.8, 0.6], [-math.sqrt(0.75), 0.5]
    updated = memory.update_items(t([qa, qb]), t([P1, P2]))
    p2 = torch.tensor(P2) + E(-0.1) * torch.tensor(qb)
    assert torch.allclose(updated[1], p2 / p2.norm(), atol=1e-6)
    p1 = torch.tensor(P1) + torch.tensor(qa)        # q_a is p1's column max: weight 1
    assert torch.allclose(updated[0], p1 / p1.norm(), atol=1e-6)


def test_compactness_is_the_mean_squared_difference_to_the_nearest_item():
    queries, items = t([[1.0, 0.0], [0.8, 0.6]]), t([P1, P2])
    # both queries are nearest to p1: squared differences 0, 0 and 0.04, 0.36; mean over 4 elements 0.1
    assert memory.compactness_loss(queries, items).item() == pytest.approx(0.1, abs=1e-7)
    assert memory.compactness_loss(queries, items, ranked=2).item() == pytest.approx(0.1, abs=1e-7)
    assert memory.compactness_distance(queries, items) == pytest.approx(0.1, abs=1e-7)


def test_separateness_is_the_mean_triplet_with_the_two_nearest_items():
    queries, items = t([[1.0, 0.0], [0.8, 0.6]]), t([P1, P2])
    # q1: |q1 - p1| = 0, |q1 - p2| = sqrt(2): max(0 - 1.414 + 1, 0) = 0
    # q2: |q2 - p1| = |(-0.2, 0.6)| = sqrt(0.4), |q2 - p2| = |(0.8, -0.4)| = sqrt(0.8): sqrt(0.4) - sqrt(0.8) + 1
    # mean over the two queries (torch adds 1e-6 to each difference: a change below 1e-5)
    expected = (0 + math.sqrt(0.4) - math.sqrt(0.8) + 1) / 2
    assert memory.separateness_loss(queries, items).item() == pytest.approx(expected, abs=1e-5)


def test_losses_send_gradients_to_the_queries_not_the_items():
    queries, items = t([[1.0, 0.0], [0.8, 0.6]]).requires_grad_(), t([P1, P2]).requires_grad_()
    (memory.compactness_loss(queries, items) + memory.separateness_loss(queries, items)).backward()
    assert queries.grad is not None and items.grad is None


def test_psnr_and_point_score_by_hand():
    # frames in [-1, 1] are mapped to [0, 1]: output (1, 0.5) -> (1, 0.75), target (-1, 0) -> (0, 0.5)
    output, target = t([[[1.0, 0.5]]]), t([[[-1.0, 0.0]]])
    errors = (1.0, 0.0625)          # squared differences on [0, 1]
    assert memory.frame_mse(output, target) == pytest.approx(sum(errors) / 2)
    assert memory.frame_psnr(output, target) == pytest.approx(10 * math.log10(2 / sum(errors)))
    weights = [1 - E(-e) for e in errors]       # sum(w e) / sum(w)
    expected = sum(w * e for w, e in zip(weights, errors)) / sum(weights)
    assert memory.point_score(output, target) == pytest.approx(expected, rel=1e-6)
    # a uniform error of 0.1 on [0, 1] (0.2 on [-1, 1]): mse 0.01, PSNR 20 dB, point score 0.01
    assert memory.frame_psnr(torch.full((3, 4, 4), 0.2), torch.zeros(3, 4, 4)) == pytest.approx(20, abs=1e-4)
    assert memory.point_score(torch.full((3, 4, 4), 0.2), torch.zeros(3, 4, 4)) == pytest.approx(0.01, rel=1e-5)
    assert memory.frame_psnr(target, target) == math.inf and math.isnan(memory.point_score(target, target))


def test_paper_point_score_and_psnr_peak_by_hand():
    # a 3 x 2 x 2 frame on [0, 1]: the target 0.1 everywhere, the output 0.1 + these errors per channel
    errors = t([[[0.3, 0.0], [0.0, 0.1]], [[0.4, 0.0], [0.6, 0.2]], [[0.0, 0.0], [0.8, 0.2]]])
    target = torch.full((3, 2, 2), 0.1) * 2 - 1
    output = (0.1 + errors) * 2 - 1                 # frames are given on [-1, 1]
    squared = [e * e for e in errors.flatten().tolist()]
    # official: per element, the squared errors weighted by 1 - exp(-e)
    weights = [1 - E(-e) for e in squared]
    official = sum(w * e for w, e in zip(weights, squared)) / sum(weights)
    assert memory.point_score(output, target) == memory.point_score(output, target, "official")
    assert memory.point_score(output, target) == pytest.approx(official, rel=1e-5)
    # paper: per pixel the L2 norm over channels, d = (0.5, 0, 1, 0.3), weights 1 - exp(-d) summing to 1
    norms = [0.5, 0.0, 1.0, 0.3]
    weights = [1 - E(-d) for d in norms]
    paper = sum(w / sum(weights) * d for w, d in zip(weights, norms))
    assert memory.point_score(output, target, "paper") == pytest.approx(paper, rel=1e-5)
    assert paper == pytest.approx(0.7057, abs=1e-4) and official == pytest.approx(0.4065, abs=1e-4)
    assert math.isnan(memory.point_score(target, target, "paper"))
    # PSNR: mse = 1.34 / 12; peak 1, or the output's maximum 0.9 on [0, 1] (not squared)
    mse = sum(squared) / 12
    assert mse == pytest.approx(1.34 / 12)
    assert memory.frame_psnr(output, target) == memory.frame_psnr(output, target, "one")
    assert memory.frame_psnr(output, target) == pytest.approx(10 * math.log10(1 / mse), rel=1e-6)
    assert memory.frame_psnr(output, target, "frame_max") == pytest.approx(10 * math.log10(0.9 / mse), rel=1e-6)
    assert memory.frame_psnr(target, target, "frame_max") == math.inf
    assert memory.frame_psnr(-torch.ones(3, 2, 2), target, "frame_max") == -math.inf     # an all-black output


def test_test_time_update_only_below_the_threshold():
    queries, items = t([[1.0, 0.0], [0.8, 0.6]]), t([P1, P2])
    updated, changed = memory.test_time_update(queries, items, 0.005, 0.01)
    assert changed and torch.equal(updated, memory.update_items(queries, items))
    for score in (0.01, 0.02, math.nan):        # strictly below only; a NaN score never updates
        kept, changed = memory.test_time_update(queries, items, score, 0.01)
        assert not changed and kept is items


# --- models ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, in_channels, upsampled", [("pred", 12, 256), ("recon", 3, 512)])
def test_models_carry_the_official_parameter_names(method, in_channels, upsampled):
    state = MNAD(method).state_dict()
    assert set(state) == official_names(method)
    assert state["encoder.moduleConv1.0.weight"].shape == (64, in_channels, 3, 3)
    assert state["decoder.moduleUpsample4.0.weight"].shape == (512, upsampled, 3, 3)
    assert state["decoder.moduleDeconv1.6.weight"].shape == (3, 64, 3, 3)


@pytest.mark.parametrize("method", ["pred", "recon"])
def test_model_shapes_on_tiny_frames(method):
    model = MNAD(method)
    window = torch.rand(2, 3 * model.t_length, 32, 32) * 2 - 1
    x, target = split_window(window, method)
    assert x.shape == ((2, 12, 32, 32) if method == "pred" else (2, 3, 32, 32)) and target.shape == (2, 3, 32, 32)
    items = memory.init_items(10, 512, seed=0)
    step = model(x, items, train=True)
    assert step.output.shape == (2, 3, 32, 32) and step.features.shape == (2, 512, 4, 4)
    assert step.read.shape == (2, 1024, 4, 4) and step.items.shape == (10, 512)
    assert step.output.abs().max() <= 1         # tanh
    model.eval()
    test = model(x, items, train=False)
    assert test.output.shape == (2, 3, 32, 32) and test.items is items and test.compactness.ndim == 0


def test_model_settings():
    assert MNAD("pred", t_length=3).encoder.moduleConv1[0].in_channels == 6
    assert MNAD("recon").config() == {"method": "recon", "n_channel": 3, "t_length": 1, "msize": 10, "fdim": 512,
                                      "mdim": 512}
    for bad in ({"method": "future"}, {"method": "pred", "t_length": 1}, {"method": "recon", "t_length": 5},
                {"method": "pred", "mdim": 256}):
        with pytest.raises(VPCError):
            MNAD(**bad)


def test_one_training_step_changes_weights_and_memory():
    torch.manual_seed(0)
    model = MNAD("pred")
    optimizer, scheduler = optimizer_and_scheduler(model, lr=2e-4, epochs=60)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    items = memory.init_items(10, 512, seed=0)
    window = torch.rand(2, 15, 32, 32) * 2 - 1
    new_items, losses = train_step(model, optimizer, window, items, 0.1, 0.1)
    assert all(math.isfinite(x) for x in losses)
    assert losses.total == pytest.approx(losses.pixel + 0.1 * losses.compactness + 0.1 * losses.separateness,
                                         rel=1e-5)
    after = model.state_dict()
    for name in ("encoder.moduleConv1.0.weight", "encoder.moduleConv4.3.weight", "decoder.moduleDeconv1.6.weight",
                 "decoder.moduleUpsample4.0.weight", "encoder.moduleConv1.1.running_mean"):
        assert not torch.equal(before[name], after[name]), name
    for name in ("encoder.moduleBatchNorm.weight", "encoder.moduleBatchNorm.running_mean"):    # never used
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(new_items, items) and not new_items.requires_grad
    assert torch.allclose(new_items.norm(dim=1), torch.ones(10), atol=1e-6)
    scheduler.step()        # cosine annealing to 0 over 60 epochs, stepped once per epoch
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * (1 + math.cos(math.pi / 60)) / 2)


def test_total_loss_and_the_official_reconstruction_swap():
    pixel, compactness, separateness = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)
    assert total_loss(pixel, compactness, separateness, 0.1, 0.01).item() == pytest.approx(1 + 0.2 + 0.03)
    assert total_loss(pixel, compactness, separateness, 0.1, 0.01, swap=True).item() == pytest.approx(1 + 0.3 + 0.02)


def test_score_window_updates_the_memory_below_the_threshold():
    torch.manual_seed(0)
    model = MNAD("recon").eval()
    items = memory.init_items(10, 512, seed=1)
    window = torch.rand(1, 3, 32, 32) * 2 - 1
    kept = score_window(model, window, items, threshold=0.0)
    assert not kept.updated and kept.items is items
    with torch.no_grad():
        step = model(window, items, train=False)
    assert kept.psnr == memory.frame_psnr(step.output[0], window[0])
    assert kept.distance == step.compactness.item()
    assert kept.point_score == memory.point_score(step.output[0], window[0])
    changed = score_window(model, window, items, threshold=1e9)
    assert changed.updated and torch.equal(changed.items, memory.update_items(memory.queries_of(step.features), items))
    with pytest.raises(RuntimeError):
        score_window(model.train(), window, items, 0.01)


def test_score_window_passes_the_paper_forms():
    torch.manual_seed(0)
    model = MNAD("recon").eval()
    items = memory.init_items(10, 512, seed=1)
    window = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        output = model(window, items, train=False).output[0]
    official = score_window(model, window, items, threshold=0.0)
    paper = score_window(model, window, items, threshold=0.0, point_score="paper", psnr_peak="frame_max")
    assert paper.point_score == memory.point_score(output, window[0], "paper") != official.point_score
    assert paper.psnr == memory.frame_psnr(output, window[0], "frame_max") != official.psnr
    assert paper.distance == official.distance


# --- checkpoints -------------------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model, items = MNAD("recon"), memory.init_items(10, 512, seed=2)
    settings = {"lr": 2e-4, "dataset": "ped2", "epochs": 60}
    paths = [save_checkpoint(tmp_path / f"m{i}.safetensors", model, items, settings) for i in range(2)]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    data = paths[0].read_bytes()
    metadata = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    assert list(metadata) == [METADATA_KEY]
    assert metadata[METADATA_KEY] == json.dumps(json.loads(metadata[METADATA_KEY]), sort_keys=True)
    loaded = load_checkpoint(paths[0])
    assert loaded.settings == settings and loaded.config == model.config()
    assert set(loaded.state) == set(model.state_dict())
    assert all(torch.equal(loaded.state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(loaded.items, items) and torch.equal(load_items(paths[0]), items)
    assert not list(tmp_path.glob(".*partial*"))
    built = loaded.build().eval()
    window = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(built(window, items, False).output, model.eval()(window, items, False).output)


def test_official_state_dict_and_keys_load(tmp_path):
    torch.manual_seed(0)
    model, items = MNAD("pred"), memory.init_items(7, 512, seed=2)
    state = model.state_dict()
    assert set(state) == official_names("pred")
    torch.save(dict(state), tmp_path / "state.pth")
    torch.save(items, tmp_path / "keys.pt")                  # as the official Train.py saves the items
    loaded = load_checkpoint(tmp_path / "state.pth", tmp_path / "keys.pt")
    assert loaded.config == {**model.config(), "msize": 7}
    assert torch.equal(loaded.items, items) and torch.equal(load_items(tmp_path / "keys.pt"), items)
    assert all(torch.equal(loaded.state[k], v) for k, v in state.items())
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "parallel.pth")    # DataParallel names
    assert load_checkpoint(tmp_path / "parallel.pth").config["method"] == "pred"
    recon = MNAD("recon").state_dict()
    torch.save(recon, tmp_path / "recon.pth")
    assert load_checkpoint(tmp_path / "recon.pth").config == MNAD("recon").config()
    # the items may come from an MNAD checkpoint as well
    save_checkpoint(tmp_path / "ours.safetensors", model, items)
    assert load_checkpoint(tmp_path / "state.pth", tmp_path / "ours.safetensors").items.shape == (7, 512)


def one_line_error(path, items_path=None, named=None):
    """The message of loading ``path`` (and ``items_path``): one line naming the file at fault."""
    with pytest.raises(VPCError) as error:
        load_checkpoint(path, items_path)
    message = str(error.value)
    assert "\n" not in message and str(named or path) in message
    return message


def test_damaged_or_wrong_files_give_one_line(tmp_path):
    torch.manual_seed(0)
    model, items = MNAD("recon"), memory.init_items(10, 512, seed=2)
    good = save_checkpoint(tmp_path / "good.safetensors", model, items).read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[:len(good) // 2])
    assert "cut short" in one_line_error(tmp_path / "cut.safetensors")
    (tmp_path / "noise.bin").write_bytes(b"\x01\x02not a checkpoint at all")
    assert "neither" in one_line_error(tmp_path / "noise.bin")
    torch.save(model.state_dict(), tmp_path / "state.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "state.pth").read_bytes()[:4000])
    assert "damaged" in one_line_error(tmp_path / "cut.pth")
    torch.save(model, tmp_path / "whole.pth")                # the official Train.py pickles the whole model
    assert "state_dict()" in one_line_error(tmp_path / "whole.pth")
    torch.save(items, tmp_path / "keys.pt")
    assert "memory items" in one_line_error(tmp_path / "keys.pt")
    state = dict(model.state_dict())
    state.pop("decoder.moduleDeconv2.3.weight")
    torch.save(state, tmp_path / "partial.pth")
    assert "decoder.moduleDeconv2.3.weight" in one_line_error(tmp_path / "partial.pth")
    torch.save(torch.rand(10, 64), tmp_path / "narrow.pt")
    assert "(M, 512)" in one_line_error(tmp_path / "good.safetensors", tmp_path / "narrow.pt", tmp_path / "narrow.pt")
    with pytest.raises(VPCError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({ITEMS_KEY: items}, str(tmp_path / "foreign.safetensors"), metadata={"format": "other"})
    assert "not an MNAD checkpoint" in one_line_error(tmp_path / "foreign.safetensors")


def test_a_safetensors_header_length_starting_with_a_pickle_byte_is_still_safetensors(tmp_path):
    from safetensors.torch import save_file

    from extra.checkpoints import file_kind as _file_kind

    path = tmp_path / "file.safetensors"
    for pad in range(0, 400, 3):    # the header's length moves in steps of 8: one of them ends in byte 0x80
        save_file({"x": torch.zeros(2)}, str(path), metadata={"mnad": "p" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80 and _file_kind(path, "file") == "safetensors"
    torch.save({"x": torch.zeros(2)}, tmp_path / "state.pth")
    assert _file_kind(tmp_path / "state.pth", "file") == "torch"
