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
from cifar_denoise_adv.core import flag_help
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


def test_a_misspelt_flag_gets_the_app_flag_it_is_closest_to():
    from cifar_denoise_adv import classify

    with pytest.raises(UserError) as error:
        classify.APP.parse(["prog", "--epoch=1"])
    assert str(error.value) == (
        "--epoch: not a flag of the classify app; did you mean --epochs? (see --help)."
    )
    with pytest.raises(UserError, match="did you mean --augment"):
        denoise.APP.parse(["prog", "--noaugmnt"])


def test_tensorflows_and_absltests_flags_are_refused_naming_their_module():
    from absl.testing import absltest  # noqa: F401 - defines --test_tmpdir
    from tensorflow.python.tpu.client import client  # noqa: F401 - --hbm_oom_exit

    own = ["sigma", "run_dir"]
    with pytest.raises(UserError) as error:
        flag_help.refuse_foreign_flags(
            ["--sigma=0.1", "--test_tmpdir=/x"], own, "noise"
        )
    assert str(error.value) == (
        "--test_tmpdir: not a flag of the noise app but one of "
        "absl.testing.absltest, which the apps do not use (see --help)."
    )
    with pytest.raises(UserError, match="^--nohbm_oom_exit: .*tpu"):
        flag_help.refuse_foreign_flags(["--nohbm_oom_exit"], own, "noise")
    # The app's own flags, a value given as the next argument, and absl.app's
    # debugging flags pass.
    flag_help.refuse_foreign_flags(
        ["--sigma", "-1", "--run_dir=x", "--run_with_pdb", "--", "--x"], own, "noise"
    )


def test_a_flag_file_of_another_app_is_named_with_its_app(tmp_path):
    resnet = FLAG_DIR / "resnet.cfg"
    with pytest.raises(UserError) as error:
        noise.APP.parse(["prog", f"--flagfile={resnet}"])
    assert str(error.value) == (
        f"--flagfile={resnet}: a flag file of the denoise app (its first line "
        "says so), not of the noise app; run it with python -m "
        "cifar_denoise_adv.denoise."
    )
    # Also when another app's file is included by one of the right app.
    (tmp_path / "mine.cfg").write_text(f"# app: noise.\n--flagfile={resnet}\n")
    with pytest.raises(UserError, match="a flag file of the denoise app"):
        noise.APP.parse(["prog", f"--flagfile={tmp_path / 'mine.cfg'}"])


def test_help_is_grouped_with_budgets_in_255ths_and_no_foreign_flags():
    from cifar_denoise_adv import classify
    from cifar_denoise_adv import defend

    text = apps.help_text(defend.APP.config, defend.__doc__)
    assert text.startswith("The `defend` app: ")
    assert "  --epsilons (default: 2/255,4/255,8/255,16/255,32/255)\n" in text
    assert "  --universal_xi (default: 10/255)\n" in text
    assert "  --targeted_epsilon (default: 0.02)\n" in text
    assert "  --[no]randomised (default: true)\n" in text
    assert "\nSettings of every job: where it writes, what data it reads" in text
    assert ".py:" not in text and "test_tmpdir" not in text
    assert "run_with_pdb" not in text
    assert "--run_with_pdb" in apps.help_text(defend.APP.config, "", full=True)
    # The classifier's help describes the recipe it trains.
    recipe = apps.help_text(classify.APP.config, classify.__doc__)
    for words in ("whitened 2x2", "triangle", "lookahead", "label smoothing"):
        assert words in recipe
    assert "CutMix" in recipe and "4-px" not in recipe and "reflect crop" not in recipe


def test_the_sweep_reads_the_universal_apps_flag_files():
    # The sweep runs the universal job at each budget: universal.cfg (which
    # universal_sweep.cfg includes) is its flag file too; other apps' are not.
    from cifar_denoise_adv import sweep

    config = sweep.APP.parse(["prog", f"--flagfile={FLAG_DIR / 'universal.cfg'}"])
    assert config.method == "sgd"
    with pytest.raises(UserError, match="a flag file of the denoise app"):
        sweep.APP.parse(["prog", f"--flagfile={FLAG_DIR / 'resnet.cfg'}"])


def test_a_flag_that_moved_to_another_app_names_that_app():
    from cifar_denoise_adv import universal

    with pytest.raises(UserError) as error:
        universal.APP.parse(["prog", "--sweep_xi=2/255,4/255"])
    assert str(error.value) == (
        "--sweep_xi: not a flag of the universal app; it is one of the sweep app: "
        "python -m cifar_denoise_adv.sweep (see --help)."
    )
