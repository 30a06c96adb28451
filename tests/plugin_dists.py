"""Real, throwaway distributions and interpreters for registry and CLI tests.

A directory holding ``module.py`` and ``name-version.dist-info/`` (METADATA and
entry_points.txt) is an installed distribution as far as ``importlib.metadata`` is
concerned: putting the directory on ``PYTHONPATH`` of a fresh interpreter installs it
there, with nothing patched in the interpreter under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_distribution(
    root: Path,
    name: str,
    version: str,
    modules: Mapping[str, str],
    entry_points: Mapping[str, str],
) -> Path:
    """Create distribution ``name`` under ``root``: its modules and its dist-info.

    ``modules`` maps module names to source; ``entry_points`` maps entry point names in
    the ``prefect_ds`` group to module names. Returns ``root`` (to put on PYTHONPATH).
    """
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[prefect_ds]", *(f"{ep} = {target}" for ep, target in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


def run_python(
    code: str,
    *,
    path: Iterable[Path] = (),
    python: str | Path = sys.executable,
    args: Iterable[str] = (),
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter with ``path`` first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*(str(p) for p in path), *filter(None, [env.get("PYTHONPATH")])]
    )
    result = subprocess.run(
        [str(python), "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=REPO,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def venv_without(root: Path, *missing: str) -> Path:
    """A virtual environment with this one's packages except the ``missing`` ones.

    Every entry of this environment's site-packages is linked in, except the named
    import packages and their ``*.dist-info``/``*.libs``: in the new interpreter those
    packages are genuinely not installed. Returns the new interpreter's path.
    """
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120
    )
    source = Path(sysconfig.get_paths()["purelib"])
    target = Path(
        subprocess.run(
            [str(root / "bin" / "python"), "-c",
             "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )
    for entry in source.iterdir():
        package = entry.name.split("-", 1)[0].split(".", 1)[0].lower()
        if package in missing:
            continue
        (target / entry.name).symlink_to(entry)
    return root / "bin" / "python"
