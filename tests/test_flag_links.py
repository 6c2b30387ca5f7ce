"""Flag files that chain read where the others write; none pins a precision.

A flag file reads another run's output through a path setting (--classifier,
--denoiser, --init_from); following the README in order, that folder must
be the --run_dir of a shipped flag file of the app that makes it.
"""

import dataclasses
import pathlib

import pytest

from cifar_denoise_adv.core import apps
from tests.test_flags import APPS
from tests.test_flags import FLAG_FILES
from tests.test_flags import _app_of

# Each path setting that reads another run, and the app whose run it reads.
READS = {"classifier": "classify", "denoiser": "denoise", "init_from": "denoise"}
# Path settings that are not another run's output.
NOT_RUNS = {"run_dir", "data_dir", "study_dir"}


def _config(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nested --flagfile= lines resolve from anywhere
    app = _app_of(path)
    return app, app.parse(["prog", f"--flagfile={path}"])


def _written(tmp_path, monkeypatch) -> dict[str, set[str]]:
    """{run_dir as written in the file: {apps of the flag files writing it}}."""
    written = {}
    for path in FLAG_FILES:
        app, config = _config(path, tmp_path, monkeypatch)
        if app.name != "study" and getattr(config, "run_dir", ""):
            written.setdefault(config.run_dir, set()).add(app.name)
    return written


def _reads(config) -> dict[str, str]:
    """{setting: value} of the config's path settings that read another run."""
    found = {}
    for field in dataclasses.fields(config):
        if field.metadata.get("path") and field.name not in NOT_RUNS:
            assert field.name in READS, (
                f"--{field.name} is a path setting: add it to READS (the app "
                "whose run it reads) or NOT_RUNS"
            )
            if getattr(config, field.name):
                found[field.name] = getattr(config, field.name)
    return found


@pytest.mark.parametrize("path", FLAG_FILES, ids=lambda p: pathlib.Path(p).name)
def test_every_flag_file_reads_where_another_writes(path, tmp_path, monkeypatch):
    written = _written(tmp_path, monkeypatch)
    app, config = _config(path, tmp_path, monkeypatch)
    for name, value in _reads(config).items():
        assert value in written, (
            f"{pathlib.Path(path).name}: --{name}={value}, but no flag file writes "
            f"there (they write {sorted(written)})"
        )
        assert READS[name] in written[value], (
            f"{pathlib.Path(path).name}: --{name}={value} is written by "
            f"{sorted(written[value])}, not by the {READS[name]} app"
        )


def test_the_links_are_the_ones_the_readme_follows(tmp_path, monkeypatch):
    """The walk finds the chains: the attacks and the defense on the CPU
    classifier recipe's folder, the longer denoiser recipe on resnet.cfg's."""
    by_name = {}
    for path in FLAG_FILES:
        _, config = _config(path, tmp_path, monkeypatch)
        by_name[pathlib.Path(path).name] = config
    writes = by_name["classifier_cpu.cfg"].run_dir
    assert writes == by_name["classifier.cfg"].run_dir
    for reader in ("fgsm.cfg", "iterative.cfg", "universal.cfg", "defend.cfg"):
        assert by_name[reader].classifier == writes
    for reader in ("universal_deepfool.cfg", "universal_sweep.cfg"):
        assert by_name[reader].classifier == writes
    assert by_name["defend.cfg"].denoiser == by_name["resnet.cfg"].run_dir
    assert by_name["resnet_long.cfg"].init_from == by_name["resnet.cfg"].run_dir


@pytest.mark.parametrize("path", FLAG_FILES, ids=lambda p: pathlib.Path(p).name)
def test_no_flag_file_pins_a_precision(path):
    """The machine chooses (--precision=auto); a recipe states no hardware."""
    lines = apps.expand_flagfiles([f"--flagfile={path}"])
    assert not [line for line in lines if line.startswith("--precision")]


def test_every_app_that_trains_attacks_or_defends_defaults_to_auto():
    for name in ("denoise", "classify", "targeted", "universal", "defend", "study"):
        config = APPS[name].parse(["prog"])
        assert config.precision == "auto", name
