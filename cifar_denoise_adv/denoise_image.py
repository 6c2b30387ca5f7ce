r"""The `denoise_image` app: applies a trained denoiser to your own images.

Usage:
  python -m cifar_denoise_adv.denoise_image --model=runs/resnet \
      --input=photo.png --output=photo_denoised.png
  python -m cifar_denoise_adv.denoise_image --model=runs/resnet/model.keras \
      --input=folder/ --output=denoised/

--model is a run folder of the denoise app, its model.keras, or its
saved_model/. A .keras file is loaded in Keras safe mode; a SavedModel is a
program and is run: give only ones you trust. Any image size works (the
denoiser is fully convolutional). Outputs are PNG: photo.png for photo.jpg,
photo_jpg.png when photo.png is an input too. No input file is ever
replaced, and an existing output file only with --overwrite. In a folder,
an unreadable or non-RGB image, or one whose output cannot be written, is
reported and skipped; the exit status is 1 if any image failed.
"""

from cifar_denoise_adv.core import apps
from cifar_denoise_adv.denoising import inference

APP = apps.App(
    "denoise_image",
    inference.DenoiseImageConfig,
    inference.run,
    exit_status=lambda record: 1 if record["failed"] else 0,
)

if __name__ == "__main__":
    APP.main()
