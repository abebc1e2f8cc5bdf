"""`caitool --help` wall time (fresh process each time, median) and proof that it imports no heavy library."""

from __future__ import annotations

import subprocess
import sys

from _common import Report, Settings, caitool_env, interleave, median, timed

HEAVY = ("torch", "transformers", "trl", "datasets", "peft", "openai", "matplotlib", "accelerate")
TARGET_SECONDS = 0.5


def help_seconds() -> float:
    command = [sys.executable, "-m", "caitool", "--help"]
    seconds, result = timed(
        lambda: subprocess.run(command, env=caitool_env(), capture_output=True, check=True)
    )
    return round(seconds, 4)


def heavy_imports() -> list[str]:
    """Top-level packages imported by `caitool --help`, from the interpreter's own import log."""
    command = [sys.executable, "-X", "importtime", "-m", "caitool", "--help"]
    log = subprocess.run(command, env=caitool_env(), capture_output=True, text=True, check=True).stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in log.splitlines() if "|" in line}
    return sorted(imported & set(HEAVY))


def main() -> None:
    settings = Settings.from_env(repeats=9)
    report = Report("help", settings={"repeats": max(settings.repeats, 3)})
    help_seconds()  # warm the file cache and .pyc files
    samples = interleave({"help": help_seconds}, max(settings.repeats, 3))["help"]
    heavy = heavy_imports()
    report.samples = {"seconds": samples, "heavy_imports": heavy}
    wall = median(samples)
    report.figure("caitool --help wall (median)", wall, "s", f"<= {TARGET_SECONDS}", wall <= TARGET_SECONDS)
    report.figure("heavy libraries imported by --help", len(heavy), "modules", "0", not heavy)
    print(report.write())


if __name__ == "__main__":
    main()
