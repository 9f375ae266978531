"""Packaging beyond pyproject.toml: every zoology package, found, plus the presets in configs/,
installed as the package data zoology/configs/*.yaml so that a wheel carries them."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["zoology", "zoology.*"]), "zoology.configs"],
    package_dir={"zoology.configs": "configs"},
    package_data={"zoology.configs": ["*.yaml"]},
)
