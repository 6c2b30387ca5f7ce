"""The `sweep` app: the fooling rate of universal perturbations against xi.

Usage:
  python -m cifar_denoise_adv.sweep --flagfile=flags/universal_sweep.cfg \
      --classifier=runs/classifier --data_dir=path/to/cifar-10-batches-py

Runs both universal methods (the DeepFool loop and sgd, with the settings
of the `universal` app) at each xi of --sweep_xi, each in a sub-folder
`<method>_xi<xi x 255>/` as a universal run, and random noise of the same
norm; writes sweep.json (the rates, and the xi at which each method reaches
65.17% of the training images), sweep.png, flags.cfg and tb/ (the rates as
scalars, step = xi x 255). Resumable: a finished (method, xi) run with the
same settings is reused, also when the grid changes.
"""

from cifar_denoise_adv.adversarial import sweep
from cifar_denoise_adv.core import apps

APP = apps.App("sweep", sweep.SweepConfig, sweep.run)

if __name__ == "__main__":
    APP.main()
