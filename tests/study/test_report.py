"""The study report: its formatters, sections and reference notes, with literal text."""

from cifar_denoise_adv.study.report import adversarial_sections
from cifar_denoise_adv.study.report import references
from cifar_denoise_adv.study.report import render
from cifar_denoise_adv.study.report import sections
from cifar_denoise_adv.study.report import text


def test_formatters():
    assert text.db({"mean": 28.43, "std": 1.27}) == "28.430 ± 1.270 dB"
    assert text.db({"mean": None}) == "n/a" and text.db(None) == "n/a"
    assert text.percent(0.6517) == "65.17%"
    assert text.percent(1.0) == "100.00%" and text.percent(None) == "n/a"
    assert text.sizes({"train": 5085, "test": 768}) == "5085 train / 768 test"
    assert text.sizes(400) == "400"
    assert text.duration(90.0) == "1.5 min" and text.duration(None) == "n/a"
    # Short steps in seconds, not "0.0" minutes.
    assert text.duration(2.04) == "2.0 s" and text.duration(42.4) == "42 s"
    assert text.duration(59.7) == "1.0 min"


def test_reference_notes_agree_or_say_why():
    noise_metrics = {
        "psnr_xy_db": {
            "test": {
                "clipped": {"mean": 20.33, "std": 0.35},
                "unclipped": {"mean": 19.999, "std": 0.108},
            }
        },
        "sigma_used": 0.1,
        "images": {"train": 50000, "test": 10000},
    }
    assert references.noise_reference_note(noise_metrics, clipped=False).startswith(
        "agrees"
    )
    assert references.noise_reference_note(noise_metrics, clipped=True).startswith(
        "clipping:"
    )
    config = {
        "arch": "resnet",
        "num_blocks": 8,
        "filters": 64,
        "downscale": 1,
        "epochs": 100,
        "learning_rate": 1e-3,
        "warmup_epochs": 0.5,
        "clipnorm": 1.0,
        "batch_size": 64,
        "augment": True,
        "seed": 0,
    }
    denoiser = {
        "config": config,
        "images": {"train": 50000, "test": 10000},
        "sigma": 0.1,
        "psnr_db": {"recovered": {"mean": 28.40}, "noisy": {"mean": 19.99}},
        "parameters": 10,
        "test_noise_seed": 1,
        "initialised_from": {"run": "/r/a", "epochs": 28, "train_seconds": 1800},
    }
    assert references.denoiser_reference_note("resnet", denoiser).startswith("agrees")
    denoiser["config"] = dict(config, epochs=28)
    denoiser["psnr_db"]["recovered"]["mean"] = 27.9
    assert "budget: 8 blocks x 64" in references.denoiser_reference_note(
        "resnet", denoiser
    )
    assert "(--init_from: 28 earlier epochs, 30.0 min)" in (
        sections.denoiser_settings(denoiser)
    )
    universal = {
        "method": "deepfool",
        "settings": {"norm": "linf", "xi_times_255": 10.0},
        "images": {"train": 50000, "test": 10000},
        "fooling_rate_train": 0.66,
        "fooling_rate_test": 0.80,
    }
    # The reference's 65.17% is a training-set rate: the note compares it
    # with ours on the training images, not with the test-set rate.
    assert references.universal_reference_note(universal, None).startswith("agrees")
    universal["fooling_rate_train"] = 0.40
    assert "budget: linf xi = 10/255" in references.universal_reference_note(
        universal, None
    )
    # Attacks on the network without the exported TTA say which accuracy.
    classifier = {
        "test_accuracy": 0.8281,
        "test_accuracy_without_tta": 0.8086,
        "epochs": 60,
        "images": {"train": 5085},
    }
    universal["classifier_tta"] = {"exported": 2, "used": 0}
    assert (
        "classifier: ours has 82.81% test accuracy (the attacked network, without "
        "its test-time augmentation: 80.86%), trained 60 epochs on 5085 images"
    ) in references.universal_reference_note(universal, classifier)
    universal["classifier_tta"] = {"exported": 2, "used": 2}
    assert (
        "classifier: ours has 82.81% test accuracy, trained 60 epochs"
    ) in references.universal_reference_note(universal, classifier)


def test_sweep_table_and_minutes_count_reused_runs():
    sweep = {
        "xi": [2 / 255, 8 / 255],
        "norm": "linf",
        "level": 0.6517,
        "deepfool": {
            "train": [0.0, 0.5],
            "test": [0.1, 0.6],
            "seconds": [120.0, 60.0],
            "xi_reaching_level_train": None,
        },
        "sgd": {
            "train": [0.2, 0.9],
            "test": [0.3, 0.8],
            "seconds": [30.0, 30.0],
            "xi_reaching_level_train": 6 / 255,
        },
        "random": {"train": [0.0, 0.01], "test": [0.02, 0.1]},
        "chessboard": {"train": [0.03, 0.2], "test": [0.04, 0.25]},
    }
    kind, header, rows = adversarial_sections.sweep_table(sweep)
    assert kind == "table" and header == ["linf xi x 255", "2", "8"]
    assert ["sgd, train", "20.00%", "90.00%"] in rows
    assert ["random signs, test", "2.00%", "10.00%"] in rows
    assert ["chessboard, train", "3.00%", "20.00%"] in rows
    assert ["deepfool, time", "2.0 min", "1.0 min"] in rows
    # The runs table counts the sweep's reused runs (sweep.json's
    # compute_seconds: 240 s), not the few seconds its last invocation took.
    sweep["compute_seconds"] = 240.0
    study = {
        "steps": [
            {
                "step": "universal_sweep",
                "app": "universal",
                "flagfile": "f.cfg",
                "status": "skipped",
            }
        ],
        "by_step": {"universal_sweep": {"record": {"seconds": 3.0}, "metrics": sweep}},
        "invocation_seconds": 3.0,
    }
    _, (_, _, rows), (_, items) = sections.details_section(study)
    assert rows[0][0] == "universal_sweep" and rows[0][-1] == "4.0 min"
    assert "Total minutes of the steps (their last runs): 4.0; " in " ".join(items)
    text = adversarial_sections.sweep_budgets(sweep)
    assert "deepfool not within xi <= 8/255" in text and "sgd at xi = 6.00/255" in text
    # Best baseline per xi: max(2%, 4%) = 4%, max(10%, 25%) = 25%; deepfool
    # 10% - 4% and 60% - 25%, sgd 30% - 4% and 80% - 25%.
    assert adversarial_sections.sweep_margin(sweep) == (
        "Beating the better of random signs and the chessboard by at least 10 "
        "points on the unseen test images: deepfool at 8/255; sgd at 2/255, "
        "8/255 (of xi x 255 = 2, 8)."
    )
    assert "deepfool at no xi; sgd at no xi" in adversarial_sections.sweep_margin(
        sweep, margin=0.6
    )
    sweep["images"] = {"train": 1000, "test": 768}
    assert adversarial_sections.sweep_budgets(sweep).startswith(
        "Sweep (v computed on 1000 training images; rates also on 768 test images):"
    )


def test_a_resumed_training_step_shows_the_minutes_of_all_its_pieces():
    # Killed and resumed in its last epoch: the study's record of the step
    # has the last piece's 30 s; its metrics the 600 s of every epoch.
    study = {
        "steps": [
            {"step": "classifier", "app": "classify", "flagfile": "c.cfg"}
            | {"status": "resumed"}
        ],
        "by_step": {
            "classifier": {
                "record": {"seconds": 30.0},
                "metrics": {"train_seconds_total": 600.0},
            }
        },
        "invocation_seconds": 30.0,
    }
    _, (_, _, rows), _ = sections.details_section(study)
    assert rows[0][0] == "classifier" and rows[0][-1] == "10.0 min"


def _steps():
    """Metrics of a study with a noise step, a classifier and two attacks."""
    return {
        "noise": {
            "metrics": {
                "images": {"train": 5085, "test": 768},
                "sigma_used": 0.1,
                "psnr_xy_db": {
                    "test": {
                        "clipped": {"mean": 20.33, "std": 0.35},
                        "unclipped": {"mean": 19.999, "std": 0.108},
                    }
                },
            }
        },
        "classifier": {
            "metrics": {
                "images": {"train": 4585, "validation": 500, "test": 768},
                "test_accuracy": 0.763,
                "validation_accuracy": 0.75,
                "train_accuracy": 0.998,
                "epochs": 80,
            }
        },
        "fgsm": {
            "metrics": {
                "method": "fgsm",
                "settings": {"epsilon": 0.02},
                "images": 400,
                "targeted_success_rate": 0.4125,
            }
        },
        "universal_deepfool": {
            "metrics": {
                "method": "deepfool",
                "settings": {"norm": "linf", "xi_times_255": 10.0},
                "images": {"train": 2000, "test": 768},
                "fooling_rate_train": 0.6,
                "fooling_rate_test": 0.55,
                "random_noise_fooling_rate_test": 0.19,
                "chessboard_fooling_rate_test": 0.6,
                "beats_baselines_test": False,
            }
        },
    }


def test_headline_rows_in_literal_text():
    (_, heading), (kind, header, rows) = sections.headline(_steps(), {})
    assert (heading, kind) == ("Headline", "table")
    assert header == [
        "quantity",
        "this study",
        "reference (original study)",
        "why they differ",
    ]
    assert rows == [
        [
            "noisy PSNR(x, y), sigma 0.1, clipped, 768 test images",
            "20.330 ± 0.350 dB",
            "19.997 ± 0.110 dB",
            "clipping: y is clipped to [0, 1], which removes noise at dark and "
            "bright pixels and raises the PSNR; the reference matches our "
            "unclipped figure (19.999 dB); data size: 768 test images "
            "(reference: full CIFAR-10, 50000 / 10000)",
        ],
        [
            "noisy PSNR(x, y), sigma 0.1, unclipped, 768 test images",
            "19.999 ± 0.108 dB",
            "19.997 ± 0.110 dB",
            "agrees (within 0.05)",
        ],
        [
            "classifier accuracy on 768 test images (validation 500, training 4585)",
            "76.30% (75.00%, 99.80%)",
            "not reported",
            "",
        ],
        ["targeted fgsm success, eps 0.02, 400 images", "41.25%", "not reported", ""],
        [
            "universal (deepfool) fooling rate on 768 unseen test images (on the "
            "2000 training images v was computed on)",
            "55.00% (60.00%)",
            "65.17% (training set)",
            "same norm, test images: random signs 19.00%, chessboard 60.00% (NOT "
            "beaten); training images against the reference's training-set rate: "
            "budget: linf xi = 10/255 (the reference's xi is not recorded here; "
            "the rate grows with xi); classifier: ours has 76.30% test accuracy, "
            "trained 80 epochs on 4585 images; data size: 2000 train / 768 test "
            "images (reference: full CIFAR-10, 50000 / 10000)",
        ],
    ]


def test_markdown_rendering_in_literal_text():
    document = [
        ("h2", "Title"),
        ("p", "x | y"),
        ("list", ["one", "two"]),
        ("table", ["a", "b"], [["1", "2|3"]]),
        ("figure", "step/f.png", "caption"),
    ]
    assert render.markdown(document) == (
        "## Title\n\nx | y\n\n- one\n- two\n\n| a | b |\n| --- | --- |\n"
        "| 1 | 2\\|3 |\n\n![caption](step/f.png)\n\n*caption*\n"
    )


def test_html_escapes_text_and_marks_missing_figures(tmp_path):
    page = render.html(
        [("p", "a < b & c"), ("figure", "none.png", "cap"), ("table", ["h"], [["1%"]])],
        str(tmp_path),
        title="T <1>",
    )
    assert "<p>a &lt; b &amp; c</p>" in page
    assert '<p class="missing">figure missing: none.png</p>' in page
    assert '<td class="number">1%</td>' in page
    assert "<title>T &lt;1&gt;</title>" in page


def test_a_classifier_trained_without_a_validation_split_says_so():
    steps = _steps()
    metrics = steps["classifier"]["metrics"]
    metrics["images"] = {"train": 5085, "validation": 0, "test": 768}
    del metrics["validation_accuracy"]
    _, (_, _, rows) = sections.headline(steps, {})
    row = next(r for r in rows if r[0].startswith("classifier accuracy"))
    assert row == [
        "classifier accuracy on 768 test images (validation 0, training 5085)",
        "76.30% (n/a, 99.80%)",
        "not reported",
        "no validation split: this run trains on every training image, with a "
        "recipe chosen on a split (its flag file says where)",
    ]


def _classifier_step(**config):
    return {
        "figures": {},
        "metrics": {
            "model": "airbench_classifier_tta2",
            "parameters": 1973944,
            "images": {"train": 4585, "validation": 500, "test": 768},
            "test_accuracy": 0.832,
            "test_accuracy_without_tta": 0.806,
            "validation_accuracy": 0.858,
            "train_accuracy": 1.0,
            "per_class_accuracy": {"cat": 0.7},
            "train_seconds_total": 1340.0,
            "config": {
                "arch": "airbench",
                "width": 64,
                "depth": 2,
                "momentum": 0.85,
                "weight_decay": 1.33e-3,
                "learning_rate": 0.375,
                "warmup_epochs": 2.0,
                "schedule": "triangle",
                "lookahead": True,
                "label_smoothing": 0.2,
                "batch_size": 256,
                "epochs": 60,
                "augment": True,
                "translate": 2,
                "cutout": 0,
                "cutmix": 0.5,
                "tta": 2,
                "precision": "mixed_bfloat16",
                "seed": 0,
                **config,
            },
        },
    }


def test_classifier_section_describes_the_recipe_that_ran():
    blocks = adversarial_sections.classifier_section(_classifier_step())
    assert blocks[1] == (
        "p",
        "What was done: airbench_classifier_tta2 (width 64, depth 2, 1,973,944 "
        "parameters, logits output); SGD Nesterov momentum 0.85, weight decay "
        "0.00133, a triangular schedule peaking at 0.375 (airbench: 0.2 of the "
        "peak rising to the peak at 23% of the steps, then falling to 0.07), "
        "lookahead weight averaging, label smoothing 0.2, batch 256, 60 epochs, "
        "augmentation: translation by up to 2 pixels and flips, CutMix on "
        "50.00% of the batches, precision mixed_bfloat16, seed 0; 4585 training "
        "images (500 held out for validation), 768 test images evaluated once "
        "at the end; 22.3 min of training.",
    )
    assert blocks[2][2] == [
        [
            "test accuracy (768 test images, test-time augmentation level 2)",
            "83.20%",
            "not reported",
        ],
        [
            "test accuracy, the network alone (no test-time augmentation)",
            "80.60%",
            "not reported",
        ],
        [
            "validation accuracy (500 held-out training images)",
            "85.80%",
            "not reported",
        ],
        ["training accuracy (4585 images)", "100.00%", "not reported"],
    ]
    cosine = adversarial_sections.classifier_section(
        _classifier_step(schedule="cosine", lookahead=False, cutmix=0.0, cutout=8)
    )
    assert (
        "peak learning rate 0.375 after 2 warm-up epochs, then cosine decay, "
        "label smoothing 0.2, batch 256, 60 epochs, augmentation: translation by "
        "up to 2 pixels and flips, 8x8 cutout, precision" in cosine[1][1]
    )


def test_classifier_section_has_a_stability_row_per_model():
    step = _classifier_step(noise_augment=0.1)
    figures = {
        "images": 768,
        "accuracy": 0.832,
        "signs_changed": {"4/255": 0.05, "10/255": 0.2},
        "signs_accuracy": {"4/255": 0.8, "10/255": 0.7},
        "gaussian_accuracy": {"0.02": 0.8, "0.05": 0.6},
    }
    step["metrics"]["stability"] = {
        "test": {"exported": figures, "network": {**figures, "images": 768}}
    }
    blocks = adversarial_sections.classifier_section(step)
    assert "Gaussian noise of std uniform in [0, 0.1]" in blocks[1][1]
    rows = [r for r in blocks[2][2] if r[0].startswith("stability")]
    assert rows[0] == [
        "stability, exported model (768 test images): random signs / Gaussian noise",
        "4/255: 5.00% changed, 10/255: 20.00% changed; sigma 0.02: 80.00% "
        "accurate, sigma 0.05: 60.00% accurate",
        "not reported",
    ]
    assert rows[1][0].startswith("stability, network alone")
    # A run from before the figure existed: no stability row, no error.
    assert not any(
        r[0].startswith("stability")
        for r in adversarial_sections.classifier_section(_classifier_step())[2][2]
    )
