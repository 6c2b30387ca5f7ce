r"""The `targeted` app: targeted adversarial examples against a classifier.

Usage:
  python -m cifar_denoise_adv.targeted --flagfile=flags/fgsm.cfg \
      --classifier=runs/classifier --data_dir=path/to/cifar-10-batches-py
  python -m cifar_denoise_adv.targeted --flagfile=flags/iterative.cfg ...

--attack chooses targeted FGSM (one step) or the iterative version.

Chooses test images (--indices, or --num_images random correctly classified
ones) and targets (--target_mode=random | least_likely | given with
--targets), perturbs them with targeted FGSM or its iterative version, and
writes example_<i>.png (original, perturbed, perturbation scaled with a
colour bar, top-3 outputs and the target's before and after, a legend),
TensorBoard rates and image grids (tb/) and metrics.json (success rate,
misclassification rate, L-inf/L2 norms, PSNR; the classifier's clean
accuracy, with a warning below 50%).
"""

from cifar_denoise_adv.adversarial import targeted_job
from cifar_denoise_adv.core import apps

APP = apps.App("targeted", targeted_job.TargetedConfig, targeted_job.run)

if __name__ == "__main__":
    APP.main()
