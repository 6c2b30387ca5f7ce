"""report.html in a real browser: headless Chromium loads every embedded figure.

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
from cifar_denoise_adv.study.report import render

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


def _loaded_images(browser, page_html, tmp_path, name):
    page = tmp_path / f"{name}.html"
    page.write_text(page_html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    profile = tmp_path / f"profile_{name}"
    profile.mkdir()
    result = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom"]
        + [page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    match = re.search(r"images=(\d+) loaded=(\d+)", result.stdout)
    assert match, f"no probe output; stderr:\n{result.stderr[-2000:]}"
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
