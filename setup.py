"""Installs cifar_denoise_adv; metadata and dependencies live in setup.cfg."""

import setuptools

setuptools.setup()
