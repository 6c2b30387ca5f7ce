"""The universal perturbation loops' progress: a line per pass, the time left.

Each pass (DeepFool loop) or epoch (sgd) logs its fooling rate and speed
and writes the rate to TensorBoard; after the first, one line says how many
minutes the others will take at its rate.
"""

from __future__ import annotations

from cifar_denoise_adv.core import callbacks
from cifar_denoise_adv.core import summaries


def lines(log, tb: str, config):
    """Each pass (epoch): a line and the fooling rate in TensorBoard.

    After the first pass, one more line: the minutes the others will take
    at its rate.
    """

    def progress(info: dict) -> None:
        log(
            " ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in info.items()
            )
        )
        summaries.write(
            tb,
            scalars={"fooling_rate/train_after_each_pass": info["fooling_rate"]},
            step=info["pass"],
        )
        if info["pass"] == 1 and _passes(config) > 1:
            log(remaining_line(config, info["elapsed_s"]))

    return progress


def _passes(config) -> int:
    """Passes (DeepFool loop, at most) or epochs (sgd) over the images."""
    return config.max_passes if config.method == "deepfool" else config.sgd_epochs


def remaining_line(config, seconds: float) -> str:
    """After the first pass (epoch): the minutes the others will take."""
    if config.method == "deepfool":
        # The loop stops early once the rate reaches 1 - delta; the later
        # passes attack only the images not yet fooled, so this is a bound.
        line = callbacks.remaining_line(
            "pass 1", seconds, config.max_passes - 1, "passes", seconds
        )
        return line.replace("about", "at most", 1) + ", fewer if it reaches the rate"
    return callbacks.remaining_line(
        "epoch 1", seconds, config.sgd_epochs - 1, "epochs", seconds
    )
