"""The package's layout, which pyproject.toml cannot say alone: the checkout's top-level
`conf/` (the Hydra configs, where the project keeps them) ships inside the package as
`rasp_hydra/conf/`, so a wheel or an sdist installs configs that `rasp_hydra.cli.entry`
finds; an editable install reads the checkout's `conf/` itself. Everything else about the
package is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    # hydra_plugins/ is a namespace package: Hydra discovers plugins below it
    packages=[*find_namespace_packages(include=["rasp_hydra*", "hydra_plugins*"],
                                       exclude=["*.__pycache__"]), "rasp_hydra.conf"],
    package_dir={"rasp_hydra.conf": "conf"},
    package_data={"rasp_hydra.rasp": ["*.rasp", "programs/*.rasp"],
                  "rasp_hydra.conf": ["*.yaml", "**/*.yaml"]},
)
