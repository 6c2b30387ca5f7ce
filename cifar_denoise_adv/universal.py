"""The `universal` app: a universal adversarial perturbation for a classifier.

Usage:
  python -m cifar_denoise_adv.universal --flagfile=flags/universal.cfg \
      --classifier=runs/classifier --data_dir=path/to/cifar-10-batches-py
  python -m cifar_denoise_adv.universal --flagfile=flags/universal.cfg \
      --sweep_xi=2/255,4/255,6/255,8/255,10/255,12/255,16/255 ...

--method=deepfool is the reference algorithm (Moosavi-Dezfooli et al. 2017,
DeepFool inside, projection on the lp ball); --method=sgd the batched
signed-gradient method (Shafahi et al. 2020). Writes v.npy,
perturbation.png (scale stated), fooled_flows.png, examples.png and
metrics.json (fooling rates on the training images used and on the test set,
and for random noise of the same norm). --sweep_xi runs both methods at each
xi and plots fooling rate against xi (sweep.png, sweep.json).
"""

from absl import app
from absl import flags

from cifar_denoise_adv import common_flags
from cifar_denoise_adv import outputs
from cifar_denoise_adv import universal_job

_METHOD = flags.DEFINE_enum(
    "method", "sgd", list(universal_job.METHODS), "deepfool (reference) or sgd."
)
_NORM = flags.DEFINE_enum("norm", "linf", list(universal_job.NORMS), "lp ball.")
_XI = flags.DEFINE_string(
    "xi", "10/255", "Radius of the lp ball in [0, 1] pixel units; a/b allowed."
)
_DELTA = flags.DEFINE_float(
    "delta", 0.2, "deepfool: stop at fooling rate 1 - delta.", lower_bound=0.0
)
_MAX_PASSES = flags.DEFINE_integer(
    "max_passes", 5, "deepfool: passes over the images.", lower_bound=1
)
_OVERSHOOT = flags.DEFINE_float("overshoot", 0.02, "deepfool overshoot.", lower_bound=0)
_MAX_ITER_DEEPFOOL = flags.DEFINE_integer(
    "max_iter_deepfool", 10, "deepfool: iterations per image.", lower_bound=1
)
_SGD_STEP_SIZE = flags.DEFINE_float(
    "sgd_step_size", 0.002, "sgd: signed step on v (pixel units).", lower_bound=0
)
_SGD_EPOCHS = flags.DEFINE_integer("sgd_epochs", 10, "sgd: epochs.", lower_bound=1)
_SGD_FINAL_STEP_SIZE = flags.DEFINE_float(
    "sgd_final_step_size",
    None,
    "sgd: if set, the step decays on a half cosine from --sgd_step_size to this "
    "over all steps; unset: constant steps.",
    lower_bound=0,
)
_SWEEP_XI = flags.DEFINE_list(
    "sweep_xi", [], "If given: run both methods at each of these xi and plot."
)
_SHARED_FLAGS = (
    "classifier",
    "data_dir",
    "run_dir",
    "seed",
    "batch_size",
    "max_train_images",
    "max_test_images",
    "num_examples",
)


def parse_fraction(text: str, name: str) -> float:
    """'10/255' or '0.04' as a float; a clear error naming the flag otherwise."""
    try:
        numerator, _, denominator = text.partition("/")
        value = float(numerator) / (float(denominator) if denominator else 1.0)
    except (ValueError, ZeroDivisionError):
        raise outputs.UserError(
            f"--{name}={text}: expected a number or a fraction such as 10/255."
        ) from None
    if not value > 0.0:
        raise outputs.UserError(f"--{name}={text}: expected a value > 0.")
    return value


def config_from_flags() -> universal_job.UniversalConfig:
    """The universal job's config from the parsed flags (the study uses it too)."""
    return universal_job.UniversalConfig(
        method=_METHOD.value,
        norm=_NORM.value,
        xi=parse_fraction(_XI.value, "xi"),
        delta=_DELTA.value,
        max_passes=_MAX_PASSES.value,
        overshoot=_OVERSHOOT.value,
        max_iter_deepfool=_MAX_ITER_DEEPFOOL.value,
        sgd_step_size=_SGD_STEP_SIZE.value,
        sgd_epochs=_SGD_EPOCHS.value,
        sgd_final_step_size=_SGD_FINAL_STEP_SIZE.value,
        train_images=common_flags.MAX_TRAIN_IMAGES.value,
        test_images=common_flags.MAX_TEST_IMAGES.value,
        batch_size=common_flags.BATCH_SIZE.value,
        seed=common_flags.SEED.value,
        num_examples=common_flags.NUM_EXAMPLES.value,
    )


def sweep_xi_from_flags() -> list[float]:
    """The --sweep_xi budgets as numbers (empty: no sweep)."""
    return [parse_fraction(x, "sweep_xi") for x in _SWEEP_XI.value]


def run_from_flags(log=print) -> dict:
    """Writes flags.cfg and runs the universal job, or its sweep; returns results."""
    config = config_from_flags()
    run_dir = outputs.make_run_dir(common_flags.RUN_DIR.value)
    outputs.write_flags(f"{run_dir}/flags.cfg", flags.FLAGS, __name__, _SHARED_FLAGS)
    kwargs = dict(
        classifier_dir=common_flags.CLASSIFIER.value,
        run_dir=run_dir,
        data_dir=common_flags.data_dir_or_none(),
        log=log,
    )
    if _SWEEP_XI.value:
        return universal_job.sweep(config, sweep_xi_from_flags(), **kwargs)
    return universal_job.run(config, **kwargs)


def main(argv: list[str]) -> None:
    """Reads the flags once and runs the universal job (or its sweep)."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    run_from_flags()


if __name__ == "__main__":
    flags.mark_flags_as_required(["classifier", "run_dir"])
    app.run(common_flags.exit_on_user_error(main))
