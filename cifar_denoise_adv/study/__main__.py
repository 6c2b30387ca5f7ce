r"""The `study` app: every job of the two studies in order, then one report.

Usage:
  python -m cifar_denoise_adv.study --flagfile=flags/study_cpu.cfg \
      --data_dir=path/to/cifar-10-batches-py

The study's flag file names one flag file per step (--noise_flagfile,
--resnet_flagfile, ..., an empty value leaves the step out). Each step's
config is its flag file read by its app's own parser, with --run_dir set to
--study_dir/<step>, --data_dir to the study's, and --classifier (attacks) to
the study's classifier run; the study then calls the step's job. A step
whose outputs exist and whose settings are unchanged is skipped; an
interrupted study continues the interrupted step; --force reruns every step,
--rerun=fgsm,universal the named ones. Writes report.md and report.html
(figures embedded) into --study_dir.

(The study lives in a package, `study/`, with its plan and its report; this
file is the package's `__main__`, so the command above is unchanged.)
"""

from cifar_denoise_adv.core import apps
from cifar_denoise_adv.study import plan

APP = apps.App("study", plan.StudyConfig, plan.run_study)

if __name__ == "__main__":
    APP.main()
