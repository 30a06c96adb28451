"""Cold start of the ``prefect-ds`` command, measured side by side in one run.

Each figure is a fresh Python process (what a user's shell starts), so module imports
are paid every time; the operating system's file cache is warm after the first run.
Compared, interleaved, medians:

* ``prefect-ds --help`` against a bare interpreter (``python -c pass``) and against
  ``import typer`` alone, the floor any typer command pays;
* ``prefect-ds formats`` (loads every format plugin, but none of pandas, pyarrow, numpy,
  h5py or SQLAlchemy: built-in formats import those on first use) against ``--help`` and
  against the bare interpreter, and ``formats --json`` against ``formats``; the heavy
  libraries a ``formats`` run did import are printed (a third-party plugin may import
  its own at load: the feather plugin imports pandas and pyarrow), so ``formats`` is also
  timed in a throwaway environment with this one's packages but no third-party plugin
  (built-ins only);
* ``import prefect_ds`` against the bare interpreter;
* with ``--against SRC`` (another checkout's ``src``, e.g. an older release), ``--help``
  against the same command run from that source, under the same load.

Bar: cold ``--help`` at most 0.15 s. On a loaded machine every figure grows; the ratios
to the bare interpreter and to ``import typer`` are the comparable numbers.

Run: ``.venv/bin/python benchmarks/cli.py [--repeat N] [--against OTHER/src]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import interleaved

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from plugin_dists import venv_without  # noqa: E402  (the tests' throwaway environments)

SRC = str(ROOT / "src")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)}
CLI = "import sys; from prefect_ds._cli import main; sys.argv[0] = 'prefect-ds'; main()"


def python(*args: str, env: dict[str, str] = ENV, interpreter: str = sys.executable) -> None:
    done = subprocess.run([interpreter, *args], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    if done.returncode not in (0,):
        raise SystemExit(f"{args} exited with {done.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--against", help="another source tree to time --help from")
    options = parser.parse_args()
    repeat = options.repeat

    def help_() -> None:
        python("-c", CLI, "--help")

    def formats() -> None:
        python("-c", CLI, "formats")

    def formats_json() -> None:
        python("-c", CLI, "formats", "--json")

    scratch = tempfile.TemporaryDirectory(prefix="prefect-ds-cli-")
    built_ins_only = str(venv_without(Path(scratch.name) / "venv", "prefect_ds_feather"))

    def formats_built_ins() -> None:
        python("-c", CLI, "formats", interpreter=built_ins_only)

    def bare() -> None:
        python("-c", "pass")

    def typer_only() -> None:
        python("-c", "import typer")

    def package() -> None:
        python("-c", "import prefect_ds")

    pairs = [
        ("prefect-ds --help", help_, "python -c pass", bare),
        ("prefect-ds --help", help_, "import typer", typer_only),
        ("import prefect_ds", package, "python -c pass", bare),
        ("prefect-ds formats", formats, "prefect-ds --help", help_),
        ("prefect-ds formats", formats, "python -c pass", bare),
        ("formats --json", formats_json, "prefect-ds formats", formats),
        ("formats (built-ins)", formats_built_ins, "prefect-ds --help", help_),
        ("formats (built-ins)", formats_built_ins, "python -c pass", bare),
    ]
    rows = []
    for name, ours_fn, against, base_fn in pairs:
        ours, base = interleaved(ours_fn, base_fn, repeat)
        rows.append((name, against, ours, base))
    if options.against:
        other = {**ENV, "PYTHONPATH": os.path.abspath(options.against)}

        def other_help() -> None:
            python("-c", CLI, "--help", env=other)

        ours, base = interleaved(help_, other_help, repeat)
        rows.append(("prefect-ds --help", "--help of --against", ours, base))

    print(f"{'ours':<22}{'baseline':<22}{'ours (s)':>10}{'base (s)':>10}{'ratio':>8}")
    for name, against, a, b in rows:
        print(f"{name:<22}{against:<22}{a:>10.3f}{b:>10.3f}{a / b:>8.2f}")
    cold_help = rows[0][2]
    print(f"\ncold --help: {cold_help:.3f} s (bar: 0.15 s) -> "
          f"{'within' if cold_help <= 0.15 else 'over'} the bar on this machine now; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for label, interpreter in (("prefect-ds formats", sys.executable),
                               ("formats (built-ins)", built_ins_only)):
        cold = next(r[2] for r in rows if r[0] == label)
        heavy = heavy_imports("formats", interpreter=interpreter)
        print(f"cold {label}: {cold:.3f} s; heavy libraries it imported: "
              f"{', '.join(heavy) or 'none'}")
    scratch.cleanup()
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


HEAVY = ("pandas", "pyarrow", "numpy", "h5py", "sqlalchemy", "polars")


def heavy_imports(*args: str, interpreter: str = sys.executable) -> list[str]:
    """The heavy libraries a ``prefect-ds ARGS`` run leaves in ``sys.modules``."""
    probe = (CLI.replace("main()", "\ntry:\n    main()\nexcept SystemExit:\n    pass\n")
             + f"print('HEAVY', *(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([interpreter, "-c", probe, *args], env=ENV, text=True,
                          capture_output=True, check=True)
    return done.stdout.strip().splitlines()[-1].split()[1:]


if __name__ == "__main__":
    main()
