"""A small data-science pipeline on Prefect 3 with prefect-ds, run twice.

Per region: synthetic raw sales -> cleaned -> daily features -> a fitted demand model
(log-linear least squares: price elasticity, promotion lift, weather and weekend effects).
The four steps are checkpointed tasks mapped over the regions, each stored in a different
format under ``examples/output/``. The first run computes everything; the second finds
every result on disk and loads it. A summary of both runs is printed at the end.

    python examples/demo.py            # from the repository root (or: make demo)
    python examples/demo.py --keep     # keep earlier outputs: both runs then load

Runs offline: Prefect uses a throw-away home and its own ephemeral server.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = Path("examples/output")
REGIONS = ["north", "south", "east", "west"]

# Before Prefect is imported: offline, quiet, and no state left in the user's home.
if "PREFECT_HOME" not in os.environ:
    _home = tempfile.mkdtemp(prefix="prefect-ds-demo-home-")
    os.environ["PREFECT_HOME"] = _home
    atexit.register(shutil.rmtree, _home, True)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
# The local server can log harmless tracebacks while it is stopped at exit.
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402

import prefect_ds  # noqa: E402
from prefect_ds import available_formats, checkpoint_task  # noqa: E402


def location(preferred: str, fallback: str, fmt: str) -> str:
    """``preferred`` when its format is installed, else a Parquet ``fallback``."""
    return preferred if fmt in available_formats() else fallback


RAW = str(OUTPUT / "raw" / "sales_{region}.parquet")
CLEAN = location(str(OUTPUT / "clean.h5#sales/{region}"),
                 str(OUTPUT / "clean" / "sales_{region}.parquet"), "hdf")
FEATURES = str(OUTPUT / "features" / "daily_{region}.csv")
SUMMARY = location(f"sqlite:///{OUTPUT / 'demo.db'}#summary_{{region}}",
                   str(OUTPUT / "summary" / "summary_{region}.parquet"), "sql")

TRUE_EFFECTS = {  # what the fit should recover, per region: elasticity, promo lift
    "north": (-1.2, 0.30), "south": (-0.8, 0.45), "east": (-1.5, 0.20), "west": (-1.0, 0.35),
}


@checkpoint_task(RAW)
def raw_sales(region: str, days: int = 730, stores: int = 60) -> pd.DataFrame:
    """Synthetic till records: a few rows per store and day, with the usual dirt."""
    seed = sum(map(ord, region))
    rng = np.random.default_rng(seed)
    elasticity, lift = TRUE_EFFECTS[region]
    rows = days * stores * 6
    day = rng.integers(0, days, rows)
    date = pd.Timestamp("2024-01-01") + pd.to_timedelta(day, unit="D")
    store = rng.integers(0, stores, rows)
    base_price = 2.0 + (store % 7) * 0.35
    price = base_price * rng.lognormal(0.0, 0.12, rows)
    promo = rng.random(rows) < 0.15
    temperature = 12 + 10 * np.sin(2 * np.pi * day / 365.25) + rng.normal(0, 3, rows)
    weekend = (date.day_of_week >= 5).astype(float)
    rate = np.exp(1.5 + elasticity * np.log(price) + lift * promo + 0.02 * temperature
                  + 0.25 * weekend)
    units = rng.poisson(rate).astype(float)
    units[rng.random(rows) < 0.01] *= -1  # returns booked as negative sales
    price[rng.random(rows) < 0.005] = np.nan  # scanner failures
    price[rng.random(rows) < 0.001] *= 100  # typos
    return pd.DataFrame({
        "date": date, "store": pd.Categorical([f"{region[0]}{s:02d}" for s in store]),
        "price": price, "promo": promo, "temperature": temperature, "units": units,
    })


@checkpoint_task(CLEAN)
def clean(raw: pd.DataFrame, region: str) -> pd.DataFrame:
    """Drop returns, missing and implausible prices, and exact duplicates."""
    median = raw.groupby("store", observed=True)["price"].transform("median")
    ok = (raw["units"] >= 0) & raw["price"].notna() & (raw["price"] < 5 * median)
    return raw[ok].drop_duplicates().reset_index(drop=True)


@checkpoint_task(FEATURES)
def features(cleaned: pd.DataFrame, region: str) -> pd.DataFrame:
    """One row per store and day: sales, mean price, promotion share, weather, weekend."""
    daily = (
        cleaned.groupby(["store", "date"], observed=True)
        .agg(units=("units", "sum"), price=("price", "mean"), promo=("promo", "mean"),
             temperature=("temperature", "mean"))
        .reset_index()
    )
    daily["log_units"] = np.log1p(daily["units"])
    daily["log_price"] = np.log(daily["price"])
    daily["weekend"] = (daily["date"].dt.day_of_week >= 5).astype("int8")
    return daily


@checkpoint_task(SUMMARY)
def fit(daily: pd.DataFrame, region: str) -> pd.DataFrame:
    """Least squares of log sales on log price, promotion, temperature and weekend."""
    names = ["log_price", "promo", "temperature", "weekend"]
    x = np.column_stack([np.ones(len(daily)), daily[names].to_numpy(float)])
    y = daily["log_units"].to_numpy(float)
    coef, residuals, *_ = np.linalg.lstsq(x, y, rcond=None)
    r2 = 1 - float(residuals[0]) / float(((y - y.mean()) ** 2).sum())
    return pd.DataFrame({
        "region": [region], "elasticity": [coef[1]], "promo_effect": [coef[2]],
        "temperature_effect": [coef[3]], "weekend_effect": [coef[4]], "r2": [r2],
        "store_days": [len(daily)],
    })


@task
def report(summaries: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(summaries, ignore_index=True).set_index("region")


def _task_runner() -> Any:
    """prefect-ds's memory-releasing runner when this version has it."""
    runner = getattr(prefect_ds, "DSTaskRunner", None)
    return runner() if runner is not None else None


@flow(name="regional-demand", task_runner=_task_runner())
def regional_demand(regions: list[str]) -> dict[str, Any]:
    raw = raw_sales.map(regions)
    cleaned = clean.map(raw, regions)
    daily = features.map(cleaned, regions)
    fitted = fit.map(daily, regions)
    summary = report(fitted)
    futures = [*raw, *cleaned, *daily, *fitted]
    for future in futures:
        future.wait()
    return {"summary": summary, "states": [f.state for f in futures]}


# -- measuring -----------------------------------------------------------------------------


def _reset_peak() -> bool:
    """Start a new peak-memory window (Linux); False where the OS cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_mb(reset_worked: bool) -> str:
    if reset_worked:
        with open("/proc/self/status") as handle:
            found = re.search(r"VmHWM:\s+(\d+) kB", handle.read())
        if found:
            return f"{int(found.group(1)) / 1024:,.0f}"
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    return f"{peak:,.0f} (process)"


def run_once(label: str) -> dict[str, Any]:
    reset = _reset_peak()
    start = time.perf_counter()
    result = regional_demand(REGIONS)
    seconds = time.perf_counter() - start
    names = [state.name for state in result["states"]]
    return {
        "run": label,
        "task runs": len(names),
        "computed": names.count("Completed"),
        "loaded": names.count("Cached"),
        "seconds": f"{seconds:.1f}",
        "peak MB": _peak_mb(reset),
        "summary": result["summary"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="keep examples/output from earlier runs")
    args = parser.parse_args()
    os.chdir(ROOT)
    if not args.keep:
        shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    runner = "DSTaskRunner" if getattr(prefect_ds, "DSTaskRunner", None) else "ThreadPoolTaskRunner"
    print(f"prefect-ds demo: {len(REGIONS)} regions x 4 checkpointed steps, task runner {runner}")
    for step, where in [("raw", RAW), ("clean", CLEAN), ("features", FEATURES),
                        ("fit", SUMMARY)]:
        print(f"  {step:<9} -> {where}")
    print("Starting Prefect's local server ...", end=" ", flush=True)
    start = time.perf_counter()
    with get_client(sync_client=True) as client:
        client.api_healthcheck()
    print(f"ready in {time.perf_counter() - start:.1f} s. Running the flow twice ...", flush=True)

    runs = [run_once("1st"), run_once("2nd")]
    pd.testing.assert_frame_equal(runs[0]["summary"], runs[1]["summary"], check_dtype=False)

    print("\nFitted demand model per region (true elasticity / promotion lift in brackets):")
    summary = runs[1]["summary"].copy()
    summary.insert(1, "true", [f"[{TRUE_EFFECTS[r][0]:+.2f} / {TRUE_EFFECTS[r][1]:.2f}]"
                               for r in summary.index])
    with pd.option_context("display.float_format", "{:+.3f}".format, "display.width", 120):
        print(summary.to_string())

    table = pd.DataFrame([{k: v for k, v in run.items() if k != "summary"} for run in runs])
    print("\nBoth runs (seconds include about 1 s of Prefect's own flow overhead):")
    print(table.to_string(index=False))
    files = sorted(p for p in OUTPUT.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files) / 2**20
    print(f"\n{len(files)} files, {size:.1f} MB under {OUTPUT}/ - open them with any tool.")


if __name__ == "__main__":
    main()
