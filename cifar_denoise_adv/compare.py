"""The `compare` app: two or more denoising runs side by side.

Usage:
  python -m cifar_denoise_adv.compare --runs=runs/plain_cpu,runs/resnet_cpu \
      --run_dir=runs/compare

The first run is the baseline; each other run gets the paired per-image
PSNR difference (other - baseline) with its standard error. Prints the
table and, with --run_dir, writes comparison.md and comparison.json there.
"""

import os

from absl import app
from absl import flags

from cifar_denoise_adv import common_flags
from cifar_denoise_adv import denoise_job
from cifar_denoise_adv import outputs

_RUNS = flags.DEFINE_list(
    "runs", None, "Run folders of the denoise app; first = baseline."
)


def main(argv: list[str]) -> None:
    """Compares the runs and writes the table."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    comparison = denoise_job.compare_runs(_RUNS.value)
    table = denoise_job.comparison_markdown(comparison)
    print(table)
    if common_flags.RUN_DIR.value:
        folder = outputs.make_run_dir(common_flags.RUN_DIR.value)
        outputs.write_text(os.path.join(folder, "comparison.md"), table)
        outputs.write_json(os.path.join(folder, "comparison.json"), comparison)


if __name__ == "__main__":
    flags.mark_flags_as_required(["runs"])
    app.run(common_flags.exit_on_user_error(main))
