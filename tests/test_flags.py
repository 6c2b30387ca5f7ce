"""Every flag file parses against the flags of all apps (a typo fails CI)."""

import importlib
import pathlib
import pkgutil

import pytest
from absl import flags
from absl.testing import flagsaver

import cifar_denoise_adv

FLAG_DIR = pathlib.Path(__file__).resolve().parent.parent / "flags"

# Import every module so that every app's flags are defined, as in one
# process that runs them all (the study does that too).
for module in pkgutil.iter_modules(cifar_denoise_adv.__path__):
    importlib.import_module(f"cifar_denoise_adv.{module.name}")


def test_there_are_flag_files():
    assert sorted(FLAG_DIR.glob("*.cfg"))


@pytest.mark.parametrize("path", sorted(str(p) for p in FLAG_DIR.glob("*.cfg")))
@flagsaver.flagsaver
def test_flag_file_parses(path):
    # An unknown flag name or an out-of-range value raises here.
    flags.FLAGS(["prog", f"--flagfile={path}"])
    first_line = pathlib.Path(path).read_text().splitlines()[0]
    assert first_line.startswith("# app: "), "each flag file names its app first"


@flagsaver.flagsaver
def test_a_flag_after_the_flagfile_overrides_it():
    path = FLAG_DIR / "noise.cfg"
    flags.FLAGS(["prog", f"--flagfile={path}", "--sigma=0.05"])
    assert flags.FLAGS.sigma == 0.05


@flagsaver.flagsaver
def test_out_of_range_values_are_refused():
    with pytest.raises(flags.IllegalFlagValueError):
        flags.FLAGS(["prog", "--sigma=-1"])
