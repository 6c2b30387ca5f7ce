"""Installs cifar_denoise_adv; metadata and dependencies live in setup.cfg.

The experiment flag files live in the checkout's top-level `flags/` folder
(where the README's commands name them); they are installed as the package
data folder `cifar_denoise_adv/flags/`, where `core.apps` finds them by name
(`--flagfile=resnet.cfg`) from any folder.
"""

import setuptools

setuptools.setup(
    packages=[
        *setuptools.find_packages(include=["cifar_denoise_adv", "cifar_denoise_adv.*"]),
        "cifar_denoise_adv.flags",
    ],
    package_dir={"cifar_denoise_adv.flags": "flags"},
    package_data={"cifar_denoise_adv.flags": ["*.cfg"]},
)
