r"""The `denoise` app: trains a ResNet (or plain) denoiser and evaluates it.

Usage:
  python -m cifar_denoise_adv.denoise --flagfile=flags/resnet.cfg \
      --data_dir=path/to/cifar-10-batches-py

Resumable: the same command run again continues from the last completed
epoch (or, when training is complete, only re-evaluates and re-exports).
Writes metrics.json, recovery_examples.png, psnr_histogram.png,
psnr_per_image.npz, model.keras, saved_model/ and tb/ into --run_dir.
"""

from cifar_denoise_adv.core import apps
from cifar_denoise_adv.denoising import denoise_job

APP = apps.App("denoise", denoise_job.DenoiseConfig, denoise_job.run)

if __name__ == "__main__":
    APP.main()
