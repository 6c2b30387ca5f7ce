"""The `denoise_image` app: applies a trained denoiser to your own images.

Usage:
  python -m cifar_denoise_adv.denoise_image --model=runs/resnet_cpu \
      --input=photo.png --output=photo_denoised.png
  python -m cifar_denoise_adv.denoise_image --model=runs/resnet_cpu/model.keras \
      --input=folder/ --output=denoised/

--model is a run folder of the denoise app, its model.keras, or its
saved_model/. Any image size works (the denoiser is fully convolutional).
Outputs are PNG. In a folder, an unreadable or non-RGB image is reported
and skipped; the exit status is 1 if any image failed.
"""

import sys

from absl import app
from absl import flags

from cifar_denoise_adv import common_flags
from cifar_denoise_adv import inference

_MODEL = flags.DEFINE_string("model", None, "Run folder, .keras file or SavedModel.")
_INPUT = flags.DEFINE_string("input", None, "A PNG/JPEG file, or a folder of them.")
_OUTPUT = flags.DEFINE_string("output", None, "Output PNG file, or folder.")


def main(argv: list[str]) -> int:
    """Denoises the input file(s); returns 1 if any image failed."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    denoise = inference.load_denoiser(_MODEL.value)
    results = inference.denoise_files(denoise, _INPUT.value, _OUTPUT.value)
    failed = 0
    for source, error in results:
        if error:
            failed += 1
            print(f"skipped {error}", file=sys.stderr)
        else:
            print(f"denoised {source}")
    done = len(results) - failed
    print(f"{done} of {len(results)} images denoised into {_OUTPUT.value}")
    return 1 if failed else 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["model", "input", "output"])
    app.run(common_flags.exit_on_user_error(main))
