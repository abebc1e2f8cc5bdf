"""The accelerate config files in examples/ load and resolve to the launch setup their names promise.

Launching them needs GPUs (and deepspeed for ZeRO); here accelerate's own launcher parses each file the way
`accelerate launch --config_file FILE` does and derives the environment it would hand to every process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "accelerate"


def resolved_launch(name: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "train.py"])
    args, _defaults, _mixed_precision = _validate_launch_command(args)
    return args


@pytest.mark.parametrize(
    ("name", "mode"),
    [("ddp.yaml", "multi_gpu"), ("deepspeed-zero2.yaml", "use_deepspeed"), ("fsdp.yaml", "use_fsdp")],
)
def test_config_resolves_to_its_distributed_mode(name, mode):
    args = resolved_launch(name)
    modes = {flag: bool(getattr(args, flag)) for flag in ("multi_gpu", "use_deepspeed", "use_fsdp")}
    assert modes == {flag: flag == mode for flag in modes}
    assert args.num_processes == 8 and args.mixed_precision == "bf16" and not args.cpu


def test_zero2_config_asks_for_stage_2():
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / "deepspeed-zero2.yaml"))
    assert config.deepspeed_config["zero_stage"] == 2


def test_fsdp_config_saves_full_weights_so_the_model_directory_loads_anywhere():
    from accelerate.utils.launch import prepare_multi_gpu_env

    env = prepare_multi_gpu_env(resolved_launch("fsdp.yaml"))
    assert env["FSDP_VERSION"] == "2"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"


def test_every_config_is_named_in_the_scaling_page():
    readme = (CONFIGS.parents[1] / "docs" / "scaling.md").read_text(encoding="utf-8")
    for config in sorted(CONFIGS.glob("*.yaml")):
        assert f"examples/accelerate/{config.name}" in readme, config.name
