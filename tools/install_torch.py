"""Install a torch in the project's range that fits this machine: CUDA only where a GPU is.

    python tools/install_torch.py [--dry-run]

PyPI serves CUDA builds of torch for Linux (several GB of NVIDIA libraries), also on
machines without a GPU. So without an NVIDIA GPU this installs a CPU build: from PyTorch's
CPU index, or else the newest CPU build in range that the configured package indexes hold
(a wheel whose requirements name no NVIDIA/CUDA package for this platform). It never
falls back to a CUDA build on a CPU-only machine: it says what to run instead.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
except ImportError:  # a fresh virtual environment: pip carries its own copy
    from pip._vendor.packaging.markers import Marker
    from pip._vendor.packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def torch_requirement() -> str:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return next(dep for dep in dependencies if Requirement(dep).name == "torch")


def has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def answers(url: str, timeout: float = 10.0) -> bool:
    """Whether a package index answers at all (pip would otherwise retry every request)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def resolve(requirement: str, *index: str) -> dict | None:
    """What pip would install for ``requirement`` (its metadata), without installing it."""
    done = pip(
        "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet", "--report", "-", requirement, *index
    )
    if done.returncode:
        return None
    return json.loads(done.stdout)["install"][0]["metadata"]


def is_cuda_build(metadata: dict) -> bool:
    """True if the wheel needs NVIDIA/CUDA packages on this platform."""
    for line in metadata.get("requires_dist", []):
        requirement = Requirement(line)
        applies = requirement.marker is None or Marker(str(requirement.marker)).evaluate({"extra": ""})
        if applies and re.match(r"(nvidia|cuda)[-_]", requirement.name):
            return True
    return False


def cpu_build_version(requirement: str) -> str | None:
    """The newest version in range that the configured indexes offer as a CPU build."""
    listed = pip("index", "versions", "torch").stdout
    versions = re.findall(r"[\d]+\.[\d]+\.[\d]+(?:\+cpu)?", listed.split("Available versions:")[-1].splitlines()[0])
    wanted = Requirement(requirement).specifier
    for version in versions:
        if (
            version.split("+")[0] in wanted
            and (metadata := resolve(f"torch=={version}"))
            and not is_cuda_build(metadata)
        ):
            return metadata["version"]
    return None


def installed_torch() -> dict | None:
    """The installed torch's metadata (version, requirements), or None."""
    try:
        found = distribution("torch")
    except PackageNotFoundError:
        return None
    return {"version": found.version, "requires_dist": found.requires or []}


def configured_sources() -> str:
    """Where pip looks unless told otherwise: its configured index, extra indexes and
    find-links (from ``pip config list``), else PyPI."""
    settings = dict(
        (key.split(".", 1)[1], value.strip("'\""))
        for key, _, value in (line.partition("=") for line in pip("config", "list").stdout.splitlines())
        if key.split(".", 1)[-1] in ("index-url", "extra-index-url", "find-links")
    )
    sources = [f"index {settings.get('index-url', 'https://pypi.org/simple')}"]
    sources += [f"extra index {url}" for url in settings.get("extra-index-url", "").split()]
    sources += [f"find-links {path}" for path in settings.get("find-links", "").split()]
    return ", ".join(sources)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="say what would be installed")
    args = parser.parse_args()
    requirement = torch_requirement()
    gpu = has_nvidia_gpu()
    if (installed := installed_torch()) and Requirement(requirement).specifier.contains(
        installed["version"].split("+")[0]
    ):
        if gpu or not is_cuda_build(installed):
            kind = "a CUDA build" if is_cuda_build(installed) else "a CPU build"
            print(f"torch {installed['version']} ({kind}) is installed and within {requirement}: nothing to do")
            return 0
    if gpu:
        command = [requirement]
    elif (
        (reachable := answers(CPU_INDEX + "/torch/"))
        and (metadata := resolve(requirement, "--index-url", CPU_INDEX))
        and not is_cuda_build(metadata)
    ):
        # The exact CPU build from PyTorch's index; its dependencies from pip's own sources.
        command = [f"torch=={metadata['version']}", "--extra-index-url", CPU_INDEX]
    elif version := cpu_build_version(requirement):
        command = [f"torch=={version}"]
        where = "did not answer" if not reachable else "has no CPU build in range"
        print(f"({CPU_INDEX} {where}; a CPU build from pip's configured sources: {configured_sources()})")
    else:
        print(
            f"No CPU build of {requirement} is reachable ({CPU_INDEX} did not answer) and this machine has no NVIDIA "
            "GPU, so a CUDA build (several GB) would be useless here. Install a CPU build yourself, e.g.\n"
            f'    pip install "{requirement}" --index-url {CPU_INDEX}',
            file=sys.stderr,
        )
        return 1
    print("pip install " + " ".join(command))
    if args.dry_run:
        return 0
    installed = subprocess.run([sys.executable, "-m", "pip", "install", *command])  # pip's progress shows
    if installed.returncode:
        failed = f"pip could not install {command[0]} (exit {installed.returncode}; see its messages above)"
        print(failed, file=sys.stderr)
    return installed.returncode


if __name__ == "__main__":
    sys.exit(main())
