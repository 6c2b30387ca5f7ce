r"""The `defend` app: the trained denoiser as a defense in front of the classifier.

Usage:
  python -m cifar_denoise_adv.defend --flagfile=flags/defend.cfg \
      --data_dir=path/to/cifar-10-batches-py

(flags/defend.cfg reads --classifier=runs/classifier and
--denoiser=runs/resnet, where flags/classifier_cpu.cfg and flags/resnet.cfg
write.)

Builds defended(x) = classifier(clip(denoiser(x), 0, 1)) from a `classify`
run and a `denoise` run (and, unless --norandomised, the same with Gaussian
noise of --randomised_sigma first: denoised smoothing), exports it as model.keras and
saved_model/, and measures the accuracy of the bare classifier and of each
defended pipeline on the same test images: clean, noisy, untargeted FGSM and
PGD at each of --epsilons, the targeted attacks, and a universal
perturbation, under three threat models: oblivious (attacks computed on the
bare classifier), adaptive (gradients through denoiser and classifier) and,
for the randomised defense, adaptive with EOT (gradients averaged over
--eot_draws noise draws). Sanity checks (accuracy falls to 0 as eps grows,
PGD beats FGSM, adaptive beats oblivious, a gradient-free Square Attack does
not beat PGD) are computed and a failed one is printed as a warning. Writes
metrics.json, flags.cfg, accuracy_vs_eps.png, examples.png, per_image.npz
and tb/ into --run_dir.
"""

from cifar_denoise_adv.core import apps
from cifar_denoise_adv.defense import defend_job

APP = apps.App("defend", defend_job.DefendConfig, defend_job.run)

if __name__ == "__main__":
    APP.main()
