"""The `denoise` app: trains a ResNet (or plain) denoiser and evaluates it.

Usage:
  python -m cifar_denoise_adv.denoise --flagfile=flags/resnet_cpu.cfg \
      --data_dir=path/to/cifar-10-batches-py

Resumable: the same command run again continues from the last completed
epoch (or, when training is complete, only re-evaluates and re-exports).
Writes metrics.json, recovery_examples.png, psnr_histogram.png,
psnr_per_image.npz, model.keras, saved_model/ and tb/ into --run_dir.
"""

from absl import app
from absl import flags

from cifar_denoise_adv import common_flags
from cifar_denoise_adv import denoise_job
from cifar_denoise_adv import outputs

_ARCH = flags.DEFINE_enum(
    "arch", "resnet", ["resnet", "plain"], "ResNet, or the same net without skips."
)
_NUM_BLOCKS = flags.DEFINE_integer("num_blocks", 8, "Residual blocks.", lower_bound=0)
_FILTERS = flags.DEFINE_integer("filters", 64, "Channels in the blocks.", lower_bound=1)
_DOWNSCALE = flags.DEFINE_integer(
    "downscale",
    1,
    "Pixel-unshuffle factor: the blocks run at 1/downscale resolution.",
    lower_bound=1,
)
_CLIPNORM = flags.DEFINE_float(
    "clipnorm", 1.0, "Global gradient-norm clipping in Adam (0: none).", lower_bound=0
)
_INIT_FROM = flags.DEFINE_string(
    "init_from",
    "",
    "Run folder of a finished denoise run (same architecture) whose weights "
    "start this run, with a new schedule: how the longer recipe chains runs.",
)
_SHARED_FLAGS = common_flags.TRAINING_FLAGS + ("sigma",)


def config_from_flags() -> denoise_job.DenoiseConfig:
    """The denoise job's config from the parsed flags (the study uses it too)."""
    return denoise_job.DenoiseConfig(
        arch=_ARCH.value,
        num_blocks=_NUM_BLOCKS.value,
        filters=_FILTERS.value,
        downscale=_DOWNSCALE.value,
        sigma=common_flags.SIGMA.value,
        epochs=common_flags.EPOCHS.value,
        batch_size=common_flags.BATCH_SIZE.value,
        learning_rate=common_flags.LEARNING_RATE.value,
        warmup_epochs=common_flags.WARMUP_EPOCHS.value,
        clipnorm=_CLIPNORM.value,
        init_from=_INIT_FROM.value,
        augment=common_flags.AUGMENT.value,
        seed=common_flags.SEED.value,
        strategy=common_flags.STRATEGY.value,
        max_train_images=common_flags.MAX_TRAIN_IMAGES.value,
        max_test_images=common_flags.MAX_TEST_IMAGES.value,
        num_examples=common_flags.NUM_EXAMPLES.value,
        jit_compile=common_flags.JIT_COMPILE.value,
    )


def run_from_flags(log=print) -> dict:
    """Writes flags.cfg and runs (or resumes) the denoise job; returns its metrics."""
    config = config_from_flags()
    run_dir = outputs.make_run_dir(common_flags.RUN_DIR.value)
    outputs.write_flags(f"{run_dir}/flags.cfg", flags.FLAGS, __name__, _SHARED_FLAGS)
    return denoise_job.run(
        config, run_dir=run_dir, data_dir=common_flags.data_dir_or_none(), log=log
    )


def main(argv: list[str]) -> None:
    """Reads the flags once and runs the denoise job."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    run_from_flags()


if __name__ == "__main__":
    flags.mark_flags_as_required(["run_dir"])
    app.run(common_flags.exit_on_user_error(main))
