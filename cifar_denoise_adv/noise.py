r"""The `noise` app: which sigma gives a target PSNR, and the noisy CIFAR-10 sets.

Usage:
  python -m cifar_denoise_adv.noise --flagfile=flags/noise.cfg \
      --data_dir=path/to/cifar-10-batches-py

Prints and writes run_dir/metrics.json (analytic and clipped-calibrated
sigma; PSNR(x, y) mean and std on train and test at --sigma, with and
without clipping), run_dir/noise_examples.png, TensorBoard logs, and with
--export the noisy train and test sets as .npz files.
"""

from cifar_denoise_adv.core import apps
from cifar_denoise_adv.denoising import noise_job

APP = apps.App("noise", noise_job.NoiseConfig, noise_job.run)

if __name__ == "__main__":
    APP.main()
