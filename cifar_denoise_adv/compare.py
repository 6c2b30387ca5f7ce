r"""The `compare` app: two or more denoising runs side by side.

Usage:
  python -m cifar_denoise_adv.compare --runs=runs/plain,runs/resnet \
      --run_dir=runs/compare

The first run is the baseline; each other run gets the paired per-image
PSNR difference (other - baseline) with its standard error. Prints the
table and, with --run_dir, writes comparison.md and comparison.json there.
"""

from cifar_denoise_adv.core import apps
from cifar_denoise_adv.denoising import compare

APP = apps.App("compare", compare.CompareConfig, compare.run)

if __name__ == "__main__":
    APP.main()
