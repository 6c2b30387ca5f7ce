"""Denoising and adversarial examples on CIFAR-10 with TensorFlow/Keras.

Importing the package registers its custom Keras objects (the denoisers'
layers and PSNR metric, the classifiers' layers, loss and schedule, the
defended pipelines' `ClipPixels` and `PixelNoise`), so that after
`import cifar_denoise_adv` every `.keras` file an app writes loads with
`keras.saving.load_model("runs/resnet/model.keras")`
(`tests/test_exports.py` loads each app's in a fresh process). TensorFlow is
imported first without its C++ start-up lines (`core.console`), unless
TF_CPP_MIN_LOG_LEVEL is set.
"""

from cifar_denoise_adv.core import console as _console

_console.import_tensorflow()

# Imported for their registrations with keras.saving (after TensorFlow).
from cifar_denoise_adv.adversarial import airbench as _airbench  # noqa: E402, F401
from cifar_denoise_adv.adversarial import classifier as _classifier  # noqa: E402, F401
from cifar_denoise_adv.core import schedules as _schedules  # noqa: E402, F401
from cifar_denoise_adv.defense import pipeline as _pipeline  # noqa: E402, F401
from cifar_denoise_adv.denoising import models as _models  # noqa: E402, F401

__version__ = "0.1.0"
