"""The folders the site makes for a client's jobs before staging them in: inside
SITE/data or not at all, whatever path a database row names."""

from __future__ import annotations

import os

from balsam_mp.site.workdirs import make_folders


def test_folders_are_made_once_and_those_leading_out_fail_their_items_alone(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "link").symlink_to(outside)
    (data / "file").write_text("in the way")
    (data / "real").mkdir()
    (data / "alias").symlink_to(data / "real")
    items = [
        (1, f"{data}/a/b/in.dat"),
        (2, f"{data}/a/b/other.dat"),  # the same folder: made once, fine
        (3, f"{data}/new/../../outside/x/in.dat"),  # '..' after a part not there yet
        (4, f"{data}/link/y/in.dat"),  # through a symlink out of SITE/data
        (5, f"{data}/file/in.dat"),  # a file where the folder should be
        (6, f"{tmp_path}/elsewhere/in.dat"),
        (7, f"{data}//a/./c/in.dat"),  # not a normal path: refused, not reinterpreted
        (8, f"{data}/alias/1/in.dat"),  # inside, but another job's real/1 would be it too
    ]
    failures = {f.item_id: f for f in make_folders(data, items)}
    assert (data / "a" / "b").is_dir()
    assert sorted(failures) == [3, 4, 5, 6, 7, 8]
    assert all(f.code == "INVALID_PATH" for f in failures.values())
    assert "leads out of SITE/data through a symlink" in failures[4].reason
    assert "passes through a symlink" in failures[8].reason and not (data / "real/1").exists()
    assert os.listdir(outside) == [] and not (tmp_path / "elsewhere").exists()
    assert not (data / "new").exists()


def test_a_data_folder_that_is_a_symlink_and_names_past_the_limit(tmp_path):
    (tmp_path / "real").mkdir()
    data = tmp_path / "data"
    data.symlink_to(tmp_path / "real")  # SITE/data elsewhere (a project file system)
    failures = {f.item_id: f for f in make_folders(data, [
        (1, f"{data}/a/b/in.dat"), (2, f"{data}/{'x' * 300}/in.dat")])}
    assert (tmp_path / "real" / "a" / "b").is_dir()
    assert list(failures) == [2] and "File name too long" in failures[2].reason
