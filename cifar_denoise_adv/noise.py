"""The `noise` app: which sigma gives a target PSNR, and the noisy CIFAR-10 sets.

Usage:
  python -m cifar_denoise_adv.noise --flagfile=flags/noise.cfg \
      --data_dir=path/to/cifar-10-batches-py

Prints and writes run_dir/metrics.json (analytic and clipped-calibrated
sigma; PSNR(x, y) mean and std on train and test at --sigma, with and
without clipping), run_dir/noise_examples.png, TensorBoard logs, and with
--export the noisy train and test sets as .npz files.
"""

from absl import app
from absl import flags
from absl import logging

from cifar_denoise_adv import common_flags
from cifar_denoise_adv import noise_job
from cifar_denoise_adv import outputs

_TARGET_PSNR = flags.DEFINE_float(
    "target_psnr", 20.0, "Mean PSNR(x, y) wanted, in dB.", lower_bound=0.0
)
_CALIBRATION_SPLIT = flags.DEFINE_enum(
    "calibration_split", "test", ["train", "test"], "Split the clipped sigma is fit on."
)
_EXPORT = flags.DEFINE_bool(
    "export", False, "Write the noisy train and test sets as .npz (with sigma, seed)."
)
_SHARED_FLAGS = common_flags.DATA_FLAGS + ("sigma", "num_examples")


def config_from_flags() -> dict:
    """The noise job's settings from the parsed flags (the study uses it too)."""
    return dict(
        target_psnr=_TARGET_PSNR.value,
        sigma=common_flags.SIGMA.value,
        seed=common_flags.SEED.value,
        calibration_split=_CALIBRATION_SPLIT.value,
        max_images={
            "train": common_flags.MAX_TRAIN_IMAGES.value,
            "test": common_flags.MAX_TEST_IMAGES.value,
        },
        num_examples=common_flags.NUM_EXAMPLES.value,
        export=_EXPORT.value,
    )


def run_from_flags(log=print) -> dict:
    """Writes flags.cfg and runs the noise job; returns its metrics."""
    run_dir = outputs.make_run_dir(common_flags.RUN_DIR.value)
    outputs.write_flags(f"{run_dir}/flags.cfg", flags.FLAGS, __name__, _SHARED_FLAGS)
    return noise_job.run(
        run_dir=run_dir,
        data_dir=common_flags.data_dir_or_none(),
        log=log,
        **config_from_flags(),
    )


def main(argv: list[str]) -> None:
    """Reads the flags once and runs the noise job."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    metrics = run_from_flags()
    logging.info("noise job done in %.1f s", metrics["seconds"])
    print(f"wrote {common_flags.RUN_DIR.value}/metrics.json and noise_examples.png")


if __name__ == "__main__":
    flags.mark_flags_as_required(["run_dir"])
    app.run(common_flags.exit_on_user_error(main))
