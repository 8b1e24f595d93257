"""Maps the repository's folders onto the one `soriflow` import package.

The layout shows the architecture (services/stt, gateway, ...), while imports
read naturally (soriflow.stt, soriflow.gateway). Static configuration cannot
discover sub-packages of remapped folders, so they are found here.
"""

from setuptools import find_packages, setup

SOURCE_ROOTS = {
    "soriflow": "soriflow",
    "soriflow.stt": "services/stt",
    "soriflow.scoring": "services/scoring",
    "soriflow.summarizer": "services/summarizer",
    "soriflow.tts": "services/tts",
    "soriflow.gateway": "gateway",
}

packages: list[str] = []
for package, folder in SOURCE_ROOTS.items():
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_packages(folder, exclude=["tests", "tests.*"])]

setup(packages=packages, package_dir=SOURCE_ROOTS)
