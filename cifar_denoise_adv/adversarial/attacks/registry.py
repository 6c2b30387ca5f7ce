"""The one list of attacks: what every app, the defense table and the report read.

Each `Attack` says what an attack is (name, labels, norm, targeted or
not, what it produces) and how a job calls it (`call`, with the job's
numbers in one `Params`). The targeted app offers the targeted per-image
attacks as `--attack`, the universal app the universal ones as `--method`,
the defend job makes a row of its table for every attack it is asked for
(`--attacks`, default: those marked `in_defense_table`), and the report
takes the attacks' labels from here. A new attack is its file in this
package, one entry in `ATTACKS` and its tests.

The order of `ATTACKS` is the order in which the defend job computes its
rows (see `defense.table.evaluate`). New entries go at the end: the
randomised pipeline draws its noise from one seeded stream, so computing a
new row before an old one would change the old one's noise draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.adversarial.attacks.apgd import apgd

# The functions, not their modules: the package's names `fgsm` and
# `universal` are taken by functions.
from cifar_denoise_adv.adversarial.attacks.fgsm import fgsm
from cifar_denoise_adv.adversarial.attacks.fgsm import pgd
from cifar_denoise_adv.adversarial.attacks.fgsm import targeted_fgsm
from cifar_denoise_adv.adversarial.attacks.fgsm import targeted_iterative
from cifar_denoise_adv.adversarial.attacks.square import square_attack
from cifar_denoise_adv.adversarial.attacks.universal import sgd_universal_perturbation
from cifar_denoise_adv.adversarial.attacks.universal import universal_perturbation
from cifar_denoise_adv.core.errors import UserError

# What an attack produces, and so how a job runs it.
PER_IMAGE = "per-image"  # call(model_fn, images, labels, epsilon, params) -> images
UNIVERSAL = "universal"  # call(model_fn, images, None, xi, params) -> UniversalResult
GRADIENT_FREE = "gradient-free"  # per-image, from the model's outputs only

# Which of the defend job's budgets an attack is run at (`defense.table`).
EPSILONS = "epsilons"  # every --epsilons, PGD's steps
REFERENCE = "reference"  # --reference_epsilon only, PGD's steps
TARGETED = "targeted"  # --targeted_epsilon, the targeted steps
UNIVERSAL_XI = "universal"  # --universal_xi, the universal settings


@dataclasses.dataclass(frozen=True)
class Params:
    """A job's numbers for one attack call (each attack reads what it needs).

    Attributes:
      step_size: signed step in [0, 1] pixel units (FGSM iterations, PGD).
      num_steps: iterations; gradients per image for PGD and APGD.
      random_start: targeted iterative: start at a random point of the ball
        (PGD always does, APGD always does).
      seed: seed of the random start or search.
      num_draws: gradients averaged per step (EOT, for a random model).
      num_queries: queries per image of a gradient-free attack.
      p: norm order of a universal perturbation (2 or np.inf).
      batch_size, num_epochs, final_step_size: the sgd universal method.
      delta, max_passes, overshoot, max_iter_deepfool, keep_best_pass: the
        DeepFool universal method.
      progress: optional callback of the long universal loops.
    """

    step_size: float = 0.0
    num_steps: int = 1
    random_start: bool = False
    seed: int = 0
    num_draws: int = 1
    num_queries: int = 1
    p: float = np.inf
    batch_size: int = 32
    num_epochs: int = 1
    final_step_size: float | None = None
    delta: float = 0.2
    max_passes: int = 10
    overshoot: float = 0.02
    max_iter_deepfool: int = 10
    keep_best_pass: bool = False
    progress: Callable[[dict], None] | None = None


@dataclasses.dataclass(frozen=True)
class Attack:
    """One attack as every consumer sees it.

    Attributes:
      name: the key everywhere (defense rows, `--attacks`, metrics.json).
      label: short label of the report's tables ("PGD").
      description: the longer name of log lines and metrics.json
        ("untargeted PGD").
      norm: "linf" or "l2" (or "lp": the universal methods take --norm).
      targeted: whether `labels` are target classes to reach (else the true
        classes to move away from).
      kind: PER_IMAGE, UNIVERSAL or GRADIENT_FREE.
      budget: which of the defend job's budgets it runs at (EPSILONS, ...).
      call: `call(model_fn, images, labels, epsilon, params)`; see `kind`.
      algorithm: one sentence for metrics.json: what it computes.
      option: its value of the targeted app's --attack or the universal
        app's --method ("" if those apps do not offer it).
      in_defense_table: a row of the defend table unless --attacks says not.
      reads: the `Params` fields it reads beyond epsilon and num_draws (an
        app records these settings in metrics.json).
    """

    name: str
    label: str
    description: str
    norm: str
    targeted: bool
    kind: str
    budget: str
    call: Callable
    algorithm: str
    option: str = ""
    in_defense_table: bool = True
    reads: tuple[str, ...] = ()

    @property
    def uses_gradients(self) -> bool:
        return self.kind != GRADIENT_FREE


def _fgsm(model_fn, images, labels, epsilon, params):
    return fgsm(model_fn, images, labels, epsilon, num_draws=params.num_draws)


def _pgd(model_fn, images, labels, epsilon, params):
    return pgd(
        model_fn,
        images,
        labels,
        epsilon,
        params.step_size,
        params.num_steps,
        seed=params.seed,
        num_draws=params.num_draws,
    )


def _targeted_fgsm(model_fn, images, targets, epsilon, params):
    return targeted_fgsm(model_fn, images, targets, epsilon, num_draws=params.num_draws)


def _targeted_iterative(model_fn, images, targets, epsilon, params):
    return targeted_iterative(
        model_fn,
        images,
        targets,
        epsilon,
        step_size=params.step_size,
        num_steps=params.num_steps,
        random_start=params.random_start,
        seed=params.seed,
        num_draws=params.num_draws,
    )


def _sgd_universal(model_fn, images, labels, xi, params):
    del labels  # the universal attacks fool the clean predictions
    return sgd_universal_perturbation(
        model_fn,
        images,
        xi=xi,
        p=params.p,
        step_size=params.step_size,
        num_epochs=params.num_epochs,
        final_step_size=params.final_step_size,
        batch_size=params.batch_size,
        seed=params.seed,
        progress=params.progress,
        num_draws=params.num_draws,
    )


def _deepfool_universal(model_fn, images, labels, xi, params):
    del labels
    return universal_perturbation(
        model_fn,
        images,
        xi=xi,
        p=params.p,
        delta=params.delta,
        max_passes=params.max_passes,
        overshoot=params.overshoot,
        max_iter_deepfool=params.max_iter_deepfool,
        seed=params.seed,
        progress=params.progress,
        batch_size=params.batch_size,
        keep_best_pass=params.keep_best_pass,
    )


def _apgd_on(loss: str) -> Callable:
    """The untargeted APGD call on `loss` ("ce" or "dlr")."""

    def call(model_fn, images, labels, epsilon, params):
        return apgd(
            model_fn,
            images,
            labels,
            epsilon,
            params.num_steps,
            loss=loss,
            seed=params.seed,
            num_draws=params.num_draws,
        )

    return call


def _targeted_apgd_dlr(model_fn, images, targets, epsilon, params):
    # The true classes are the model's own predictions on the clean images:
    # the targeted DLR needs them, and the apps pick correctly classified ones.
    labels = tf.argmax(model_fn(tf.convert_to_tensor(images, tf.float32)), axis=-1)
    return apgd(
        model_fn,
        images,
        labels,
        epsilon,
        params.num_steps,
        loss="dlr",
        target_labels=targets,
        seed=params.seed,
        num_draws=params.num_draws,
    )


def _square(model_fn, images, labels, epsilon, params):
    return square_attack(
        model_fn, images, labels, epsilon, params.num_queries, seed=params.seed
    )


APGD_ALGORITHM = (
    "Croce and Hein 2020 (AutoAttack), Algorithm 1: from a random point of "
    "the eps ball, num_steps momentum steps (alpha 0.75) up the {loss}, step "
    "2 eps halved at the checkpoints ceil(p_j N) when the loss rose in fewer "
    "than 75% of the steps or neither step nor best loss changed; the last "
    "adversarial iterate, else the best"
)
ATTACKS = (
    Attack(
        "fgsm",
        "FGSM",
        "untargeted FGSM",
        "linf",
        False,
        PER_IMAGE,
        EPSILONS,
        _fgsm,
        "x' = clip(x + eps * sign(grad_x CE(y, f(x))), 0, 1)",
    ),
    Attack(
        "pgd",
        "PGD",
        "untargeted PGD",
        "linf",
        False,
        PER_IMAGE,
        EPSILONS,
        _pgd,
        "Madry et al. 2018: from a random point of the eps ball, num_steps "
        "signed steps of step_size up CE(y), each projected onto the ball and "
        "[0, 1]",
        reads=("step_size", "num_steps", "seed"),
    ),
    Attack(
        "targeted_fgsm",
        "targeted FGSM",
        "targeted FGSM",
        "linf",
        True,
        PER_IMAGE,
        TARGETED,
        _targeted_fgsm,
        "targeted FGSM, one step: "
        "x' = clip(x + eps * sign(grad_x(-CE(target, f(x)))), 0, 1)",
        option="fgsm",
    ),
    Attack(
        "targeted_iterative",
        "targeted iterative",
        "targeted iterative FGSM",
        "linf",
        True,
        PER_IMAGE,
        TARGETED,
        _targeted_iterative,
        "targeted iterative FGSM (I-FGSM/PGD): num_steps signed steps of "
        "step_size descending CE(target), each projected onto the L-inf ball "
        "of radius eps around x and onto [0, 1]",
        option="iterative",
        reads=("step_size", "num_steps", "random_start", "seed"),
    ),
    Attack(
        "universal",
        "universal (sgd)",
        "universal perturbation (sgd)",
        "lp",
        False,
        UNIVERSAL,
        UNIVERSAL_XI,
        _sgd_universal,
        "Shafahi et al. 2020 (universal adversarial training, attack part): "
        "signed-gradient ascent of the cross-entropy of the clean prediction "
        "on v over mini-batches, projected on the lp ball after every step",
        option="sgd",
        reads=("p", "step_size", "final_step_size", "num_epochs", "batch_size"),
    ),
    Attack(
        "square",
        "Square Attack",
        "Square Attack (gradient-free)",
        "linf",
        False,
        GRADIENT_FREE,
        REFERENCE,
        _square,
        "Andriushchenko et al. 2020: random search of square patches on the "
        "margin loss, querying the model's outputs only",
        reads=("num_queries", "seed"),
    ),
    Attack(
        "universal_deepfool",
        "universal (DeepFool)",
        "universal perturbation (DeepFool loop)",
        "lp",
        False,
        UNIVERSAL,
        UNIVERSAL_XI,
        _deepfool_universal,
        "Moosavi-Dezfooli et al. 2017, Algorithm 1: passes over the shuffled "
        "images; where x + v is not yet fooled, DeepFool on x + v gives r and "
        "v <- P_{p,xi}(v + r); stop at fooling rate >= 1 - delta or after "
        "max_passes",
        option="deepfool",
        in_defense_table=False,
        reads=("p", "delta", "max_passes", "overshoot", "max_iter_deepfool"),
    ),
    Attack(
        "apgd_ce",
        "APGD-CE",
        "untargeted APGD-CE",
        "linf",
        False,
        PER_IMAGE,
        REFERENCE,
        _apgd_on("ce"),
        APGD_ALGORITHM.format(loss="cross-entropy of y"),
        reads=("num_steps", "seed"),
    ),
    Attack(
        "apgd_dlr",
        "APGD-DLR",
        "untargeted APGD-DLR",
        "linf",
        False,
        PER_IMAGE,
        REFERENCE,
        _apgd_on("dlr"),
        APGD_ALGORITHM.format(
            loss="DLR loss -(z_y - max_(i != y) z_i) / (z_pi1 - z_pi3)"
        ),
        reads=("num_steps", "seed"),
    ),
    Attack(
        "targeted_apgd_dlr",
        "targeted APGD-DLR",
        "targeted APGD-DLR",
        "linf",
        True,
        PER_IMAGE,
        TARGETED,
        _targeted_apgd_dlr,
        APGD_ALGORITHM.format(
            loss="targeted DLR loss -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), "
            "y the clean prediction"
        ),
        option="apgd_dlr",
        in_defense_table=False,
        reads=("num_steps", "seed"),
    ),
)
BY_NAME = {attack.name: attack for attack in ATTACKS}
NAMES = tuple(BY_NAME)


def get(name: str) -> Attack:
    """The registered attack `name`; a UserError lists the known ones."""
    if name not in BY_NAME:
        raise UserError(f"unknown attack {name!r}; expected one of {', '.join(NAMES)}.")
    return BY_NAME[name]


def options(kind: str, targeted: bool | None = None) -> dict[str, Attack]:
    """{option: attack} of an app's choice flag (`kind`, optionally targeted)."""
    return {
        attack.option: attack
        for attack in ATTACKS
        if attack.option
        and attack.kind == kind
        and (targeted is None or attack.targeted == targeted)
    }


def defense_table_default() -> tuple[str, ...]:
    """The attacks the defend table runs unless --attacks says otherwise."""
    return tuple(attack.name for attack in ATTACKS if attack.in_defense_table)
