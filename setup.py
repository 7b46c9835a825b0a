"""Package discovery for the wheel the pipeline image installs.

The repository's top-level `pipeline/` and `components/` folders install as `vocdet.pipeline` and
`vocdet.components` (`vocdet` is a namespace, so nothing generic lands in site-packages). setuptools'
`[tool.setuptools.packages.find]` cannot add that prefix, so the packages are found here, with
`find_packages`, instead of listed: a package added later is in the wheel without anyone naming it
(tests/test_wheel.py installs the wheel without the source tree and imports every module).
"""

from setuptools import find_packages, setup

ROOTS = {"vocdet.pipeline": "pipeline", "vocdet.components": "components"}

setup(
    package_dir=ROOTS,
    packages=[
        f"{name}.{sub}" if sub else name
        for name, folder in ROOTS.items()
        for sub in [""] + find_packages(where=folder)
    ],
)
