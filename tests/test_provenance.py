import h5py
import pytest

from extra.errors import VPCError
from extra.provenance import check_record, read_h5_record, read_sidecar_record, write_h5_record, write_sidecar_record


def test_h5_record_round_trip_and_check(tmp_path):
    record = {"consecutive": 10, "box_factor": (1.2, 1.2), "detector": "motion"}
    with h5py.File(tmp_path / "a.h5", "w") as f:
        write_h5_record(f, record)
    with h5py.File(tmp_path / "a.h5", "r") as f:
        found = read_h5_record(f)
    check_record(found, record, "a.h5")        # tuples and lists compare equal after the round trip
    with pytest.raises(VPCError, match=r"a\.h5 was made with other settings \(consecutive: file 10, this run 4\)"):
        check_record(found, {**record, "consecutive": 4}, "a.h5")


def test_sidecar_record_and_files_without_one(tmp_path):
    bank = tmp_path / "spatial_memory_bank_0.01.pt"
    assert read_sidecar_record(bank) is None
    check_record(None, {"cnl_pool": 32}, bank)   # the authors' banks carry no record: accepted
    write_sidecar_record(bank, {"cnl_pool": 32})
    assert (tmp_path / "spatial_memory_bank_0.01.pt.json").is_file()
    with pytest.raises(VPCError, match="cnl_pool: file 32, this run 64"):
        check_record(read_sidecar_record(bank), {"cnl_pool": 64}, bank)
