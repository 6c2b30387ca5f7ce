"""Adversarial attacks: FGSM / I-FGSM / PGD, APGD, DeepFool, universal, Square.

Pure functions on tensors, in the style of cleverhans' TF2 attacks: no flags,
no files, no printing. Every gradient comes from `tf.GradientTape`.

Conventions shared by every function here:

- `model_fn` is any callable mapping float32 images [B, H, W, C] in [0, 1]
  to logits [B, K] (a Keras model, or a function of TF ops). The heavy inner
  loops run under `tf.function`, so `model_fn` must be traceable; the
  functions themselves take and return eager tensors or NumPy arrays.
- Images are float32 in [0, 1]; epsilon, step sizes and radii are in the
  same [0, 1] pixel units. Attacks return images clipped to [0, 1].
- Norms: `p` is 2 or `np.inf` (also accepted: "l2", "2", "inf", "linf").
  `project_lp` treats its whole argument as ONE vector (a universal
  perturbation [H, W, C]); `batch_project_lp` projects each example of a
  batch [B, ...] separately, over all axes but the first.
- A `model_fn` may be random (a randomised defense): the gradient attacks'
  `num_draws` average that many calls' gradients per step (expectation over
  transformation).
- NumPy in, NumPy out: a function called with NumPy arrays (and no
  tensor) returns NumPy arrays, also as the fields of `DeepFoolResult` and
  `UniversalResult`; called with a tensor, it returns tensors. Rates are
  Python floats either way; `random_perturbation_like` and
  `chessboard_perturbation`, given only a shape, return tensors.
- Long loops report progress through an optional `progress` callback, called
  with a dict of plain numbers.
- Bad arguments raise `UserError` (a `ValueError`) with one line naming the
  argument. Budgets, radii and step sizes are checked by `core.units`, as the
  apps' flags are: at most 1 per pixel, at most sqrt(H * W * C) for an L2
  norm, and a value above that is said to look like 0-255 units
  (`epsilon=8: ... write 8/255`).
- Every entry point checks the model (`contract.check_model`): a Keras model
  ending in a softmax is attacked through its logits (with a UserWarning);
  other models returning probabilities are refused.
- A model in mixed precision (bfloat16 or float16 layers) is attacked with
  float32 gradients on the float32 input: the tape watches the float32
  images, back-propagates through the layers' 16-bit compute and the
  model's cast of its input, and the losses use float32 logits (16-bit
  scores are cast; `contract`, "Mixed precision"). Each image's loss is
  scaled by a power of two before the backward pass and its gradient
  unscaled in float32, so a confident float16 model's gradient does not
  underflow to 0 (`_gradients`).
- Images, perturbations and labels are checked by `core.arrays` (uint8
  0-255 pixels, NaN and infinite values refused with one line naming the
  argument), the same check as the noise functions and PSNR.
- A model with no gradient from its input to its output (`tf.stop_gradient`,
  rounding) gets one `UserWarning` per gradient attack: the gradient is
  zero (never None), so the attack makes no progress; `square_attack` needs
  no gradient.
"""

from cifar_denoise_adv.adversarial.attacks import _numpy
from cifar_denoise_adv.adversarial.attacks import registry
from cifar_denoise_adv.adversarial.attacks._checks import ModelFn
from cifar_denoise_adv.adversarial.attacks._checks import Progress
from cifar_denoise_adv.adversarial.attacks.apgd import apgd
from cifar_denoise_adv.adversarial.attacks.apgd import dlr_loss
from cifar_denoise_adv.adversarial.attacks.deepfool import DEEPFOOL_STEP_EPSILON
from cifar_denoise_adv.adversarial.attacks.deepfool import DeepFoolResult
from cifar_denoise_adv.adversarial.attacks.deepfool import deepfool
from cifar_denoise_adv.adversarial.attacks.fgsm import fgsm
from cifar_denoise_adv.adversarial.attacks.fgsm import input_gradient
from cifar_denoise_adv.adversarial.attacks.fgsm import pgd
from cifar_denoise_adv.adversarial.attacks.fgsm import targeted_fgsm
from cifar_denoise_adv.adversarial.attacks.fgsm import targeted_iterative
from cifar_denoise_adv.adversarial.attacks.metrics import fooling_rate
from cifar_denoise_adv.adversarial.attacks.metrics import misclassification_rate
from cifar_denoise_adv.adversarial.attacks.metrics import predict_labels
from cifar_denoise_adv.adversarial.attacks.metrics import targeted_success_rate
from cifar_denoise_adv.adversarial.attacks.norms import batch_project_lp
from cifar_denoise_adv.adversarial.attacks.norms import chessboard_perturbation
from cifar_denoise_adv.adversarial.attacks.norms import l2_norm
from cifar_denoise_adv.adversarial.attacks.norms import linf_norm
from cifar_denoise_adv.adversarial.attacks.norms import norm_order
from cifar_denoise_adv.adversarial.attacks.norms import project_lp
from cifar_denoise_adv.adversarial.attacks.norms import random_perturbation_like
from cifar_denoise_adv.adversarial.attacks.square import square_attack
from cifar_denoise_adv.adversarial.attacks.universal import UniversalResult
from cifar_denoise_adv.adversarial.attacks.universal import sgd_universal_perturbation
from cifar_denoise_adv.adversarial.attacks.universal import universal_perturbation

__all__ = [
    "DEEPFOOL_STEP_EPSILON",
    "DeepFoolResult",
    "ModelFn",
    "Progress",
    "UniversalResult",
    "apgd",
    "batch_project_lp",
    "chessboard_perturbation",
    "deepfool",
    "dlr_loss",
    "fgsm",
    "fooling_rate",
    "input_gradient",
    "l2_norm",
    "linf_norm",
    "misclassification_rate",
    "norm_order",
    "pgd",
    "predict_labels",
    "project_lp",
    "random_perturbation_like",
    "registry",
    "sgd_universal_perturbation",
    "square_attack",
    "targeted_fgsm",
    "targeted_iterative",
    "targeted_success_rate",
    "universal_perturbation",
]

# NumPy in, NumPy out (module docstring): each public function, as exported.
for _name in __all__:
    if _name[0].islower() and callable(globals()[_name]):  # not `registry`
        globals()[_name] = _numpy.numpy_like_inputs(globals()[_name])
del _name
