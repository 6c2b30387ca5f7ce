"""Flags shared by more than one app, defined once.

absl keeps one global flag registry and refuses a name defined twice, and the
test run imports every app into one process, so a flag that two apps use
lives here. All are optional at import time; each app marks what it needs
under `if __name__ == "__main__"`.
"""

import functools
import os
import sys

from absl import flags

from cifar_denoise_adv import data
from cifar_denoise_adv import outputs

DATA_DIR = flags.DEFINE_string(
    "data_dir",
    os.environ.get(data.ENV_DATA_DIR, ""),
    "Local copy of CIFAR-10: the folder cifar-10-batches-py/ or "
    "cifar-10-batches-bin/, a folder holding one, or an official .tar.gz "
    f"archive. Default: ${data.ENV_DATA_DIR} if set; empty means TFDS cifar10.",
)
RUN_DIR = flags.DEFINE_string(
    "run_dir", None, "Folder for this run's outputs (created if missing)."
)
SEED = flags.DEFINE_integer(
    "seed", 0, "Seed for shuffling, initialisation and noise.", lower_bound=0
)
EPOCHS = flags.DEFINE_integer("epochs", 10, "Training epochs.", lower_bound=1)
BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 64, "Images per training batch.", lower_bound=1
)
STRATEGY = flags.DEFINE_enum(
    "strategy",
    "default",
    ["default", "mirrored", "multi_worker"],
    "tf.distribute strategy: default (one device), mirrored (all local "
    "GPUs, or CPUs), multi_worker (hosts described by TF_CONFIG).",
)

# Names of the shared flags, for an app's record of its run (flags.cfg).
DATA_FLAGS = ("data_dir", "run_dir", "seed")
TRAINING_FLAGS = DATA_FLAGS + ("epochs", "batch_size", "strategy")


def data_dir_or_none() -> str | None:
    """The local data folder, or None for TFDS."""
    return DATA_DIR.value or None


def exit_on_user_error(main):
    """Wraps an app's main: a user's mistake ends in one line, not a traceback.

    Library code raises `data.DataError` or `outputs.UserError` with a message
    that names the flag or file and what was expected; the app prints it and
    exits with status 2. Other exceptions keep their traceback (they are bugs).
    """

    @functools.wraps(main)
    def wrapped(argv):
        try:
            return main(argv)
        except (data.DataError, outputs.UserError) as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapped
