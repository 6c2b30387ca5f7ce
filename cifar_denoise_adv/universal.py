r"""The `universal` app: a universal adversarial perturbation for a classifier.

Usage:
  python -m cifar_denoise_adv.universal --flagfile=flags/universal.cfg \
      --classifier=runs/classifier --data_dir=path/to/cifar-10-batches-py

--method=deepfool is the reference algorithm (Moosavi-Dezfooli et al. 2017,
DeepFool inside, projection on the lp ball); --method=sgd the batched
signed-gradient method (Shafahi et al. 2020). Writes v.npy,
perturbation.png (with a colour bar), fooled_flows.png, examples.png,
metrics.json (fooling rates on the training images used and on the test set,
and for random noise of the same norm; the classifier's clean accuracy, with
a warning below 50%) and tb/ (the rate after each pass or epoch, the final
rates, v and fooled examples). The fooling rate against xi, for both
methods, is the `sweep` app's (`python -m cifar_denoise_adv.sweep`).
"""

from cifar_denoise_adv.adversarial import universal_job
from cifar_denoise_adv.core import apps

APP = apps.App("universal", universal_job.UniversalConfig, universal_job.run)

if __name__ == "__main__":
    APP.main()
