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
CLASSIFIER = flags.DEFINE_string(
    "classifier",
    None,
    "Run folder of the classify app (or its model.keras): the model to attack.",
)
SIGMA = flags.DEFINE_float(
    "sigma",
    0.1,
    "Noise std in [0, 1] pixel units: y = clip(x + N(0, sigma^2), 0, 1).",
    lower_bound=0.0,
    upper_bound=1.0,
)
LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", 1e-3, "Peak learning rate of the schedule.", lower_bound=0.0
)
WARMUP_EPOCHS = flags.DEFINE_float(
    "warmup_epochs",
    0.5,
    "Linear learning-rate warm-up (epochs) before the cosine decay.",
    lower_bound=0.0,
)
AUGMENT = flags.DEFINE_bool(
    "augment", True, "Random flips/rotations (denoiser) or crops/flips (classifier)."
)
MAX_TRAIN_IMAGES = flags.DEFINE_integer(
    "max_train_images",
    0,
    "Use at most this many training images (0: all).",
    lower_bound=0,
)
MAX_TEST_IMAGES = flags.DEFINE_integer(
    "max_test_images", 0, "Use at most this many test images (0: all).", lower_bound=0
)
NUM_EXAMPLES = flags.DEFINE_integer(
    "num_examples", 6, "Rows of the example figures.", lower_bound=4
)
JIT_COMPILE = flags.DEFINE_bool(
    "jit_compile", False, "Compile the training step with XLA."
)
STRATEGY = flags.DEFINE_enum(
    "strategy",
    "default",
    ["default", "mirrored", "multi_worker"],
    "tf.distribute strategy: default (one device), mirrored (all local "
    "GPUs, or CPUs), multi_worker (hosts described by TF_CONFIG).",
)

# Names of the shared flags, for an app's record of its run (flags.cfg).
DATA_FLAGS = ("data_dir", "run_dir", "seed", "max_train_images", "max_test_images")
TRAINING_FLAGS = DATA_FLAGS + (
    "epochs",
    "batch_size",
    "learning_rate",
    "warmup_epochs",
    "augment",
    "jit_compile",
    "strategy",
    "num_examples",
)


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
