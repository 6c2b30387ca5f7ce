"""Apps parse into a fresh flag registry; flag files nest relative to each other."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from absl import flags

from cifar_denoise_adv import denoise
from cifar_denoise_adv import noise
from cifar_denoise_adv.core import apps
from cifar_denoise_adv.core.errors import UserError

FLAG_DIR = pathlib.Path(__file__).resolve().parents[2] / "flags"


def test_parsing_defines_no_global_flag():
    noise.APP.parse(["noise", "--sigma=0.2"])
    assert "sigma" not in flags.FLAGS and "target_psnr" not in flags.FLAGS


def test_nested_flag_files_resolve_relative_to_the_including_file(
    tmp_path, monkeypatch
):
    (tmp_path / "sub").mkdir()
    (tmp_path / "top.cfg").write_text("# app: denoise.\n--flagfile=sub/mid.cfg\n")
    (tmp_path / "sub" / "mid.cfg").write_text(
        "--flagfile=base.cfg\n--epochs=4\n// a comment\n"
    )
    (tmp_path / "sub" / "base.cfg").write_text("--epochs=2\n--filters=8\n")
    monkeypatch.chdir(tmp_path / "sub")  # not the top file's folder
    config = denoise.APP.parse(["prog", f"--flagfile={tmp_path / 'top.cfg'}"])
    assert (config.epochs, config.filters) == (4, 8)  # the later line wins
    assert apps.expand_flagfiles([f"--flagfile={tmp_path / 'top.cfg'}", "--x"]) == [
        "--epochs=2",
        "--filters=8",
        "--epochs=4",
        "--x",
    ]


def test_a_flag_file_including_itself_is_refused(tmp_path):
    loop = tmp_path / "loop.cfg"
    loop.write_text("--flagfile=loop.cfg\n")
    with pytest.raises(UserError, match="includes itself"):
        noise.APP.parse(["prog", f"--flagfile={loop}"])


def test_parse_flagfile_puts_the_overrides_on_top(tmp_path):
    path = tmp_path / "run.cfg"
    path.write_text("--epochs=5\n--arch=plain\n")
    config = denoise.APP.parse_flagfile(str(path), {"epochs": 2, "run_dir": "r"})
    assert (config.epochs, config.arch, config.run_dir) == (2, "plain", "r")


def test_an_installed_flag_file_is_found_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert noise.APP.parse(["prog", "--flagfile=noise.cfg"]).target_psnr == 20.0


def test_every_flag_file_resolves_its_includes_from_any_folder(tmp_path, monkeypatch):
    # No installed copy to fall back on: each include must be found beside
    # the file that includes it, whatever the working folder.
    empty = tmp_path / "no_installed_flags"
    empty.mkdir()
    monkeypatch.setenv(apps.FLAG_DIR_ENV, str(empty))
    monkeypatch.chdir(tmp_path)
    for path in sorted(FLAG_DIR.glob("*.cfg")):
        apps.expand_flagfiles([f"--flagfile={path}"])


def test_an_include_beside_the_file_wins_over_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "base.cfg").write_text("--epochs=3\n")
    (tmp_path / "exp" / "top.cfg").write_text("--flagfile=base.cfg\n")
    (tmp_path / "base.cfg").write_text("--epochs=9\n")  # a namesake elsewhere
    monkeypatch.chdir(tmp_path)
    config = denoise.APP.parse(["prog", "--flagfile=exp/top.cfg"])
    assert config.epochs == 3


def test_the_checkouts_flag_files_by_name_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(apps.FLAG_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert os.path.samefile(apps.installed_flag_dir(), FLAG_DIR)
    for name in ("plain.cfg", "flags/plain.cfg"):
        config = denoise.APP.parse(["prog", f"--flagfile={name}"])
        assert (config.arch, config.num_blocks, config.downscale) == ("plain", 12, 2)


def test_an_apps_python_warning_is_one_line(tmp_path):
    # E.g. an attack given a model without gradient warns; the app prints
    # `warning: ...` alone, not the file, line number and source line.
    code = textwrap.dedent(
        """
        import sys
        import warnings

        from cifar_denoise_adv.core import apps
        from cifar_denoise_adv.denoising import noise_job

        def job(config, log):
            warnings.warn("the gradient is zero", UserWarning)
            log("done")

        sys.argv = ["noise"]
        apps.run_app(noise_job.NoiseConfig, job, "noise")
        """
    )
    root = pathlib.Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["done"]
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("warning:") or "Warning" in line or "warnings.warn" in line
    ]
    assert lines == ["warning: the gradient is zero"], result.stderr
