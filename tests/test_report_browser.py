"""report.html in a real browser: every figure loads, every table fits 1280 px.

Skipped where no Chromium is on PATH; CI installs Debian's `chromium` and
sets REQUIRE_BROWSER_TEST=1, which turns the skip into a failure.
"""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import plots
from cifar_denoise_adv.study.report import adversarial_sections
from cifar_denoise_adv.study.report import render
from cifar_denoise_adv.study.report import sections

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Lets the page's load event (and the probe below) run before the dump.
    "--virtual-time-budget=10000",
]
# Added to a copy of the page only (the report itself has no script): after
# load, writes how many <img> elements decoded to a real picture.
PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = "images=" + images.length + " loaded=" + loaded.length;
  document.body.appendChild(out);
});
</script>
"""


def _browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("REQUIRE_BROWSER_TEST") == "1":
        pytest.fail(f"REQUIRE_BROWSER_TEST=1 but none of {BROWSERS} is on PATH")
    pytest.skip("no Chromium on PATH (CI installs Debian's chromium)")


# After load: the page's and each table's width against the room they have,
# and the cells whose content does not fit them.
WIDTH_PROBE = """<script>
window.addEventListener("load", function () {
  var lines = ["page " + document.documentElement.scrollWidth + " " +
    document.documentElement.clientWidth];
  Array.prototype.forEach.call(document.querySelectorAll("table"), function (t) {
    var cut = Array.prototype.filter.call(t.querySelectorAll("td, th"),
      function (c) { return c.scrollWidth > c.clientWidth + 1; }).length;
    lines.push("table " + t.scrollWidth + " " + t.parentElement.clientWidth +
      " " + cut + " " + t.rows[0].cells[0].textContent);
  });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = lines.join("\\n");
  document.body.appendChild(out);
});
</script>
"""


def _probe(browser, page_html, tmp_path, name, probe, size="1280,900"):
    page = tmp_path / f"{name}.html"
    page.write_text(page_html.replace("</body>", probe + "</body>"), encoding="utf-8")
    profile = tmp_path / f"profile_{name}"
    profile.mkdir()
    result = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--window-size={size}"]
        + [f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"no probe output; stderr:\n{result.stderr[-2000:]}"
    return match.group(1)


def _loaded_images(browser, page_html, tmp_path, name):
    text = _probe(browser, page_html, tmp_path, name, PROBE)
    match = re.search(r"images=(\d+) loaded=(\d+)", text)
    return int(match.group(1)), int(match.group(2))


def _figures(folder):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, 32, 32, 3))
    outputs.save_figure(
        plots.image_grid([[images[0], images[1]]], [["a", "b"]], ["x", "y"]),
        str(folder / "grid.png"),
    )
    outputs.save_figure(
        plots.histogram({"noisy": rng.normal(20, 1, 50)}, "PSNR (dB)"),
        str(folder / "histogram.png"),
    )
    matrix = rng.integers(0, 5, size=(10, 10))
    outputs.save_figure(
        plots.confusion_matrix(matrix, [f"c{i}" for i in range(10)]),
        str(folder / "matrix.png"),
    )
    return ["grid.png", "histogram.png", "matrix.png"]


def test_every_figure_of_the_report_loads_in_chromium(tmp_path):
    browser = _browser()
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    document = [
        ("h1", "Study report"),
        ("table", ["quantity", "this study", "reference"], [["PSNR", "1", "2"]]),
        *[("figure", name, name) for name in _figures(study_dir)],
        ("figure", "absent.png", "a figure that was not written"),
    ]
    page = render.html(document, str(study_dir))
    assert _loaded_images(browser, page, tmp_path, "report") == (3, 3)

    # The probe tells a broken image from a good one.
    broken = page.replace("base64,", "base64,AAAA", 1)
    assert _loaded_images(browser, broken, tmp_path, "broken") == (3, 2)


def _denoiser(arch, recovered):
    config = {
        "arch": arch,
        "num_blocks": 12,
        "filters": 64,
        "downscale": 2,
        "epochs": 28,
        "learning_rate": 2e-3,
        "warmup_epochs": 0.85,
        "clipnorm": 1.0,
        "batch_size": 64,
        "augment": True,
        "seed": 0,
    }
    psnr = {
        "noisy": {"mean": 20.335, "std": 0.349},
        "recovered": {"mean": recovered, "std": 1.397},
        "gain": {"mean": recovered - 20.335, "std": 1.2},
    }
    return {
        "model": f"{arch}_denoiser_12x64_unshuffle2",
        "parameters": 900172,
        "epochs": 28,
        "initialised_from": None,
        "train_seconds_total": 1056.0,
        "images": {"train": 5085, "test": 768},
        "psnr_db": psnr,
        "config": config,
        "sigma": 0.1,
        "test_noise_seed": 1,
    }


def _universal(method):
    settings = {
        "norm": "linf",
        "xi": 10 / 255,
        "xi_times_255": 10.0,
        "seed": 0,
        "fooling": "prediction on clip(x + v, 0, 1) differs from that on x",
        "algorithm": "a long description of the algorithm " * 4,
        "max_passes": 5,
    }
    return {
        "method": method,
        "settings": settings,
        "images": {"train": 2000, "test": 768},
        "fooling_rate_train": 0.248,
        "fooling_rate_test": 0.421,
        "random_noise_fooling_rate_train": 0.033,
        "random_noise_fooling_rate_test": 0.188,
        "chessboard_fooling_rate_train": 0.052,
        "chessboard_fooling_rate_test": 0.214,
        "chessboard_square": 4,
        "beats_baselines_test": True,
        "v_linf": 10 / 255,
        "v_l2": 1.6543,
        "compute_seconds": 462.0,
    }


def test_every_table_of_the_report_fits_a_1280_pixel_window(tmp_path):
    browser = _browser()
    metrics = {
        "resnet": _denoiser("resnet", 28.745),
        "plain": _denoiser("plain", 23.781),
        "universal": _universal("sgd"),
        "universal_deepfool": _universal("deepfool"),
    }
    steps = {name: {"metrics": m, "figures": {}} for name, m in metrics.items()}
    flagfile = "/home/someone/venvs/cifar/lib/python3.11/site-packages/"
    study = {
        "steps": [
            {
                "step": name,
                "app": "denoise",
                "flagfile": flagfile + f"cifar_denoise_adv/flags/{name}.cfg",
                "status": "ran",
            }
            for name in steps
        ],
        "by_step": {n: dict(s, record={"seconds": 4.0}) for n, s in steps.items()},
        "invocation_seconds": 100.0,
    }
    document = (
        sections.headline(steps, study)
        + sections.denoiser_section(steps, study)
        + adversarial_sections.universal_section(steps)
        + sections.details_section(study)
    )
    lines = _probe(
        browser, render.html(document, str(tmp_path)), tmp_path, "width", WIDTH_PROBE
    ).splitlines()
    _, page_width, window_width = lines[0].split(" ")
    assert int(page_width) <= int(window_width), lines
    tables = [line.split(" ", 4) for line in lines[1:]]
    assert len(tables) == 4, lines  # headline, denoisers, universal, details
    for _, width, room, cut, first_header in tables:
        assert int(width) <= int(room), f"table '{first_header}': {lines}"
        assert cut == "0", f"table '{first_header}' has cut-off cells: {lines}"
