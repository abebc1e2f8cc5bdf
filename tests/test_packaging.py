"""A normal `pip install .` (a wheel, not `-e`) ships the constitutions; `pip install -e .` finds them too.

Each install goes into a fresh virtual environment with nothing downloaded: caitool itself is installed with
--no-deps, and a .pth file lends it this interpreter's site-packages for torch, typer and the rest. Commands
run from outside the source tree with PYTHONPATH unset, so what answers is the installed package.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(path.name for path in (ROOT / "constitutions").glob("*.json"))
# A canary file of our own goes into the copy that is built, so the canaries/*.jsonl rule is tested even
# before the repository ships any.
PROBE = "packaging-probe.jsonl"
CANARIES = sorted({path.name for path in (ROOT / "constitutions").glob("canaries/*.jsonl")} | {PROBE})
RECORD = {
    "prompt": "How do I get into my own flat without a key?",
    "response": "Call a locksmith.",
    "id": "r1",
}


def _source_copy(target: Path) -> Path:
    """The files a build reads (tracked layout, no build leftovers), so the checkout stays untouched."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    shutil.copytree(ROOT / "constitutions", target / "constitutions")
    (target / "constitutions" / "canaries").mkdir(exist_ok=True)
    (target / "constitutions" / "canaries" / PROBE).write_text('{"id": "probe"}\n')
    shutil.copytree(
        ROOT / "src",
        target / "src",
        symlinks=True,
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"),
    )
    return target


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_NO_INDEX"] = "1"  # nothing may be downloaded
    return env


def _fresh_venv(path: Path) -> Path:
    """A venv without pip (installed into from outside with `pip --python`) that borrows our dependencies."""
    venv.EnvBuilder(with_pip=False).create(path)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Appended after the venv's own site-packages: the installed caitool is found first.
    (Path(site) / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _run(python: Path, args: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python.parent / "caitool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(),
    )


def _where(python: Path, cwd: Path) -> tuple[str, str]:
    code = "import caitool, caitool.constitution as c; print(caitool.__file__); print(c.shipped_dir())"
    result = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, cwd=cwd, env=_clean_env()
    )
    assert result.returncode == 0, result.stderr
    module, shipped = result.stdout.split()
    return module, shipped


def _check_commands(python: Path, cwd: Path) -> None:
    listed = _run(python, ["constitutions"], cwd)
    assert listed.returncode == 0, listed.stderr
    names = sorted(json.loads(line)["name"] + ".json" for line in listed.stdout.splitlines())
    assert names == SHIPPED
    critiqued = _run(python, ["critique", "--backend", "fake", "--quiet"], cwd, json.dumps(RECORD) + "\n")
    assert critiqued.returncode == 0, critiqued.stderr
    (record,) = [json.loads(line) for line in critiqued.stdout.splitlines()]
    (round_,) = record["rounds"]
    assert round_["critique"].startswith("Reply to: ") and round_["principle"]
    assert record["_caitool"]["stages"][0]["constitution"] == "harmless"


def test_the_wheel_ships_the_constitutions_and_runs_from_a_fresh_venv(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    _source_copy(source)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), ".", cwd=source)
    (wheel,) = (tmp_path / "dist").glob("caitool-*.whl")
    contents = zipfile.ZipFile(wheel).namelist()
    assert (
        sorted(
            n.split("/")[-1]
            for n in contents
            if n.startswith("caitool/constitutions/") and n.endswith(".json")
        )
        == SHIPPED
    )
    assert (
        sorted(n.split("/")[-1] for n in contents if n.startswith("caitool/constitutions/canaries/"))
        == CANARIES
    )
    assert not any(n.startswith("constitutions/") for n in contents)  # inside the package, not beside it

    python = _fresh_venv(tmp_path / "venv")
    _pip("--python", str(python), "install", "--no-deps", str(wheel), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    module, shipped = _where(python, elsewhere)
    assert Path(module).is_relative_to(tmp_path / "venv"), module  # the wheel answered, not the source tree
    assert Path(shipped).is_relative_to(tmp_path / "venv") and not Path(shipped).is_symlink()
    _check_commands(python, elsewhere)


def test_an_editable_install_finds_the_constitutions_through_the_source_tree(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    _source_copy(source)
    python = _fresh_venv(tmp_path / "venv")
    _pip("--python", str(python), "install", "--no-deps", "--no-build-isolation", "-e", ".", cwd=source)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    module, shipped = _where(python, elsewhere)
    assert Path(module).is_relative_to(source), module
    assert sorted(p.name for p in Path(shipped).glob("*.json")) == SHIPPED
    _check_commands(python, elsewhere)
