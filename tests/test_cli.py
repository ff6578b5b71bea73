"""Shared command-line behaviour: booleans, path precedence, work_num, one-line errors."""
from pathlib import Path

import pytest

from extra import config
from extra.cli import add_bool_flag, base_parser, resolve_context
from extra.errors import VPCError, run_main


def parse(*argv, bool_default=True):
    parser = base_parser("test")
    add_bool_flag(parser, "--save_feature", bool_default, "a boolean flag")
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("text, value", [
    ("yes", True), ("True", True), ("t", True), ("Y", True), ("1", True),
    ("no", False), ("false", False), ("F", False), ("n", False), ("0", False),
])
def test_boolean_spellings(text, value):
    assert parse(f"--save_feature={text}").save_feature is value


def test_bare_boolean_flag_means_true():
    assert parse("--save_feature", bool_default=False).save_feature is True
    assert parse(bool_default=False).save_feature is False


def test_bad_boolean_is_a_one_line_error():
    with pytest.raises(VPCError, match="expected a boolean"):
        parse("--save_feature=maybe")


def test_paths_flag_beats_environment_beats_config(tmp_path, monkeypatch):
    monkeypatch.delenv("VPC_DATA_ROOT", raising=False)
    monkeypatch.delenv("VPC_WORK_DIR", raising=False)
    context = resolve_context(parse())
    assert context.data_root == Path(config.data_root).resolve()
    assert context.work_dir == Path(config.work_dir).resolve()
    monkeypatch.setenv("VPC_DATA_ROOT", str(tmp_path / "env_data"))
    monkeypatch.setenv("VPC_WORK_DIR", str(tmp_path / "env_work"))
    assert resolve_context(parse()).data_root == tmp_path / "env_data"
    context = resolve_context(parse(f"--data_root={tmp_path / 'flag'}", f"--work_dir={tmp_path / 'w'}"))
    assert (context.data_root, context.work_dir) == (tmp_path / "flag", tmp_path / "w")


def test_work_num_selects_a_subfolder(tmp_path):
    assert resolve_context(parse(f"--work_dir={tmp_path}")).work_dir == tmp_path
    assert resolve_context(parse(f"--work_dir={tmp_path}", "--work_num=0")).work_dir == tmp_path / "0"


def test_dataset_settings_and_consecutive_default():
    context = resolve_context(parse("--dataset=shanghai"))
    assert (context.settings.name, context.consecutive) == ("shanghai", 4)
    assert resolve_context(parse("--dataset=avenue")).consecutive == 10
    assert resolve_context(parse("--dataset=iitb", "--consecutive=6")).consecutive == 6


def test_unknown_dataset_names_the_choices():
    with pytest.raises(VPCError, match="unknown dataset 'ped2'; choose one of: avenue, shanghai, iitb"):
        resolve_context(parse("--dataset=ped2"))


def test_run_main_prints_one_line_and_exits_2(capsys):
    def main(argv):
        raise VPCError("something is missing")

    assert run_main(main) == 2
    assert capsys.readouterr().err == "error: something is missing\n"


def test_dataset_settings_follow_the_spec():
    avenue, shanghai, iitb = (config.DATASETS[n] for n in ("avenue", "shanghai", "iitb"))
    assert (avenue.max_w, avenue.max_h, shanghai.max_w, shanghai.max_h, iitb.max_w, iitb.max_h) == \
        (640, 360, 856, 480, 1920, 1080)
    assert [s.obj_size for s in (avenue, shanghai, iitb)] == [64, 224, 224]
    assert [(s.train_conf, s.test_conf) for s in (avenue, shanghai, iitb)] == [(0.7, 0.6), (0.8, 0.6), (0.8, 0.6)]
    assert [s.box_factor for s in (avenue, shanghai, iitb)] == [(1.0, 1.0), (1.2, 1.2), (1.0, 1.0)]
    assert [s.cnl_pool for s in (avenue, shanghai, iitb)] == [32, 64, 64]
    assert [s.coreset_ratio for s in (avenue, shanghai, iitb)] == [0.01, 0.25, 0.1]
    assert [s.power_n for s in (avenue, shanghai, iitb)] == [4, 2, 1]
    assert [s.skip_first_frame for s in (avenue, shanghai, iitb)] == [False, False, True]


def test_run_main_turns_a_stray_os_error_into_one_line(capsys):
    def main(argv):
        raise OSError(28, "No space left on device", "/work/scores/cam.csv")

    assert run_main(main) == 2
    assert capsys.readouterr().err == ("error: No space left on device (/work/scores/cam.csv); finished files are "
                                       "kept, a rerun resumes\n")


def test_footage_folder_is_keyed_by_the_inputs_and_settings_not_the_model_name(tmp_path):
    import os

    from extra.cli import footage_folder
    from extra.sources import footage_videos

    for name in ("cam_a", "cam_b"):
        (tmp_path / "in" / name).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "in" / name / f"{i}.jpg").write_bytes(b"x" * (i + 1))
    videos = footage_videos([tmp_path / "in"])
    folder = footage_folder(tmp_path / "work", videos, {"detector": "motion"})
    assert folder.parent == (tmp_path / "work" / "footage").resolve() and folder.name.startswith("cam_a_")
    assert footage_folder(tmp_path / "work", footage_videos([tmp_path / "in"]), {"detector": "motion"}) == folder
    assert footage_folder(tmp_path / "work", videos, {"detector": "hog"}) != folder
    assert footage_folder(tmp_path / "work", videos[:1], {"detector": "motion"}) != folder
    last = tmp_path / "in" / "cam_b" / "2.jpg"
    os.utime(last, ns=(1, 1))          # footage changed on disk: a folder of its own
    assert footage_folder(tmp_path / "work", footage_videos([tmp_path / "in"]), {"detector": "motion"}) != folder
