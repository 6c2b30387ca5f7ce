r"""The `classify` app: trains a CIFAR-10 classifier (logits output).

Usage:
  python -m cifar_denoise_adv.classify --flagfile=flags/classifier.cfg \
      --data_dir=path/to/cifar-10-batches-py

The default recipe is airbench94 (Jordan 2024): a whitened 2x2 first conv
and three conv groups with batch norm; SGD with Nesterov momentum, decoupled
weight decay, the triangle learning-rate schedule and a lookahead average of
the weights; label smoothing; random translation (2 px, reflect padding) with
horizontal flips, and CutMix in flags/classifier.cfg; test-time augmentation
(mirror and one-pixel shifts) built into the exported model. --arch=resnet9
and --schedule=cosine (linear warm-up, then cosine decay) are the alternatives.
Resumable like the denoiser: the same command continues an interrupted run.
Writes metrics.json (test and per-class accuracy), confusion_matrix.png,
predictions.npz, model.keras, saved_model/ and tb/ into --run_dir.
"""

from cifar_denoise_adv.adversarial import classify_job
from cifar_denoise_adv.core import apps

APP = apps.App("classify", classify_job.ClassifyConfig, classify_job.run)

if __name__ == "__main__":
    APP.main()
