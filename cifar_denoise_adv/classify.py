"""The `classify` app: trains a CIFAR-10 classifier (logits output).

Usage:
  python -m cifar_denoise_adv.classify --flagfile=flags/classifier.cfg \
      --data_dir=path/to/cifar-10-batches-py

Augmentation (random crop with 4-px reflect padding, horizontal flip), SGD
with Nesterov momentum, weight decay and a warm-up + cosine schedule.
Resumable like the denoiser: the same command continues an interrupted run.
Writes metrics.json (test and per-class accuracy), confusion_matrix.png,
predictions.npz, model.keras, saved_model/ and tb/ into --run_dir.
"""

from absl import app
from absl import flags

from cifar_denoise_adv import classify_job
from cifar_denoise_adv import common_flags
from cifar_denoise_adv import outputs

_WIDTH = flags.DEFINE_integer(
    "width", 32, "Channels of the first conv (stages use 2x, 4x, 8x).", lower_bound=1
)
_DROPOUT = flags.DEFINE_float(
    "dropout", 0.0, "Dropout before the dense layer.", lower_bound=0.0, upper_bound=0.9
)
_MOMENTUM = flags.DEFINE_float(
    "momentum", 0.9, "SGD Nesterov momentum.", lower_bound=0.0, upper_bound=1.0
)
_LABEL_SMOOTHING = flags.DEFINE_float(
    "label_smoothing", 0.0, "Label smoothing.", lower_bound=0.0, upper_bound=0.5
)
_CUTOUT = flags.DEFINE_integer(
    "cutout",
    0,
    "Side of the cutout square in training images (0: none).",
    lower_bound=0,
)
_WEIGHT_DECAY = flags.DEFINE_float(
    "weight_decay", 5e-4, "Decoupled weight decay.", lower_bound=0.0
)


def config_from_flags() -> classify_job.ClassifyConfig:
    """The classify job's config from the parsed flags (the study uses it too)."""
    return classify_job.ClassifyConfig(
        width=_WIDTH.value,
        dropout=_DROPOUT.value,
        epochs=common_flags.EPOCHS.value,
        batch_size=common_flags.BATCH_SIZE.value,
        learning_rate=common_flags.LEARNING_RATE.value,
        momentum=_MOMENTUM.value,
        weight_decay=_WEIGHT_DECAY.value,
        warmup_epochs=common_flags.WARMUP_EPOCHS.value,
        label_smoothing=_LABEL_SMOOTHING.value,
        augment=common_flags.AUGMENT.value,
        cutout=_CUTOUT.value,
        seed=common_flags.SEED.value,
        strategy=common_flags.STRATEGY.value,
        max_train_images=common_flags.MAX_TRAIN_IMAGES.value,
        max_test_images=common_flags.MAX_TEST_IMAGES.value,
        jit_compile=common_flags.JIT_COMPILE.value,
    )


def run_from_flags(log=print) -> dict:
    """Writes flags.cfg and runs (or resumes) the classify job; returns metrics."""
    config = config_from_flags()
    run_dir = outputs.make_run_dir(common_flags.RUN_DIR.value)
    outputs.write_flags(
        f"{run_dir}/flags.cfg", flags.FLAGS, __name__, common_flags.TRAINING_FLAGS
    )
    return classify_job.run(
        config, run_dir=run_dir, data_dir=common_flags.data_dir_or_none(), log=log
    )


def main(argv: list[str]) -> None:
    """Reads the flags once and runs the classify job."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    run_from_flags()


if __name__ == "__main__":
    flags.mark_flags_as_required(["run_dir"])
    app.run(common_flags.exit_on_user_error(main))
