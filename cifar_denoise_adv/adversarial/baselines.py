"""What a universal perturbation is measured against, and where it sends images.

The fooling rate of v on each split beside two baselines of the same norm
that any perturbation of the budget reaches for free: random signs and a
chessboard pattern; and the fooled images' flows between classes.
"""

from __future__ import annotations

import numpy as np

from cifar_denoise_adv.adversarial import attacks
from cifar_denoise_adv.core import data

CHESSBOARD_SQUARES = (1, 2, 4, 8)


def fooling_rates(config, model, v, images_by_split: dict) -> dict:
    """Fooling rates of v and of two baselines of the same norm, per split.

    The baselines are what any perturbation of the budget reaches for free:
    random signs (`random_perturbation_like`) and a chessboard pattern
    (`chessboard_perturbation`), whose square size is the one of
    CHESSBOARD_SQUARES that fools most of the training images (chosen on
    the images v is computed on, like v itself).
    """
    shape, rate = v.shape, attacks.fooling_rate
    noise = attacks.random_perturbation_like(shape, config.xi, config.p, config.seed)
    boards = {
        square: attacks.chessboard_perturbation(shape, config.xi, config.p, square)
        for square in CHESSBOARD_SQUARES
    }
    train = images_by_split["train"]
    by_square = {s: rate(model, train, b, config.batch_size) for s, b in boards.items()}
    square = max(by_square, key=lambda s: (by_square[s], -s))
    rates = {}
    for name, pattern in (
        ("", v),
        ("random_noise_", noise),
        ("chessboard_", boards[square]),
    ):
        for split, images in images_by_split.items():
            rates[f"{name}fooling_rate_{split}"] = rate(
                model, images, pattern, config.batch_size
            )
    rates["chessboard_square"] = square
    rates["chessboard_fooling_rate_train_by_square"] = by_square
    baselines = max(
        rates["random_noise_fooling_rate_test"], rates["chessboard_fooling_rate_test"]
    )
    rates["beats_baselines_test"] = rates["fooling_rate_test"] > baselines
    return rates


def rates_line(rates: dict) -> str:
    """The rates of `fooling_rates` as the job's one summary line."""
    line = (
        f"fooling rate on unseen test images {100 * rates['fooling_rate_test']:.1f}% "
        f"(training images {100 * rates['fooling_rate_train']:.1f}%); same norm: "
        f"random signs {100 * rates['random_noise_fooling_rate_test']:.1f}%, "
        f"chessboard ({rates['chessboard_square']} px) "
        f"{100 * rates['chessboard_fooling_rate_test']:.1f}% (test)"
    )
    if not rates["beats_baselines_test"]:
        line += "; v does NOT beat both baselines on the test images"
    return line


def fooled_flows(clean: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """[10, 10] counts of fooled images: row = clean prediction, column = new one.

    Its sum is the number of fooled images and its diagonal is zero.
    """
    fooled = clean != perturbed
    flows = np.zeros((data.NUM_CLASSES, data.NUM_CLASSES), np.int64)
    np.add.at(flows, (clean[fooled], perturbed[fooled]), 1)
    return flows
