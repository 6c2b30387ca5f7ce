"""The `classify` app: trains a CIFAR-10 classifier (logits output).

Usage:
  python -m cifar_denoise_adv.classify --flagfile=flags/classifier.cfg \
      --data_dir=path/to/cifar-10-batches-py

Augmentation (random crop with 4-px reflect padding, horizontal flip), SGD
with Nesterov momentum, weight decay and a warm-up + cosine schedule.
Resumable like the denoiser: the same command continues an interrupted run.
Writes metrics.json (test and per-class accuracy), confusion_matrix.png,
predictions.npz, model.keras, saved_model/ and tb/ into --run_dir.
"""

from cifar_denoise_adv.adversarial import classify_job
from cifar_denoise_adv.core import apps

APP = apps.App("classify", classify_job.ClassifyConfig, classify_job.run)

if __name__ == "__main__":
    APP.main()
