"""What --precision=auto means on each kind of machine (CPU and GPUs mocked)."""

import keras
import pytest

from cifar_denoise_adv.core import precision
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import models

AVX2_ONLY = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\n"
    "model name\t: AMD EPYC 7B13 64-Core Processor\n"
    "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma\n\n"
    "processor\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n"
    "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma\n"
)
AVX512_NO_BF16 = (
    "model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz\n"
    "flags\t\t: fpu sse4_2 avx avx2 avx512f avx512bw avx512_vnni\n"
)
AVX512_BF16_ONLY = (
    "model name\t: AMD EPYC 9654 96-Core Processor\n"
    "flags\t\t: fpu avx2 avx512f avx512_bf16\n"
)
AMX = (
    "model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\n"
    "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
)


@pytest.fixture
def machine(monkeypatch):
    """machine(cpuinfo, gpus): plays a CPU (/proc/cpuinfo text) and GPUs."""

    def play(cpuinfo, gpus=()):
        monkeypatch.setattr(precision, "_read_cpuinfo", lambda: cpuinfo)
        monkeypatch.setattr(precision, "gpus", lambda: list(gpus))

    return play


@pytest.mark.parametrize(
    "cpuinfo, expected, line, device",
    [
        (
            AVX2_ONLY,
            "float32",
            "precision: float32 (this CPU has AVX2, no bfloat16 units)",
            "AMD EPYC 7B13 64-Core Processor",
        ),
        (
            AVX512_NO_BF16,
            "float32",
            "precision: float32 (this CPU has AVX-512, no bfloat16 units)",
            "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz",
        ),
        (
            AVX512_BF16_ONLY,
            "mixed_bfloat16",
            "precision: mixed_bfloat16 (this CPU has AVX512_BF16 units)",
            "AMD EPYC 9654 96-Core Processor",
        ),
        (
            AMX,
            "mixed_bfloat16",
            "precision: mixed_bfloat16 (this CPU has AMX-BF16 and AVX512_BF16 units)",
            "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
        ),
    ],
    ids=["avx2_only", "avx512_no_bf16", "avx512_bf16", "amx"],
)
def test_auto_on_a_cpu(machine, cpuinfo, expected, line, device):
    machine(cpuinfo)
    chosen = precision.choose("auto")
    assert chosen.precision == expected
    assert chosen.line() == line
    assert chosen.record() == {
        "precision": expected,
        "requested": "auto",
        "reason": line.split(" (", 1)[1][:-1],
        "device": device,
    }


@pytest.mark.parametrize(
    "capability, expected",
    [((9, 0), "mixed_bfloat16"), ((8, 0), "mixed_bfloat16"), ((7, 5), "mixed_float16")]
    + [((7, 0), "mixed_float16"), ((6, 1), "float32")],
)
def test_auto_on_a_gpu_follows_its_compute_capability(machine, capability, expected):
    machine(AVX2_ONLY, [("NVIDIA Tesla T4", capability)])
    chosen = precision.choose()
    assert chosen.precision == expected
    assert chosen.device == "NVIDIA Tesla T4"
    text = ".".join(map(str, capability))
    assert f"this GPU (NVIDIA Tesla T4, compute capability {text})" in chosen.line()


def test_without_cpuinfo_auto_is_float32_and_says_why(machine):
    machine(None)
    chosen = precision.choose()
    assert chosen.precision == "float32"
    assert "no /proc/cpuinfo" in chosen.line()


def test_an_explicit_precision_is_kept_or_refused_in_one_line(machine):
    machine(AMX)
    assert precision.choose("float32").precision == "float32"
    assert precision.choose("float32").line() == (
        "precision: float32 (as asked; this CPU has AMX-BF16 and AVX512_BF16 units)"
    )
    with pytest.raises(UserError, match="^--precision=mixed_float16 needs a GPU"):
        precision.choose("mixed_float16")
    machine(AVX2_ONLY)
    with pytest.raises(UserError, match="^--precision=mixed_bfloat16: this CPU has no"):
        precision.choose("mixed_bfloat16")
    machine(AVX2_ONLY, [("NVIDIA Tesla V100", (7, 0))])
    with pytest.raises(UserError, match="^--precision=mixed_bfloat16 needs a GPU of"):
        precision.choose("mixed_bfloat16")
    assert precision.choose("mixed_float16").precision == "mixed_float16"
    with pytest.raises(UserError, match="^--precision=half: expected one of auto,"):
        precision.choose("half")


def test_an_attacked_model_keeps_its_trained_precision_where_native(machine):
    machine(AMX)
    chosen = precision.choose_for_model("auto", "mixed_bfloat16")
    assert chosen.precision == "mixed_bfloat16"
    assert chosen.reason.startswith("as trained; this CPU has AMX-BF16")
    assert precision.choose_for_model("auto", "float32").precision == "float32"
    # Emulated here: float16 on a CPU, bfloat16 on a CPU without its units.
    assert precision.choose_for_model("auto", "mixed_float16").precision == "float32"
    machine(AVX2_ONLY)
    chosen = precision.choose_for_model("auto", "mixed_bfloat16")
    assert chosen.line() == (
        "precision: float32 (trained in mixed_bfloat16, which this machine would "
        "only emulate; this CPU has AVX2, no bfloat16 units)"
    )
    assert precision.choose_for_model("float32", "mixed_bfloat16").precision == (
        "float32"
    )


def test_trained_precision_reads_the_layers_policy():
    with precision.precision_scope("mixed_bfloat16"):
        bf16 = models.build_denoiser(num_blocks=1, filters=4, downscale=2)
    assert precision.trained_precision(bf16) == "mixed_bfloat16"
    plain = models.build_denoiser(num_blocks=1, filters=4)
    assert precision.trained_precision(plain) == "float32"
    assert keras.config.dtype_policy().name == "float32"
