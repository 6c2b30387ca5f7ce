"""Mixed precision: which policies this machine runs, and building under one."""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from cifar_denoise_adv.core.errors import UserError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def _cpu_has_bfloat16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = f.read()
    except OSError:
        return True  # cannot tell (not Linux): let TensorFlow decide
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_precision(precision: str) -> None:
    """Refuses a mixed precision the devices here cannot run fast.

    mixed_float16 needs a GPU (CPUs emulate float16 matmuls, slower than
    float32); mixed_bfloat16 needs a GPU of compute capability >= 8.0 or a
    CPU with AVX512_BF16 or AMX-BF16 when there is no GPU.

    Raises:
      UserError: naming --precision and what the machine has.
    """
    if precision == "float32":
        return
    gpus = tf.config.list_physical_devices("GPU")
    if precision == "mixed_float16" and not gpus:
        raise UserError(
            "--precision=mixed_float16 needs a GPU (this machine has none; CPUs "
            "emulate float16): use float32, or mixed_bfloat16 on a CPU with "
            "AVX512_BF16."
        )
    if precision == "mixed_bfloat16":
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            capability = details.get("compute_capability", (8, 0))
            if tuple(capability) < (8, 0):
                raise UserError(
                    "--precision=mixed_bfloat16 needs a GPU of compute capability "
                    f">= 8.0 (this one: {capability}): use mixed_float16."
                )
        elif not _cpu_has_bfloat16():
            raise UserError(
                "--precision=mixed_bfloat16: this CPU has no AVX512_BF16 or "
                "AMX-BF16 units, so bfloat16 would be emulated and slower: use "
                "float32."
            )


@contextlib.contextmanager
def precision_scope(precision: str):
    """Builds models under a Keras dtype policy, restoring the previous one.

    Layers made inside compute in the policy's dtype (bfloat16 or float16)
    and keep float32 weights; model builders give their output layers
    dtype="float32", so outputs and losses stay float32.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """The same trained model computing under another Keras dtype policy.

    Every layer, nested models included, is re-created from its config
    with `precision` as its dtype policy and given the model's weights
    (float32 variables under every policy); a float32 cast is appended, so
    the outputs stay float32 [B, ...] whatever the layers compute in. The
    result is a new functional model; `model` is unchanged.

    Args:
      model: a Keras functional model (e.g. a loaded model.keras).
      precision: one of PRECISIONS.

    Raises:
      UserError: naming --precision when this machine cannot run it
        (`check_precision`).
    """
    check_precision(precision)

    def recast(layer):
        config = layer.get_config()
        config["dtype"] = precision
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=recast, recursive=True)
    copy.set_weights(model.get_weights())
    outputs = keras.layers.Activation("linear", dtype="float32", name="as_float32")(
        copy.output
    )
    return keras.Model(copy.input, outputs, name=model.name)
