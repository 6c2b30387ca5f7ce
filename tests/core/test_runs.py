import json
import os
import pathlib
import select
import subprocess
import sys
import textwrap

import pytest

from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising.noise_job import NoiseConfig
from tests.conftest import folder_snapshot

REPO = pathlib.Path(__file__).resolve().parents[2]


def _config(run_dir, **changes):
    return NoiseConfig(run_dir=str(run_dir), data_dir="/data/cifar", **changes)


def _finish(config, made=("metrics.json",), log=lambda message: None):
    with runs.claim(config, "noise", log) as held:
        run_dir = held.begin()
        for name in made:
            pathlib.Path(run_dir, name).write_text(name)


def _record(run_dir):
    return json.loads((pathlib.Path(run_dir) / runs.RUN_FILE).read_text())


def test_a_run_records_its_settings_what_it_made_and_what_was_there(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    config = _config(tmp_path, sigma=0.1)
    with runs.claim(config, "noise") as held:
        held.begin()
        running = _record(tmp_path)
        (tmp_path / "metrics.json").write_text("{}")
    assert running["state"] == "running" and running["pid"] == os.getpid()
    assert running["settings"]["sigma"] == 0.1
    assert "run_dir" not in running["settings"]  # where it runs is no setting
    assert running["settings"]["data_dir"] == "/data/cifar"
    done = _record(tmp_path)
    assert done["state"] == "done"
    assert done["foreign"] == ["notes.txt"] and done["made"] == ["metrics.json"]


def test_other_settings_are_refused_with_each_difference(tmp_path):
    _finish(_config(tmp_path, sigma=0.1, target_psnr=20.0))
    with pytest.raises(UserError) as error:
        _finish(_config(tmp_path, sigma=0.2, target_psnr=25.0))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"--run_dir={tmp_path}: holds a noise run")
    assert "--sigma 0.1 -> 0.2" in message and "--target_psnr 20.0 -> 25.0" in message
    assert "--overwrite" in message
    # The same settings go on in the same folder.
    _finish(_config(tmp_path, sigma=0.1, target_psnr=20.0, num_examples=3))


def test_a_run_of_another_app_is_refused(tmp_path):
    _finish(_config(tmp_path))
    refused = pytest.raises(UserError, match="holds a run of the noise app, not of")
    with refused, runs.claim(_config(tmp_path), "denoise"):
        pytest.fail("claimed a folder of another app's run")


def test_overwrite_removes_only_what_the_earlier_run_made(tmp_path):
    (tmp_path / "notes.txt").write_bytes(b"\x00mine")
    _finish(_config(tmp_path, sigma=0.1), made=("metrics.json", "figure.png"))
    (tmp_path / "later.txt").write_text("added after the run")
    _finish(_config(tmp_path, sigma=0.2, overwrite=True), made=("other.png",))
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(["notes.txt", "later.txt", "other.png", runs.RUN_FILE])
    assert (tmp_path / "notes.txt").read_bytes() == b"\x00mine"
    assert _record(tmp_path)["settings"]["sigma"] == 0.2


def test_overwrite_of_an_interrupted_run_removes_what_appeared_since(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    interrupted = pytest.raises(KeyboardInterrupt)
    with interrupted, runs.claim(_config(tmp_path, sigma=0.1), "noise") as held:
        held.begin()
        (tmp_path / "backup").mkdir()
        (tmp_path / "backup" / "weights.h5").write_text("w")
        raise KeyboardInterrupt
    assert _record(tmp_path)["state"] == "running"
    _finish(_config(tmp_path, sigma=0.2, overwrite=True), made=())
    assert not (tmp_path / "backup").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_folder_of_before_run_json_is_judged_by_its_flags_cfg(tmp_path):
    outputs.write_flagfile(_config(tmp_path, sigma=0.1), "noise")
    (tmp_path / "backup").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"--sigma 0.1 -> 0.3"):
        _finish(_config(tmp_path, sigma=0.3))
    _finish(_config(tmp_path, sigma=0.3, overwrite=True), made=())
    assert not (tmp_path / "backup").exists() and (tmp_path / "notes.txt").exists()


def test_a_failed_input_check_leaves_the_run_overwrite_would_replace(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    _finish(_config(tmp_path, sigma=0.1), made=("metrics.json", "model.keras"))
    before = folder_snapshot(tmp_path)
    bad_data = pytest.raises(UserError, match="^--data_dir=/nowhere")
    with bad_data, runs.claim(_config(tmp_path, sigma=0.2, overwrite=True), "noise"):
        raise UserError("--data_dir=/nowhere: no such file or folder.")
    assert folder_snapshot(tmp_path) == before
    # Once the inputs pass, --overwrite replaces that run.
    _finish(_config(tmp_path, sigma=0.2, overwrite=True), made=("other.png",))
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "other.png", runs.RUN_FILE]


def test_a_fresh_run_that_fails_leaves_no_trace(tmp_path):
    new_folder = tmp_path / "new" / "run"
    with pytest.raises(UserError), runs.claim(_config(new_folder), "noise"):
        raise UserError("--data_dir=/nowhere: no such file or folder.")
    assert os.listdir(tmp_path) == []
    users = tmp_path / "users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError), runs.claim(_config(users), "noise") as held:
        held.begin()
        raise RuntimeError("failed before making anything")
    assert folder_snapshot(users) == {"notes.txt": b"mine"}
    # So the corrected command needs no --overwrite.
    _finish(_config(users, sigma=0.3))
    assert _record(users)["foreign"] == ["notes.txt"]


def test_a_dead_runs_record_of_nothing_made_is_taken_over_in_one_line(tmp_path):
    # What a run killed before its first output, or a failed first check of
    # an older version, left: run.json "running", its process gone.
    (tmp_path / "notes.txt").write_text("mine")
    outputs.write_json(
        str(tmp_path / runs.RUN_FILE),
        {
            "app": "universal",
            "settings": {"classifier": "/runs/denoiser"},
            "state": "running",
            "started": "2026-12-01 02:29:06",
            "pid": 2**22 + 1,
            "foreign": ["notes.txt"],
        },
    )
    logged = []
    _finish(_config(tmp_path, sigma=0.2), log=logged.append)
    assert logged == [
        f"--run_dir={tmp_path}: the universal run recorded there (started "
        "2026-12-01 02:29:06) ended without making anything; this run takes its "
        "place"
    ]
    record = _record(tmp_path)
    assert record["app"] == "noise" and record["state"] == "done"
    assert record["foreign"] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_dead_run_that_made_files_is_still_refused(tmp_path):
    interrupted = pytest.raises(KeyboardInterrupt)
    with interrupted, runs.claim(_config(tmp_path, sigma=0.1), "noise") as held:
        held.begin()
        (tmp_path / "backup").mkdir()
        raise KeyboardInterrupt
    with pytest.raises(UserError, match=r"--sigma 0.1 -> 0.2"):
        _finish(_config(tmp_path, sigma=0.2))
    assert (tmp_path / "backup").is_dir()


def test_a_job_that_never_begins_is_a_bug(tmp_path):
    never = pytest.raises(RuntimeError, match="never called Claim.begin")
    with never, runs.claim(_config(tmp_path), "noise"):
        pass


def test_hold_removes_only_the_lock_file_and_folders_it_made(tmp_path):
    folder = tmp_path / "made" / "here"
    with runs.hold(str(folder)) as path:
        assert os.listdir(path) == [runs.LOCK_FILE]
    assert not (tmp_path / "made").exists()
    (tmp_path / "kept").mkdir()
    refused = pytest.raises(UserError, match="refused")
    with refused, runs.hold(str(tmp_path / "kept")):
        raise UserError("--study_dir: refused")
    assert os.listdir(tmp_path / "kept") == []
    # A lock file that a killed run left is the holder's to remove.
    (tmp_path / "kept" / runs.LOCK_FILE).write_text("")
    with runs.hold(str(tmp_path / "kept")):
        pass
    assert os.listdir(tmp_path / "kept") == []


def _killed_run(run_dir, sigma=0.1):
    """What a noise run killed after its first output leaves: no flags.cfg."""
    config = _config(run_dir, sigma=sigma)
    killed = pytest.raises(KeyboardInterrupt)
    with killed, runs.claim(config, "noise") as held:
        held.begin()
        (pathlib.Path(run_dir) / "backup").mkdir()
        raise KeyboardInterrupt
    record = _record(run_dir)
    record["pid"] = 2**22 + 1  # a process that is gone
    outputs.write_json(str(pathlib.Path(run_dir) / runs.RUN_FILE), record)
    (pathlib.Path(run_dir) / runs.LOCK_FILE).write_text("")  # SIGKILL leaves it


def test_a_killed_run_is_resumed_with_its_recorded_values_not_a_flags_cfg(tmp_path):
    _killed_run(tmp_path, sigma=0.1)
    assert not (tmp_path / "flags.cfg").exists()
    with pytest.raises(UserError) as error:
        _finish(_config(tmp_path, sigma=0.2, target_psnr=25.0))
    message = str(error.value)
    assert "flags.cfg" not in message and "\n" not in message
    assert (
        "to resume it, rerun this command with --sigma=0.1 --target_psnr=20.0 "
        f"(its settings, recorded in {tmp_path / runs.RUN_FILE})"
    ) in message
    # The command it names resumes the run, and leaves no lock file.
    _finish(_config(tmp_path, sigma=0.1, target_psnr=20.0))
    assert _record(tmp_path)["state"] == "done"
    assert not (tmp_path / runs.LOCK_FILE).exists()


def test_a_finished_run_is_replayed_by_its_flags_cfg(tmp_path):
    _finish(_config(tmp_path, sigma=0.1), made=("metrics.json", "flags.cfg"))
    with pytest.raises(UserError) as error:
        _finish(_config(tmp_path, sigma=0.2))
    assert f"rerun with --flagfile={tmp_path / 'flags.cfg'} to re-evaluate it" in (
        str(error.value)
    )


def test_an_overwritten_killed_run_leaves_no_lock_file(tmp_path):
    _killed_run(tmp_path, sigma=0.1)
    _finish(_config(tmp_path, sigma=0.2, overwrite=True))
    assert _record(tmp_path)["settings"]["sigma"] == 0.2
    assert sorted(os.listdir(tmp_path)) == ["metrics.json", runs.RUN_FILE]


@pytest.mark.parametrize(
    "run_dir",
    ["/proc/cifar_denoise_adv_run", "/sys/cifar_denoise_adv_run", "/proc/self"],
)
def test_a_run_dir_that_cannot_be_written_is_one_line(run_dir):
    with pytest.raises(UserError, match=f"^--run_dir={run_dir}: cannot make or write"):
        outputs.make_run_dir(run_dir)


def test_a_run_dir_below_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="--run_dir=.*file/run: cannot make or write"):
        outputs.make_run_dir(str(tmp_path / "file" / "run"))


def test_a_second_process_is_refused_while_the_first_holds_the_folder(tmp_path):
    holder = textwrap.dedent(
        f"""
        import sys, time
        from cifar_denoise_adv.core import runs
        with runs.hold({str(tmp_path)!r}):
            print("held", flush=True)
            time.sleep(120)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the holding process did not start within 60 s"
        assert process.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match="in use by a running"):
            _finish(_config(tmp_path))
    finally:
        process.kill()
        process.wait(timeout=30)
    # The OS released the lock with the process: the folder is free again.
    _finish(_config(tmp_path))
    assert _record(tmp_path)["state"] == "done"


def test_a_changed_setting_the_run_ignores_is_logged_and_recorded(tmp_path):
    import time

    from cifar_denoise_adv.adversarial.classify_job import ClassifyConfig

    config = ClassifyConfig(run_dir=str(tmp_path), epochs=2, warmup_epochs=5)
    logged = []
    with runs.claim(config, "classify", logged.append) as held:
        held.begin()
        outputs.write_record(config, "classify", {"test_accuracy": 0.5}, time.time())
    line = (
        "--warmup_epochs=5 is ignored: --schedule=triangle has its own warm-up "
        "(only --schedule=cosine uses --warmup_epochs)"
    )
    assert logged == [f"note: {line}"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["ignored_settings"] == [line]
