"""The `targeted` app: targeted adversarial examples against a classifier.

Usage:
  python -m cifar_denoise_adv.targeted --flagfile=flags/fgsm.cfg \
      --classifier=runs/classifier --data_dir=path/to/cifar-10-batches-py
  python -m cifar_denoise_adv.targeted --flagfile=flags/iterative.cfg ...

--attack chooses targeted FGSM (one step) or the iterative version.

Chooses test images (--indices, or --num_images random correctly classified
ones) and targets (--target_mode=random | least_likely | given with
--targets), perturbs them with targeted FGSM or its iterative version, and
writes example_<i>.png (original, perturbed, perturbation scaled, top-3
outputs before and after), TensorBoard image grids and metrics.json
(success rate, misclassification rate, L-inf/L2 norms, PSNR).
"""

from absl import app
from absl import flags

from cifar_denoise_adv import common_flags
from cifar_denoise_adv import outputs
from cifar_denoise_adv import targeted_job

_ATTACK = flags.DEFINE_enum(
    "attack", "fgsm", list(targeted_job.METHODS), "Targeted FGSM or iterative."
)
_EPSILON = flags.DEFINE_float(
    "epsilon", 0.02, "L-inf budget, [0, 1] pixel units.", lower_bound=0.0
)
_STEP_SIZE = flags.DEFINE_float(
    "step_size", 0.005, "Iterative: step size (pixel units).", lower_bound=0.0
)
_NUM_STEPS = flags.DEFINE_integer("num_steps", 10, "Iterative: steps.", lower_bound=1)
_RANDOM_START = flags.DEFINE_bool(
    "random_start", False, "Iterative: start at a random point of the ball."
)
_INDICES = flags.DEFINE_list(
    "indices", [], "Test image indices to attack (default: random correct ones)."
)
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images", 400, "Random correctly classified test images.", lower_bound=1
)
_TARGET_MODE = flags.DEFINE_enum(
    "target_mode", "random", list(targeted_job.TARGET_MODES), "How targets are chosen."
)
_TARGETS = flags.DEFINE_list(
    "targets", [], "With --target_mode=given: one class id, or one per image."
)
_SHARED_FLAGS = ("classifier", "data_dir", "run_dir", "seed", "batch_size")


def _ints(values: list[str], name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise outputs.UserError(
            f"--{name}={','.join(values)}: expected integers."
        ) from None


def config_from_flags() -> targeted_job.TargetedConfig:
    """The targeted job's config from the parsed flags (the study uses it too)."""
    return targeted_job.TargetedConfig(
        method=_ATTACK.value,
        epsilon=_EPSILON.value,
        step_size=_STEP_SIZE.value,
        num_steps=_NUM_STEPS.value,
        random_start=_RANDOM_START.value,
        indices=_ints(_INDICES.value, "indices"),
        num_images=_NUM_IMAGES.value,
        target_mode=_TARGET_MODE.value,
        targets=_ints(_TARGETS.value, "targets"),
        seed=common_flags.SEED.value,
        num_figures=common_flags.NUM_EXAMPLES.value,
        batch_size=common_flags.BATCH_SIZE.value,
    )


def run_from_flags(log=print) -> dict:
    """Writes flags.cfg and runs the targeted job; returns its metrics."""
    config = config_from_flags()
    run_dir = outputs.make_run_dir(common_flags.RUN_DIR.value)
    outputs.write_flags(
        f"{run_dir}/flags.cfg",
        flags.FLAGS,
        __name__,
        _SHARED_FLAGS + ("num_examples",),
    )
    return targeted_job.run(
        config,
        classifier_dir=common_flags.CLASSIFIER.value,
        run_dir=run_dir,
        data_dir=common_flags.data_dir_or_none(),
        log=log,
    )


def main(argv: list[str]) -> None:
    """Reads the flags once and runs the targeted job."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    run_from_flags()


if __name__ == "__main__":
    flags.mark_flags_as_required(["classifier", "run_dir"])
    app.run(common_flags.exit_on_user_error(main))
