"""Which part of the classifier recipe makes it unsteady under plain noise (issue 23).

Trains the CPU recipe (flags/classifier_cpu.cfg) once per row, each row
changing one setting, on the training images less a validation split, and
tabulates what every classify run records ("stability" in metrics.json, on
the validation images): clean accuracy, the fraction of predictions that
random signs of 4/255 and 10/255 change, accuracy under Gaussian sigma 0.02
and 0.05, for the network alone and for the exported model with its
test-time augmentation (the TTA row of the ablation comes for free).

Each row is a separate `python -m cifar_denoise_adv.classify` process with
its own run folder under --out, so a finished row is kept (and skipped) when
the script is started again. The table (markdown) goes to --out/table.md and
the rows to --out/rows.jsonl.

  python benchmarks/classifier_stability.py --data_dir=/path/cifar-10-batches-py \\
      --out=runs/classifier_stability --epochs=16 --rows=baseline,noise_0.1
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

# name -> the flags that row changes from flags/classifier_cpu.cfg.
ROWS = {
    "baseline": [],
    "whiten_eps_1e-2": ["--whiten_eps=1e-2"],
    "whiten_eps_1e-1": ["--whiten_eps=1e-1"],
    "no_whiten": ["--nowhiten"],
    "noise_0.1": ["--noise_augment=0.1"],
    "no_label_smoothing": ["--label_smoothing=0"],
    "no_cutmix": ["--cutmix=0"],
    "no_lookahead": ["--nolookahead"],
    "noise_0.1_eps_1e-1": ["--noise_augment=0.1", "--whiten_eps=1e-1"],
    "noise_0.1_no_whiten": ["--noise_augment=0.1", "--nowhiten"],
    "noise_0.15": ["--noise_augment=0.15"],
}

_DATA = flags.DEFINE_string("data_dir", None, "CIFAR-10 folder (python batches).")
_OUT = flags.DEFINE_string("out", "runs/classifier_stability", "Output folder.")
_EPOCHS = flags.DEFINE_integer("epochs", 16, "Epochs of every row.")
_VALIDATION = flags.DEFINE_integer("validation_images", 1000, "Validation split.")
_ROWS = flags.DEFINE_list("rows", list(ROWS), f"Rows to run, of {list(ROWS)}.")
_PRECISION = flags.DEFINE_string("precision", "mixed_bfloat16", "--precision.")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Only tabulate finished rows.")
_MEASURE = flags.DEFINE_string(
    "measure",
    None,
    "A run folder whose model.keras is written: measure its stability on "
    "--split (validation: the run's split by its seed; test) and write "
    "stability_<split>.json there, without the classify job's other figures.",
)
_SPLIT = flags.DEFINE_enum("split", "validation", ["validation", "test"], "--measure.")


def _run_row(name: str) -> None:
    run_dir = os.path.join(_OUT.value, name)
    if os.path.exists(os.path.join(run_dir, "metrics.json")):
        return
    command = [
        sys.executable,
        "-m",
        "cifar_denoise_adv.classify",
        "--flagfile=flags/classifier.cfg",
        f"--data_dir={_DATA.value}",
        f"--epochs={_EPOCHS.value}",
        f"--validation_images={_VALIDATION.value}",
        f"--precision={_PRECISION.value}",
        f"--run_dir={run_dir}",
        "--overwrite",
        *ROWS[name],
    ]
    print(" ".join(command), flush=True)
    begin = time.time()
    subprocess.run(command, check=True)
    print(f"{name}: {(time.time() - begin) / 60:.1f} min", flush=True)


def row_figures(name: str, metrics: dict) -> list[dict]:
    """Two table rows (network, exported with TTA) from one run's metrics.json."""
    rows = []
    for model in ("network", "exported"):
        figures = metrics["stability"]["validation"][model]
        rows.append(
            {
                "row": name,
                "model": model,
                "flags": " ".join(ROWS.get(name, [])) or "(recipe)",
                "accuracy": figures["accuracy"],
                **{f"signs {k}": v for k, v in figures["signs_changed"].items()},
                **{f"gauss {k}": v for k, v in figures["gaussian_accuracy"].items()},
                "train_minutes": metrics.get("train_seconds_total", 0) / 60,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table; fractions as percentages."""
    keys = [k for k in rows[0] if k not in ("row",)]
    lines = [
        "| row | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for row in rows:
        cells = []
        for key in keys:
            value = row[key]
            if key == "train_minutes":
                cells.append(f"{value:.1f}")
            elif isinstance(value, float):
                cells.append(f"{100 * value:.1f}%")
            else:
                cells.append(str(value))
        lines.append(f"| {row['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def measure_run(run_dir: str, split: str) -> dict:
    """`stability.measure` of a run's exported model and its network."""
    import keras  # noqa: PLC0415 - only this mode needs TensorFlow

    import cifar_denoise_adv  # noqa: F401, PLC0415 - registers the layers
    from cifar_denoise_adv.adversarial import classifier  # noqa: PLC0415
    from cifar_denoise_adv.adversarial import stability  # noqa: PLC0415
    from cifar_denoise_adv.core import data  # noqa: PLC0415
    from cifar_denoise_adv.core import pipelines  # noqa: PLC0415

    with open(os.path.join(run_dir, "run.json")) as f:
        config = json.load(f)["settings"]
    if split == "test":
        images, labels = data.load_arrays("test", _DATA.value)
    else:
        images, labels = data.load_arrays("train", _DATA.value)
        _, held = pipelines.validation_split(
            config["validation_images"], len(images), config["seed"]
        )
        images, labels = images[held], labels[held]
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    network, _ = classifier.test_time_augmentation(model)
    result = {}
    for name, net in (("network", network), ("exported", model)):
        result[name] = stability.measure(
            lambda x, net=net: net.predict(x, batch_size=256, verbose=0),
            images,
            labels,
            seed=config["seed"],
        )
        print(f"{run_dir} {split} {name}: {stability.summary(result[name])}")
    with open(os.path.join(run_dir, f"stability_{split}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def main(argv):
    del argv
    if _MEASURE.value:
        measure_run(_MEASURE.value, _SPLIT.value)
        return
    unknown = [name for name in _ROWS.value if name not in ROWS]
    if unknown:
        raise app.UsageError(
            f"--rows: unknown {unknown}; expected some of {list(ROWS)}"
        )
    if not _TABLE_ONLY.value:
        if not _DATA.value:
            raise app.UsageError("--data_dir: required to train the rows.")
        for name in _ROWS.value:
            _run_row(name)
    rows = []
    for name in _ROWS.value:
        path = os.path.join(_OUT.value, name, "metrics.json")
        measured = os.path.join(_OUT.value, name, "stability_validation.json")
        if os.path.exists(path):
            with open(path) as f:
                rows += row_figures(name, json.load(f))
        elif os.path.exists(measured):
            with open(measured) as f:
                figures = {"stability": {"validation": json.load(f)}}
            rows += row_figures(name, figures)
    if not rows:
        print("no finished rows")
        return
    text = table(rows)
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(_OUT.value, "rows.jsonl"), "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    print(text)


if __name__ == "__main__":
    app.run(main)
