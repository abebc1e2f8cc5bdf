"""Run the caitool CLI in this process and, at exit, write the peak GPU memory it allocated.

`python bench/_cuda_peak.py ARGS...` behaves as `caitool ARGS...`; ``CAITOOL_CUDA_PEAK_FILE`` names the JSON
file that receives ``{"peak_bytes": N}`` (0 without CUDA). Used by bench/gpu_check.py, which runs each stage
in a fresh process so that one stage's memory does not count against the next.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _write_peak() -> None:
    import torch

    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
    Path(os.environ["CAITOOL_CUDA_PEAK_FILE"]).write_text(json.dumps({"peak_bytes": peak}))


if __name__ == "__main__":
    atexit.register(_write_peak)
    from caitool.cli.main import main

    sys.argv = ["caitool", *sys.argv[1:]]
    main()
