"""A denoise run folder describes its model: refusals, overwrite, kill and resume."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

from cifar_denoise_adv import denoise
from cifar_denoise_adv.core import progress
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.errors import DataError
from cifar_denoise_adv.core.errors import UserError
from tests.conftest import folder_snapshot

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = dict(
    num_blocks=1, filters=4, downscale=2, batch_size=8, epochs=4, validation_images=4
)
NUM_TRAIN = 16  # 5 train files of 4 images, 4 of them held out for validation


def _argv(data_dir, run_dir, **overrides):
    settings = dict(TINY, data_dir=data_dir, run_dir=str(run_dir), **overrides)
    return [f"--{name}={value}" for name, value in settings.items()]


def _run(data_dir, run_dir, **overrides):
    argv = ["denoise", *_argv(data_dir, run_dir, **overrides)]
    return denoise.APP.job(denoise.APP.parse(argv), log=print)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from tests.conftest import write_cifar

    root = tmp_path_factory.mktemp("runs")
    data_dir, _ = write_cifar(root / "data", "python", per_file=4)
    run_dir = root / "uninterrupted"
    return data_dir, run_dir, _run(data_dir, run_dir)


def _bytes(run_dir, *names):
    return {name: (run_dir / name).read_bytes() for name in names}


def test_a_rerun_with_another_sigma_is_refused_and_changes_nothing(uninterrupted):
    data_dir, run_dir, _ = uninterrupted
    before = _bytes(run_dir, "flags.cfg", "metrics.json", "model.keras", "run.json")
    with pytest.raises(UserError) as error:
        _run(data_dir, run_dir, sigma=0.2, epochs=2)
    message = str(error.value)
    assert "\n" not in message
    assert "--sigma 0.1 -> 0.2" in message and "--epochs 4 -> 2" in message
    assert _bytes(run_dir, *before) == before


def test_a_failed_rerun_keeps_flags_cfg_and_metrics_json(uninterrupted, tmp_path):
    data_dir, finished, _ = uninterrupted
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    before = _bytes(run_dir, "flags.cfg", "metrics.json")
    moved = tmp_path / "data_moved_away"
    shutil.copytree(data_dir, moved)
    shutil.rmtree(data_dir)
    try:
        with pytest.raises(DataError):
            _run(data_dir, run_dir)  # the same settings, the data gone
    finally:
        shutil.copytree(moved, data_dir)
    assert _bytes(run_dir, *before) == before


def test_overwrite_starts_afresh_and_keeps_the_users_files(uninterrupted, tmp_path):
    data_dir, finished, _ = uninterrupted
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    (run_dir / "my_notes.txt").write_text("keep me")
    record = _run(data_dir, run_dir, sigma=0.2, epochs=1, overwrite=True)
    assert record["resumed_from_epoch"] == 0 and record["sigma"] == 0.2
    assert len(record["history"]["loss"]) == 1
    assert (run_dir / "my_notes.txt").read_text() == "keep me"
    assert "--sigma=0.2" in (run_dir / "flags.cfg").read_text()
    lines = (run_dir / "flags.cfg").read_text().splitlines()
    assert not [
        line for line in lines if line.startswith(("--overwrite", "--nooverwrite"))
    ]
    assert json.loads((run_dir / runs.RUN_FILE).read_text())["foreign"] == [
        "my_notes.txt"
    ]


@pytest.mark.parametrize(
    "flag, message",
    [
        ("data_dir", "no such file or folder"),
        ("init_from", "no model.keras"),
    ],
)
def test_overwrite_with_a_bad_input_keeps_the_finished_run(
    uninterrupted, tmp_path, flag, message
):
    """Every input is checked before --overwrite removes anything."""
    data_dir, finished, _ = uninterrupted
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    before = folder_snapshot(run_dir)
    bad = str(tmp_path / "nonexistent")
    if flag == "init_from":  # a folder without a model
        os.mkdir(bad)
    settings = {"data_dir": data_dir, flag: bad}
    with pytest.raises(UserError, match=f"^--{flag}=.*{message}"):
        _run(settings.pop("data_dir"), run_dir, sigma=0.2, overwrite=True, **settings)
    assert folder_snapshot(run_dir) == before


def test_init_from_another_architecture_is_refused_before_overwriting(
    uninterrupted, tmp_path
):
    data_dir, finished, _ = uninterrupted
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    before = folder_snapshot(run_dir)
    with pytest.raises(UserError) as error:
        _run(data_dir, run_dir, filters=8, init_from=finished, overwrite=True)
    assert str(error.value) == (
        f"--init_from={finished}: its model does not match this architecture "
        "(weight 0 has shape [3, 3, 12, 4], this one [3, 3, 12, 8]); expected a "
        "denoise run with the same --arch, --num_blocks, --filters and --downscale."
    )
    assert folder_snapshot(run_dir) == before


def test_a_bad_data_dir_in_a_new_folder_leaves_no_folder(uninterrupted, tmp_path):
    run_dir = tmp_path / "new" / "run"
    with pytest.raises(UserError, match="^--data_dir="):
        _run(str(tmp_path / "nonexistent"), run_dir)
    assert os.listdir(tmp_path) == []


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from cifar_denoise_adv import denoise
    from cifar_denoise_adv.core import progress, training

    def kill(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if sys.argv[1] == "mid_epoch":  # in the second batch of epoch 3
        def batch_end(self, batch, logs=None):
            if len(self.entries) == 2 and batch == 1:
                kill()
        progress.EpochRecord.on_train_batch_end = batch_end
    else:  # after the last epoch, before the model is saved and evaluated
        training.finish_training = kill
    denoise.APP.job(denoise.APP.parse(["denoise", *sys.argv[2:]]))
    """
)


@pytest.mark.parametrize("point, done", [("mid_epoch", 2), ("evaluation", 4)])
def test_killed_and_resumed_gives_the_record_of_an_uninterrupted_run(
    uninterrupted, tmp_path, point, done
):
    data_dir, _, reference = uninterrupted
    run_dir = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLER, point, *_argv(data_dir, run_dir)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert training.completed_epochs(str(run_dir)) == done
    assert not (run_dir / "metrics.json").exists()
    backup = str(run_dir / training.BACKUP_DIR)
    first_piece = progress.completed(backup, done)
    assert len(first_piece) == done

    record = _run(data_dir, run_dir)
    assert record["resumed_from_epoch"] == done
    assert set(record) == set(reference)
    assert {k: len(v) for k, v in record["history"].items()} == {
        k: 4 for k in reference["history"]
    }
    # The killed piece's epochs are reported as they were trained.
    assert record["history"]["loss"][:done] == [e["logs"]["loss"] for e in first_piece]
    seconds = [e["seconds"] for e in progress.completed(backup, 4)]
    assert record["train_seconds_total"] == pytest.approx(sum(seconds))
    assert record["train_seconds_this_run"] == pytest.approx(sum(seconds[done:]))
    assert record["train_seconds_total"] > record["train_seconds_this_run"]
    assert record["train_images_per_s"] == pytest.approx(
        NUM_TRAIN * 4 / record["train_seconds_total"]
    )
