"""The model hub, asked only when ``--model`` is a hub id: whether it can be reached (within seconds, not
after the hub client's minute of retries), and offline mode for everything else."""

from __future__ import annotations

import functools
import os
import sys
import threading

from caitool.errors import OptionError


def set_offline() -> None:
    """No network calls for local models (must happen before huggingface_hub is imported to take effect)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if "huggingface_hub" in sys.modules:
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True


HUB_PROBE_SECONDS = 3.0  # an unreachable hub fails within this, not after the hub client's retries


def require_hub(spec: str) -> None:
    """Before a hub id is loaded: go on if the hub answers, or offline if the model is in the local hub cache;
    otherwise fail now with the fix (the hub client would retry for about a minute first)."""
    cached = _in_hub_cache(spec)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline and _hub_reachable(_hub_endpoint()):
        return
    if cached:
        set_offline()
        return
    why = (
        "HF_HUB_OFFLINE is set"
        if offline
        else f"the model hub ({_hub_endpoint()}) cannot be reached: this machine is offline"
    )
    raise OptionError(
        f"--model {spec}: a hub id needs network access, and {why}; download the model where there is "
        f"network (`hf download {spec} --local-dir DIR`), copy DIR here and pass --model DIR"
    )


def _in_hub_cache(spec: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except Exception:  # an id the hub library refuses is not in its cache either
        return False


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@functools.lru_cache(maxsize=8)
def _hub_reachable(endpoint: str) -> bool:
    """Whether the hub (through the proxy the environment names, if any) answers an HTTP request within the
    probe time: any answer counts, even an error page; silence or a refused connection does not. In a thread,
    so that a hanging name lookup is bounded too."""
    import urllib.error
    import urllib.request

    answered: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=HUB_PROBE_SECONDS)
            answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)  # the server answered
        except (OSError, ValueError):  # URLError, a timeout, a refused connection, a malformed endpoint
            answered.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_PROBE_SECONDS)
    return bool(answered and answered[0])
