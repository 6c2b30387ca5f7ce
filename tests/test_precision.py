"""--precision through the training apps: 16-bit layers, float32 outputs and loss.

The library side (`core.precision`, the models' float32 output layers) is
tests/core/test_training.py; here the flag goes through each app's parser
and job, and the saved model.keras is what is checked.
"""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv import classify
from cifar_denoise_adv import denoise
from cifar_denoise_adv.core import keras_files
from cifar_denoise_adv.core import precision

TINY = {
    "denoise": (
        denoise.APP,
        ["--num_blocks=1", "--filters=4", "--downscale=2", "--num_examples=2"],
    ),
    "classify": (classify.APP, ["--width=4", "--learning_rate=1e-3", "--tta=0"]),
}


def _layers(model):
    """Every layer of `model`, nested models' layers included."""
    pending, found = list(model.layers), []
    while pending:
        layer = pending.pop()
        found.append(layer)
        pending.extend(getattr(layer, "layers", []))
    return found


@pytest.mark.parametrize("app_name", list(TINY))
def test_the_precision_flag_reaches_the_layers_and_outputs_stay_float32(
    app_name, tiny_cifar, tmp_path, monkeypatch
):
    # Any CPU runs bfloat16 (emulated where it has no bfloat16 units).
    monkeypatch.setattr(precision, "_cpu_has_bfloat16", lambda: True)
    app, flags = TINY[app_name]
    run_dir = tmp_path / "run"
    argv = [
        app_name,
        f"--data_dir={tiny_cifar}",
        f"--run_dir={run_dir}",
        "--epochs=1",
        "--batch_size=8",
        "--warmup_epochs=0.5",
        "--validation_images=4",
        "--precision=mixed_bfloat16",
        *flags,
    ]
    record = app.job(app.parse(argv), log=lambda line: None)
    assert np.isfinite(record["history"]["loss"]).all()
    assert keras.config.dtype_policy().name == "float32"  # restored after the run

    model = keras_files.load(str(run_dir / "model.keras"), "model")
    convs = [
        layer for layer in _layers(model) if isinstance(layer, keras.layers.Conv2D)
    ]
    assert convs and all(layer.compute_dtype == "bfloat16" for layer in convs)
    assert all(layer.dtype_policy.name == "mixed_bfloat16" for layer in convs)
    assert all(weight.dtype == "float32" for weight in model.weights)
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    outputs = model(images)
    assert outputs.dtype == tf.float32
    targets = images if app_name == "denoise" else tf.one_hot([1, 2], 10)
    loss = model.compute_loss(x=images, y=targets, y_pred=outputs)
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))


AVX2_ONLY = (
    "processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n"
    "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c\n"
)
BFLOAT16_UNITS = (
    "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C CPU\n"
    "flags\t\t: fpu sse4_2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
)


@pytest.mark.parametrize(
    "cpuinfo, compute, line, cpu",
    [
        (
            AVX2_ONLY,
            "float32",
            "precision: float32 (this CPU has AVX2, no bfloat16 units)",
            "AMD EPYC 7B13 64-Core Processor",
        ),
        (
            BFLOAT16_UNITS,
            "mixed_bfloat16",
            "precision: mixed_bfloat16 (this CPU has AMX-BF16 and AVX512_BF16 units)",
            "Intel(R) Xeon(R) Platinum 8481C CPU",
        ),
    ],
    ids=["avx2_only", "bfloat16_units"],
)
def test_the_default_precision_is_the_fastest_this_cpu_computes_natively(
    cpuinfo, compute, line, cpu, tiny_cifar, tmp_path, monkeypatch
):
    """No --precision: the CPU decides; one line says so; metrics.json records it."""
    monkeypatch.setattr(precision, "_read_cpuinfo", lambda: cpuinfo)
    monkeypatch.setattr(precision, "gpus", lambda: [])
    app, flags = TINY["denoise"]
    argv = [
        "denoise",
        f"--data_dir={tiny_cifar}",
        f"--run_dir={tmp_path / 'run'}",
        "--epochs=2",
        "--batch_size=8",
        "--warmup_epochs=0.5",
        "--validation_images=4",
        *flags,
    ]
    lines = []
    app.job(app.parse(argv), log=lines.append)
    assert line in lines
    # After the first epoch: the minutes the other epoch will take.
    remaining = [text for text in lines if "minutes left" in text]
    assert len(remaining) == 1
    assert re.fullmatch(
        r"epoch 1 took [\d.]+ s( \([\d.]+ s of it tracing the step\))?; about "
        r"[\d.]+ minutes left at this rate \(1 epoch\)",
        remaining[0],
    )
    with open(tmp_path / "run" / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    assert metrics["config"]["precision"] == "auto"
    assert metrics["precision"] == {
        "precision": compute,
        "requested": "auto",
        "reason": line.split(" (", 1)[1][:-1],
        "device": cpu,
    }
    assert metrics["machine"]["cpu"] == cpu
    assert metrics["machine"]["gpus"] == []
    model = keras_files.load(str(tmp_path / "run" / "model.keras"), "model")
    convs = [
        layer for layer in _layers(model) if isinstance(layer, keras.layers.Conv2D)
    ]
    expected = "float32" if compute == "float32" else "bfloat16"
    assert {layer.compute_dtype for layer in convs} == {expected}


def test_a_precision_the_device_cannot_run_is_one_line_naming_the_flag(
    tiny_cifar, tmp_path, monkeypatch
):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setattr(precision, "_cpu_has_bfloat16", lambda: False)
    for app_name, value in (
        ("denoise", "mixed_float16"),
        ("classify", "mixed_bfloat16"),
    ):
        app, flags = TINY[app_name]
        run_dir = tmp_path / app_name
        argv = [
            app_name,
            f"--data_dir={tiny_cifar}",
            f"--run_dir={run_dir}",
            f"--precision={value}",
            "--validation_images=4",
            *flags,
        ]
        with pytest.raises(precision.UserError, match=f"^--precision={value}") as e:
            app.job(app.parse(argv), log=lambda line: None)
        assert "\n" not in str(e.value)
        # Refused before the run folder is claimed: nothing there to refuse
        # the corrected command for.
        assert not run_dir.exists()
