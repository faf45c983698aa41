"""Keys that do not exist and run directories that cannot be what they are asked to be, on
real processes: one paragraph, exit code 2, before anything is written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import TINY, cli

RUN = ["lang=hist_10_bos", "model.layers=1", *TINY, "train.num_threads=1"]


def refused(proc, cwd: Path) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "Traceback" not in err and "\n" not in err, err
    assert "run directory:" not in proc.stdout
    assert not (cwd / "outputs").exists()
    return err


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("override, key, close", [
    ("+model.layerz=3", "model.layerz", "model.layers"),
    ("+optimizer.lrr=0.1", "optimizer.lrr", "optimizer.lr"),
    ("+train.extra=1", "train.extra", None),
    ("model.layerz=3", "model.layerz", "model.layers"),
    ("optimizer.lrr=0.1", "optimizer.lrr", "optimizer.lr"),
])
def test_an_unknown_key_is_refused_naming_it_and_the_close_names(override, key, close,
                                                                  tmp_path):
    err = refused(cli(*RUN, override, cwd=tmp_path), tmp_path)
    assert re.search(rf"{re.escape(key)} (\(from \S+\) )?is not a key of the config", err)
    if close:
        assert f"close names that exist: {close}" in err
    else:  # nothing close: every key beside it
        assert "the keys there are train.epochs, " in err and "To append" not in err


def test_an_unknown_key_is_refused_on_a_resume_too(tmp_path):
    run = tmp_path / "run"
    cli(*RUN, f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    before = files(run)
    proc = cli("--resume", str(run), "+train.extra=1", cwd=tmp_path)
    assert proc.returncode == 2 and "train.extra (from +train.extra=1) is not a key" in \
        proc.stderr
    assert files(run) == before
    # a run whose own overrides hold one (made before keys were checked) resumes no more
    saved = run / ".hydra" / "overrides.yaml"
    saved.write_text(yaml.safe_dump([*yaml.safe_load(saved.read_text()), "+model.layerz=3"]))
    before = files(run)
    proc = cli("--resume", str(run), cwd=tmp_path)
    assert proc.returncode == 2 and "model.layerz (from +model.layerz=3)" in proc.stderr
    assert files(run) == before


def test_an_unknown_key_of_a_sweep_is_refused_before_multirun_yaml(tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli("-m", *RUN, "+model.layerz=3", "train.seed=0,1", f"hydra.sweep.dir={sweep}",
               cwd=tmp_path)
    assert proc.returncode == 2 and "model.layerz" in proc.stderr
    assert not sweep.exists()


def test_an_empty_run_dir_is_refused_and_the_working_directory_untouched(tmp_path):
    (tmp_path / "mine.txt").write_text("mine")
    err = refused(cli(*RUN, "hydra.run.dir=", cwd=tmp_path), tmp_path)
    assert "hydra.run.dir is empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    err = refused(cli("-m", *RUN, "train.seed=0,1", "hydra.sweep.dir=", cwd=tmp_path),
                  tmp_path)
    assert "hydra.sweep.dir is empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_a_dangling_symlink_is_refused(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    err = refused(cli(*RUN, f"hydra.run.dir={link}", cwd=tmp_path), tmp_path)
    assert f"{link} is a symlink to {tmp_path / 'nowhere'}, which does not exist" in err
    err = refused(cli(*RUN, f"hydra.run.dir={link}/run", cwd=tmp_path), tmp_path)
    assert "which does not exist" in err
    assert not (tmp_path / "nowhere").exists() and os.path.islink(link)


def test_a_path_longer_than_the_system_allows_is_refused(tmp_path):
    long = tmp_path / "/".join(["d" * 200] * 21)  # each name fits, the whole does not
    err = refused(cli(*RUN, f"hydra.run.dir={long}", cwd=tmp_path), tmp_path)
    assert "bytes long as an absolute path" in err and "at most 4095" in err
    assert sorted(tmp_path.iterdir()) == []


def _deep(root: Path, size: int) -> Path:
    """A path of `size` bytes below root, of names that each fit (200 bytes at most)."""
    path = str(root)
    while len(path) < size:
        path += "/" + "e" * min(200, size - len(path) - 1)
    return Path(path)


def test_a_path_whose_run_files_would_pass_the_limit_is_refused(tmp_path):
    # 4,070 bytes fit, but checkpoints/.rasp_hydra-best.pt.PID.tmp below it would not: it
    # used to write train.log, .hydra/ and run.lock, then fail with ENAMETOOLONG (exit 1)
    from rasp_hydra.cli.rundir import INSIDE_RESERVE

    for size in (4070, 4096 - INSIDE_RESERVE):
        err = refused(cli(*RUN, f"hydra.run.dir={_deep(tmp_path, size)}", cwd=tmp_path),
                      tmp_path)
        assert f"is {size} bytes long as an absolute path" in err, err
        assert f"at most {4095 - INSIDE_RESERVE} bytes long" in err
        err = refused(cli("-m", *RUN, "train.seed=0,1",
                          f"hydra.sweep.dir={_deep(tmp_path, size)}", cwd=tmp_path), tmp_path)
        assert "bytes long as an absolute path" in err
    assert sorted(tmp_path.iterdir()) == []
    # one byte shorter, the run has room for all its files
    cli(*RUN, f"hydra.run.dir={_deep(tmp_path, 4095 - INSIDE_RESERVE)}", cwd=tmp_path,
        check=True)


def test_every_file_a_run_writes_fits_in_the_reserve(tmp_path):
    # the reserve above is the longest path a run writes below its directory, temporary
    # files (the longest pid Linux gives) included: a resumed run's, with its curves
    from rasp_hydra.cli.rundir import INSIDE_RESERVE
    from rasp_hydra.runs.files import TMP_PREFIX

    run = tmp_path / "run"
    cli(*RUN, f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    cli("--resume", str(run), "train.epochs=3", cwd=tmp_path, check=True)
    longest = max(len(os.fsencode(str(p.parent.relative_to(run) / f"{TMP_PREFIX}{p.name}."
                                      f"{4194304}.tmp"))) + 1 for p in run.rglob("*"))
    assert 40 < longest <= INSIDE_RESERVE


def test_a_name_longer_than_the_file_system_allows_is_refused(tmp_path):
    # its parent exists: the look-up itself failed with ENAMETOOLONG (a traceback, exit 1)
    for path in (tmp_path / ("y" * 300), Path("y" * 300)):
        err = refused(cli(*RUN, f"hydra.run.dir={path}", cwd=tmp_path), tmp_path)
        assert "is 300 bytes long, and the file system allows at most 255 for one name" in err
        err = refused(cli("-m", *RUN, "train.seed=0,1", f"hydra.sweep.dir={path}",
                          cwd=tmp_path), tmp_path)
        assert "at most 255 for one name" in err
    assert sorted(tmp_path.iterdir()) == []


def test_a_directory_holding_other_files_is_refused_unless_asked(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    err = refused(cli(*RUN, f"hydra.run.dir={mine}", cwd=tmp_path), tmp_path)
    assert "already holds files that are not a run's (notes.txt)" in err
    assert "train.into_nonempty_dir=true" in err
    assert files(mine) == {"notes.txt": b"keep me"}
    proc = cli(*RUN, f"hydra.run.dir={mine}", "train.into_nonempty_dir=true", cwd=tmp_path,
               check=True)
    assert proc.returncode == 0 and (mine / "metrics.json").is_file()
    assert (mine / "notes.txt").read_text() == "keep me"
    # its own run resumes there without the flag being given again (it is in the run's
    # config) and an empty directory needs no flag
    empty = tmp_path / "empty"
    empty.mkdir()
    cli(*RUN, f"hydra.run.dir={empty}", cwd=tmp_path, check=True)
