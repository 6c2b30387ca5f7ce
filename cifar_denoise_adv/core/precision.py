"""Mixed precision: which policy this machine computes natively, and building under one.

`choose(requested)` resolves `--precision` (default `auto`) for the machine
the job runs on and says why in one line (`Choice.line`): `mixed_bfloat16`
on CPUs with AVX512_BF16 or AMX-BF16 units and on GPUs of compute
capability 8.0 or more, `mixed_float16` on GPUs of compute capability 7.x,
`float32` elsewhere. An explicit precision the machine would only emulate
is refused (`check_precision`).
"""

from __future__ import annotations

import contextlib
import dataclasses

import keras
import tensorflow as tf

from cifar_denoise_adv.core.errors import UserError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
AUTO = "auto"
CHOICES = (AUTO, *PRECISIONS)
CHOICE_HELP = (
    "auto (the default): mixed_bfloat16 on CPUs with AVX512_BF16 or AMX-BF16 "
    "units and on GPUs of compute capability >= 8.0, mixed_float16 on GPUs "
    "7.x, float32 elsewhere; the choice is printed and recorded in "
    "metrics.json. An explicit precision this machine would only emulate is "
    "refused."
)


def _read_cpuinfo() -> str | None:
    """/proc/cpuinfo's text, or None where there is none (not Linux).

    Tests replace this function to play other CPUs.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def gpus() -> list[tuple[str, tuple[int, int] | None]]:
    """(name, compute capability) of each visible GPU. Tests replace it."""
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        found.append(
            (
                details.get("device_name", gpu.name),
                tuple(capability) if capability else None,
            )
        )
    return found


@dataclasses.dataclass(frozen=True)
class Cpu:
    """What /proc/cpuinfo says: the model name and the instruction-set flags."""

    model: str
    flags: frozenset[str]
    known: bool = True  # False: no /proc/cpuinfo (the flags are unknown)

    @property
    def bfloat16_units(self) -> list[str]:
        """The bfloat16 units it has, by their usual names."""
        names = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512_BF16"}
        return [name for flag, name in names.items() if flag in self.flags]

    @property
    def vector_isa(self) -> str:
        """Its widest vector instruction set, e.g. AVX-512, AVX2, SSE4.2."""
        for flag, name in (
            ("avx512f", "AVX-512"),
            ("avx2", "AVX2"),
            ("avx", "AVX"),
            ("sse4_2", "SSE4.2"),
            ("asimd", "NEON"),
        ):
            if flag in self.flags:
                return name
        return "no AVX"


def cpu() -> Cpu:
    """This machine's CPU, from /proc/cpuinfo (its first processor)."""
    text = _read_cpuinfo()
    if text is None:
        import platform

        return Cpu(platform.processor() or platform.machine(), frozenset(), False)
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model Name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return Cpu(model or "unknown CPU", flags)


def _cpu_has_bfloat16() -> bool:
    """AVX512_BF16 or AMX-BF16 here (True where the flags cannot be read)."""
    here = cpu()
    return bool(here.bfloat16_units) if here.known else True


def _cpu_reason(here: Cpu, has_bfloat16: bool) -> str:
    if not here.known:
        return f"this CPU ({here.model}): no /proc/cpuinfo to read its units"
    if has_bfloat16:
        units = here.bfloat16_units or ["bfloat16"]
        return f"this CPU has {' and '.join(units)} units"
    return f"this CPU has {here.vector_isa}, no bfloat16 units"


@dataclasses.dataclass(frozen=True)
class Choice:
    """The precision a job computes in, and why.

    Attributes:
      precision: one of PRECISIONS.
      requested: what --precision said (auto, or a precision).
      reason: why, e.g. "this CPU has AVX2, no bfloat16 units".
      device: the CPU model name or the GPU name it saw.
    """

    precision: str
    requested: str
    reason: str
    device: str

    def line(self) -> str:
        """E.g. 'precision: float32 (this CPU has AVX2, no bfloat16 units)'."""
        return f"precision: {self.precision} ({self.reason})"

    def record(self) -> dict:
        """For metrics.json."""
        return dataclasses.asdict(self)


def _gpu_choice(name: str, capability) -> tuple[str, str]:
    text = "?" if capability is None else ".".join(str(c) for c in capability)
    which = f"this GPU ({name}, compute capability {text})"
    if capability is None or tuple(capability) >= (8, 0):
        return "mixed_bfloat16", f"{which} computes bfloat16 natively"
    if tuple(capability) >= (7, 0):
        return "mixed_float16", f"{which} has float16 tensor cores, no bfloat16"
    return "float32", f"{which} has no fast 16-bit units"


def choose(requested: str = AUTO) -> Choice:
    """The precision `--precision=requested` means on this machine.

    auto: the fastest precision the machine computes natively (see the
    module docstring); a precision by name: that one, once
    `check_precision` has accepted it.

    Raises:
      UserError: naming --precision, for a precision this machine would
        only emulate, or an unknown name.
    """
    if requested not in CHOICES:
        raise UserError(
            f"--precision={requested}: expected one of {', '.join(CHOICES)}."
        )
    found = gpus()
    if found:
        name, capability = found[0]
        best, reason = _gpu_choice(name, capability)
        device = name
    else:
        here = cpu()
        native = here.known and _cpu_has_bfloat16()
        best = "mixed_bfloat16" if native else "float32"
        reason, device = _cpu_reason(here, native), here.model
    if requested == AUTO:
        return Choice(best, AUTO, reason, device)
    check_precision(requested)
    return Choice(requested, requested, f"as asked; {reason}", device)


def choose_for_model(requested: str, trained: str) -> Choice:
    """The precision an attack computes a trained model in.

    auto: the precision it was trained at, where this machine computes
    that natively, else float32 (a bfloat16-trained classifier on a CPU
    without bfloat16 units, a float16 one without a GPU). The model's
    numbers then stay the trained ones wherever the machine can.

    Raises:
      UserError: as `choose`, for an explicit precision.
    """
    if requested != AUTO:
        return choose(requested)
    native = choose(AUTO)
    if trained == "float32" or trained == native.precision:
        reason = f"as trained; {native.reason}"
        return Choice(trained, AUTO, reason, native.device)
    try:
        check_precision(trained)
    except UserError:
        reason = f"trained in {trained}, which this machine would only emulate; "
        reason += native.reason
        return Choice("float32", AUTO, reason, native.device)
    return Choice(trained, AUTO, f"as trained; {native.reason}", native.device)


def trained_precision(model: keras.Model) -> str:
    """The mixed-precision policy a (loaded) model computes in, or float32."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        name = getattr(getattr(layer, "dtype_policy", None), "name", "float32")
        if name in PRECISIONS and name != "float32":
            return name
    return "float32"


def check_precision(precision: str) -> None:
    """Refuses a mixed precision the devices here cannot run fast.

    mixed_float16 needs a GPU (CPUs emulate float16 matmuls, slower than
    float32); mixed_bfloat16 needs a GPU of compute capability >= 8.0 or a
    CPU with AVX512_BF16 or AMX-BF16 when there is no GPU.

    Raises:
      UserError: naming --precision and what the machine has.
    """
    if precision in ("float32", AUTO):
        return
    found = gpus()
    if precision == "mixed_float16" and not found:
        raise UserError(
            "--precision=mixed_float16 needs a GPU (this machine has none; CPUs "
            "emulate float16): use auto (the default), float32, or "
            "mixed_bfloat16 on a CPU with AVX512_BF16."
        )
    if precision == "mixed_bfloat16":
        if found:
            capability = found[0][1] or (8, 0)
            if tuple(capability) < (8, 0):
                raise UserError(
                    "--precision=mixed_bfloat16 needs a GPU of compute capability "
                    f">= 8.0 (this one: {capability}): use auto (the default) or "
                    "mixed_float16."
                )
        elif not _cpu_has_bfloat16():
            raise UserError(
                "--precision=mixed_bfloat16: this CPU has no AVX512_BF16 or "
                "AMX-BF16 units, so bfloat16 would be emulated and slower: use "
                "auto (the default) or float32."
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
