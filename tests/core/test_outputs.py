"""The run folder: atomic writes, the run's records, and flags.cfg replays."""

import dataclasses
import json
import os
import pathlib
import re
import stat

import numpy as np
import pytest

from cifar_denoise_adv import classify
from cifar_denoise_adv import compare
from cifar_denoise_adv import defend
from cifar_denoise_adv import denoise
from cifar_denoise_adv import denoise_image
from cifar_denoise_adv import noise
from cifar_denoise_adv import targeted
from cifar_denoise_adv import universal
from cifar_denoise_adv.adversarial.classify_job import ClassifyConfig
from cifar_denoise_adv.adversarial.targeted_job import TargetedConfig
from cifar_denoise_adv.adversarial.universal_job import UniversalConfig
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.defense.defend_job import DefendConfig
from cifar_denoise_adv.denoising.compare import CompareConfig
from cifar_denoise_adv.denoising.denoise_job import DenoiseConfig
from cifar_denoise_adv.denoising.inference import DenoiseImageConfig
from cifar_denoise_adv.denoising.noise_job import NoiseConfig
from cifar_denoise_adv.study import __main__ as study
from cifar_denoise_adv.study.plan import StudyConfig

# ---------------------------------------------------------------------------
# Atomic writes.


def test_atomic_path_moves_the_whole_file_into_place(tmp_path):
    path = tmp_path / "sub" / "result.txt"
    with outputs.atomic_path(str(path), suffix=".txt") as temporary:
        assert os.path.dirname(temporary) == str(path.parent)
        assert temporary.endswith(".txt") and not path.exists()
        with open(temporary, "w") as f:
            f.write("whole")
    assert path.read_text() == "whole"
    assert os.listdir(path.parent) == ["result.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_no_temporary_file_is_left_after_an_exception(tmp_path):
    path = tmp_path / "result.txt"
    path.write_text("earlier")
    with (
        pytest.raises(RuntimeError, match="interrupted"),
        outputs.atomic_path(str(path)) as temporary,
    ):
        with open(temporary, "w") as f:
            f.write("half")
        raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == ["result.txt"]
    assert path.read_text() == "earlier"  # the complete earlier file survives


def test_no_temporary_file_is_left_when_nothing_was_written(tmp_path):
    with pytest.raises(KeyboardInterrupt), outputs.atomic_path(str(tmp_path / "x")):
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_writers_leave_only_their_file(tmp_path):
    outputs.write_json(str(tmp_path / "a.json"), {"x": np.float32(0.5), "inf": np.inf})
    outputs.save_npz(str(tmp_path / "b.npz"), values=np.arange(3))
    outputs.write_text(str(tmp_path / "c.txt"), "text")
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.npz", "c.txt"]
    assert outputs.read_json(str(tmp_path / "a.json")) == {"x": 0.5, "inf": "inf"}
    np.testing.assert_array_equal(np.load(tmp_path / "b.npz")["values"], [0, 1, 2])


def test_run_dir_and_json_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(UserError, match="--run_dir"):
        outputs.make_run_dir("")
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="not a folder"):
        outputs.make_run_dir(str(tmp_path / "file"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="bad.json"):
        outputs.read_json(str(tmp_path / "bad.json"))
    assert outputs.make_run_dir(str(tmp_path / "new" / "run")) == str(
        tmp_path / "new" / "run"
    )


def test_normalized_records_compare_equal():
    assert outputs.normalized({"b": (1, 2), "a": np.int64(3)}) == {"a": 3, "b": [1, 2]}


def test_write_record_holds_the_config_the_results_and_the_machine(tmp_path):
    config = NoiseConfig(run_dir=str(tmp_path), data_dir="/data/cifar", seed=4)
    record = outputs.write_record(config, "noise", {"b": 1, "a": [2]}, start=0.0)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == outputs.normalized(record)
    assert list(written)[:5] == ["job", "config", "data_source", "b", "a"]
    assert written["job"] == "noise"
    assert written["config"] == outputs.normalized(dataclasses.asdict(config))
    assert written["data_source"] == "local /data/cifar"
    assert written["seconds"] > 0
    assert {"python", "tensorflow", "keras", "numpy"} <= set(written["versions"])
    assert written["machine"]["cpu_count"] == os.cpu_count()


# ---------------------------------------------------------------------------
# flags.cfg: written from the config used, it replays to the same config.


def _replay_cases(root):
    folder = str(root / "run")
    data_dir = str(root / "data")
    return {
        "noise": (
            noise.APP,
            NoiseConfig(
                run_dir=folder,
                data_dir=data_dir,
                seed=3,
                target_psnr=25.5,
                sigma=10 / 255,
                calibration_split="train",
                max_train_images=7,
                max_test_images=5,
                export=True,
                num_examples=2,
            ),
        ),
        "denoise": (
            denoise.APP,
            DenoiseConfig(
                run_dir=folder,
                data_dir=data_dir,
                seed=1,
                epochs=3,
                batch_size=16,
                learning_rate=2e-3,
                warmup_epochs=0.25,
                augment=False,
                max_train_images=100,
                max_test_images=50,
                validation_images=10,
                precision="mixed_bfloat16",
                strategy="mirrored",
                jit_compile=True,
                num_examples=3,
                arch="plain",
                num_blocks=3,
                filters=16,
                downscale=2,
                sigma=0.05,
                clipnorm=0.0,
                init_from=str(root / "earlier"),
            ),
        ),
        "classify": (
            classify.APP,
            ClassifyConfig(
                run_dir=folder,
                data_dir=data_dir,
                seed=2,
                epochs=5,
                batch_size=32,
                learning_rate=0.05,
                warmup_epochs=1.5,
                augment=False,
                max_train_images=64,
                max_test_images=16,
                validation_images=8,
                precision="mixed_float16",
                strategy="mirrored",
                jit_compile=True,
                num_examples=2,
                arch="resnet9",
                width=8,
                dropout=0.2,
                momentum=0.8,
                weight_decay=1e-4,
                schedule="cosine",
                lookahead=False,
                label_smoothing=0.1,
                translate=4,
                cutout=8,
                tta=1,
                depth=3,
                cutmix=0.5,
                whiten=False,
                whiten_eps=0.01,
                noise_augment=0.05,
                stability_signs=(2 / 255,),
                stability_sigmas=(0.03,),
            ),
        ),
        "targeted": (
            targeted.APP,
            TargetedConfig(
                run_dir=folder,
                data_dir=data_dir,
                seed=5,
                classifier=str(root / "classifier"),
                classifier_tta=1,
                precision="float32",
                batch_size=32,
                num_examples=2,
                attack="iterative",
                epsilon=8 / 255,
                step_size=1 / 255,
                num_steps=7,
                random_start=True,
                indices=(0, 5, 9),
                num_images=3,
                target_mode="given",
                targets=(1, 2, 3),
            ),
        ),
        "universal": (
            universal.APP,
            UniversalConfig(
                run_dir=folder,
                data_dir=data_dir,
                seed=6,
                classifier=str(root / "classifier"),
                classifier_tta=0,
                precision="float32",
                batch_size=32,
                num_examples=3,
                method="deepfool",
                norm="l2",
                xi=0.5,
                delta=0.1,
                max_passes=3,
                overshoot=0.05,
                max_iter_deepfool=20,
                keep_best_pass=True,
                sgd_step_size=0.004,
                sgd_epochs=4,
                sgd_final_step_size=0.0002,
                max_train_images=1000,
                max_test_images=500,
            ),
        ),
        "defend": (
            defend.APP,
            DefendConfig(
                run_dir=folder,
                data_dir=data_dir,
                seed=7,
                classifier=str(root / "classifier"),
                denoiser=str(root / "resnet"),
                precision="float32",
                attacks=("pgd", "apgd_dlr", "square"),
                num_images=300,
                adaptive_images=100,
                eot_images=20,
                epsilons=(1 / 255, 4 / 255, 12 / 255),
                reference_epsilon=4 / 255,
                pgd_steps=40,
                pgd_step_factor=2.0,
                randomised=False,
                randomised_sigma=0.05,
                noisy_sigma=0.08,
                eot_draws=16,
                eval_draws=3,
                targeted_epsilon=0.03,
                targeted_steps=12,
                targeted_step_size=0.004,
                universal_xi=8 / 255,
                universal_train_images=500,
                universal_epochs=3,
                universal_batch_size=64,
                universal_step_size=0.003,
                universal_final_step_size=0.0001,
                square_queries=100,
                square_images=40,
                classifier_tta=1,
                batch_size=50,
                num_examples=3,
            ),
        ),
        "compare": (
            compare.APP,
            CompareConfig(
                runs=(str(root / "plain"), str(root / "resnet"), str(root / "x")),
                run_dir=folder,
            ),
        ),
        "denoise_image": (
            denoise_image.APP,
            DenoiseImageConfig(
                model=str(root / "resnet" / "model.keras"),
                input=str(root / "photos"),
                output=str(root / "denoised"),
            ),
        ),
        "study": (
            study.APP,
            StudyConfig(
                study_dir=str(root / "study"),
                data_dir=data_dir,
                **{
                    f"{name}_flagfile": str(root / f"{name}.cfg")
                    for name in (
                        "noise",
                        "resnet",
                        "plain",
                        "classifier",
                        "fgsm",
                        "iterative",
                        "universal",
                        "universal_deepfool",
                        "universal_sweep",
                        "defend",
                    )
                },
                precision="float32",
                step_flags=("epochs=2", "max_train_images=64"),
                estimate=False,
                force=True,
                rerun=("noise", "fgsm"),
            ),
        ),
    }


APP_NAMES = [
    "noise",
    "denoise",
    "classify",
    "targeted",
    "universal",
    "defend",
    "compare",
    "denoise_image",
    "study",
]


@pytest.mark.parametrize("name", APP_NAMES)
def test_the_flag_file_of_a_run_replays_its_config(tmp_path, name):
    app, config = _replay_cases(tmp_path)[name]
    assert app.name == name
    # Every setting differs from its default, so each one is written and read
    # (but a one-off request such as --overwrite, which is never replayed).
    same = [
        field.name
        for field in dataclasses.fields(config)
        if getattr(config, field.name) == field.default
        and field.metadata.get("replayed", True)
    ]
    assert not same, f"{name}: the test config keeps the default of {same}"

    folder = str(tmp_path / "written")
    path = outputs.write_flagfile(config, name, folder=folder)
    assert path == os.path.join(folder, "flags.cfg")
    first_line = pathlib.Path(path).read_text().splitlines()[0]
    assert first_line.startswith(f"# app: {name}.")
    assert app.parse(["prog", f"--flagfile={path}"]) == config


def test_write_flagfile_writes_into_the_run_dir(tmp_path):
    config = NoiseConfig(run_dir=str(tmp_path), sigma=0.05, export=True)
    path = outputs.write_flagfile(config, "noise")
    assert path == str(tmp_path / "flags.cfg")
    lines = (tmp_path / "flags.cfg").read_text().splitlines()
    assert "--sigma=0.05" in lines and "--export" in lines
    assert noise.APP.parse(["prog", f"--flagfile={path}"]) == config
    # A flag after the flag file wins over it.
    again = noise.APP.parse(["prog", f"--flagfile={path}", "--noexport"])
    assert again == dataclasses.replace(config, export=False)


def test_overwrite_is_not_replayed_by_the_flag_file(tmp_path):
    config = NoiseConfig(run_dir=str(tmp_path), sigma=0.05, overwrite=True)
    path = outputs.write_flagfile(config, "noise")
    lines = (tmp_path / "flags.cfg").read_text().splitlines()
    assert not [
        line for line in lines if "-overwrite" in line or "-nooverwrite" in line
    ]
    replayed = noise.APP.parse(["prog", f"--flagfile={path}"])
    assert replayed == dataclasses.replace(config, overwrite=False)


# Apps whose runs write flags.cfg (a replayable record of the run).
RECORDING_APPS = ["noise", "denoise", "classify", "targeted", "universal"]


@pytest.mark.parametrize("name", RECORDING_APPS)
def test_every_file_or_folder_flag_is_recorded_as_an_absolute_path(name):
    app = _replay_cases(pathlib.Path("x"))[name][0]
    for field in dataclasses.fields(app.config):
        names_a_file = re.search(
            r"\b(folder|file|copy)\b", field.metadata["help"], re.I
        )
        if field.type in ("str", str) and names_a_file:
            assert field.metadata["path"], f"--{field.name} is not resolved"


def test_a_run_started_with_relative_paths_replays_from_any_folder(
    tiny_cifar, tmp_path, monkeypatch
):
    monkeypatch.chdir(pathlib.Path(tiny_cifar).parent.parent)  # tmp_path
    relative = os.path.relpath(tiny_cifar)
    config = noise.APP.parse(
        ["noise", f"--data_dir={relative}", "--run_dir=runs/n", "--num_examples=2"]
    )
    noise.APP.job(config, log=lambda message: None)
    lines = (tmp_path / "runs" / "n" / "flags.cfg").read_text().splitlines()
    assert f"--data_dir={tiny_cifar}" in lines
    assert f"--run_dir={tmp_path / 'runs' / 'n'}" in lines
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    replayed = noise.APP.parse(["noise", f"--flagfile={tmp_path}/runs/n/flags.cfg"])
    assert replayed.data_dir == tiny_cifar
    assert replayed.run_dir == str(tmp_path / "runs" / "n")
