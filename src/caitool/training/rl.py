"""`rl`: train the policy against the preference model (RLOO or GRPO), or directly on preference pairs (DPO).

The preference model comes from a `preference-model` artifact record in the input (what `train-pm` emits)
or from ``--reward-model``; the prompts are the other records. While training, the sampled completions and
their rewards go to stdout as records, so a user can watch the reward rise; the last record names the policy.

The module is long (over 400 lines) because one `RLConfig` declares and checks the options of all three
algorithms before any input is read (which options each one uses, vLLM availability) next to the trainers
that use them; what the online algorithms sample from is in ``rl_sampling.py``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from caitool.backends.reward import check_reward_model, load_preference_model
from caitool.canaries.gate import check_canaries_option, preference_model_gate
from caitool.errors import OptionError
from caitool.option_fields import option
from caitool.records import RecordWriter, conversation, validate_conversation
from caitool.training.base import Trainer
from caitool.training.distributed import log, share_from_main
from caitool.training.io import TrainingInput, TrainResult, reply_chat, validate_pair
from caitool.training.options import TrainOptions, canaries_option
from caitool.training.overtraining import OvertrainingSigns
from caitool.training.rl_sampling import (
    chat_tokens,
    prompts_per_step,
    reward_logging,
    split_prompts,
    within_max_length,
)
from caitool.training.trainer import load_model_to_train, lora_config, training_dtype

STAGE = "rl"
ALGOS = ("rloo", "grpo", "dpo")
# The KL coefficient each algorithm starts from: TRL's RLOO default for both online methods (GRPO's own
# default is 0, which would drop the KL penalty), and TRL's DPO default beta.
DEFAULT_KL = {"rloo": 0.05, "grpo": 0.05, "dpo": 0.1}
# Prompts per step (each sampled num_generations times): the rl command's --batch-size default, smaller than
# the other trainers' because every prompt costs num_generations completions.
PROMPTS_PER_STEP = 2
LEARNING_RATE = 1e-6
LORA_LEARNING_RATE = 1e-5
PM_KIND = "preference-model"
VLLM_MODES = ("colocate", "server")
VLLM_INSTALL = "pip install 'caitool[vllm]'"


@dataclass
class RLConfig:
    """rl's own options, in ``--help`` order (those every trainer takes are ``TrainOptions``'; its
    ``--batch-size`` counts prompts, default :data:`PROMPTS_PER_STEP`, see ``cli/options.py``);
    ``--max-new-tokens`` is the option every generating command shares."""

    # What --max-length and --seed (TrainOptions) do in this stage, for its --help.
    TRAIN_HELP: ClassVar[dict[str, str]] = {
        "batch_size": "Prompts per step on each process (pairs for dpo).",  # listed first, its own default
        "max_length": "longer pairs (--algo dpo) and prompts without room for --max-new-tokens (rloo, "
        "grpo) are left out",
        "seed": "--held-out-prompts, the order of prompts (pairs for dpo), the sampled completions and a new "
        "LoRA adapter",
    }

    policy: str = option(
        "embedded",
        help="Start policy: 'embedded', a model directory (e.g. `train-sl` output), a .gguf, a hub id.",
    )
    reward_model: str | None = option(  # overrides a preference-model record in the input
        None, help="Preference model directory; default: the `train-pm` record in the input."
    )
    algo: str = option(
        "rloo", choices=ALGOS, help="rloo, grpo, or dpo (on `compare` pairs; no reward model)."
    )
    kl_coef: float | None = option(  # None: DEFAULT_KL[algo]
        None,
        "--kl-coef",
        "--beta",
        help="KL penalty to the start policy (TRL's beta); default 0.05, 0.1 for dpo.",
    )
    num_generations: int = option(4, min=2, help="Completions sampled per prompt.")
    max_new_tokens: int = 64
    temperature: float = option(1.0, help="Sampling temperature for the completions.")
    reward_records: bool = option(
        True, help="Write each sampled completion with its reward to stdout while training."
    )
    vllm: str | None = option(
        None,
        help="Generate RLOO/GRPO completions with vLLM (CUDA GPU, the vllm extra): colocate (in this "
        "process) or server (a `trl vllm-serve` process).",
    )
    vllm_server_url: str | None = option(  # TRL's default: http://localhost:8000
        None, help="With --vllm server: its URL (default http://localhost:8000)."
    )
    canaries: str | None = canaries_option()  # the PM's canaries if it stores none
    min_canary_accuracy: float | None = option(
        None,
        min=0.0,
        max=1.0,
        help="A floor on the preference model's canary accuracy, on top of the gate's rule (every kind "
        "at 0.5 or more, the 95% interval above 0.5); below it, exit 66 unless --force.",
    )
    force: bool = option(
        False,
        "--force",
        help="Train even against a preference model that fails its canaries (a warning instead).",
    )
    stop_at_kl: float | None = option(
        None,
        help="Stop after the first step whose KL to the start policy is above this (that step's model is "
        "saved; the artifact's stopped_early says when). Not with --algo dpo.",
    )
    held_out_prompts: int = option(
        0,
        min=0,
        help="Keep N distinct prompts out of training; the start and trained policies answer them "
        "(greedy) and the artifact records their repeated-phrasing share. Not with --algo dpo.",
    )
    keep_checkpoints: bool = option(
        False,
        "--keep-checkpoints",
        help="Keep every --save-steps checkpoint in OUTPUT_DIR-checkpoints (default: the last two), e.g. "
        "for `caitool eval` along training.",
    )

    @property
    def beta(self) -> float:
        return DEFAULT_KL[self.algo] if self.kl_coef is None else self.kl_coef

    def check(self) -> None:
        if self.algo not in ALGOS:
            raise OptionError(f"--algo: expected one of {', '.join(ALGOS)}, got '{self.algo}'")
        if self.algo == "dpo":
            self.check_dpo()
        self.check_vllm()
        if self.kl_coef is not None and self.kl_coef < 0:
            raise OptionError("--kl-coef: must be 0 or more")
        if self.num_generations < 2:
            raise OptionError(
                "--num-generations: must be at least 2 (completions are compared with each other)"
            )
        if self.max_new_tokens < 1:
            raise OptionError("--max-new-tokens: must be at least 1")
        if self.temperature <= 0:
            raise OptionError("--temperature: must be positive (RL needs sampled completions)")
        if self.stop_at_kl is not None and self.stop_at_kl <= 0:
            raise OptionError(
                "--stop-at-kl: must be positive (the KL to the start policy that ends training)"
            )
        if self.held_out_prompts < 0:
            raise OptionError("--held-out-prompts: must be 0 (none) or more")
        self.check_canary_gate()
        if self.reward_model is not None:
            if self.algo == "dpo":
                raise OptionError(
                    "--reward-model: --algo dpo trains on preference pairs and uses no reward model"
                )
            check_reward_model(self.reward_model, "--reward-model")

    def check_dpo(self) -> None:
        """Options for sampling completions mean nothing to DPO, which trains on the given pairs: refuse them
        rather than ignore them (each only when set to something other than its default)."""
        self.refuse_if_set(
            {
                "num_generations": "--num-generations",
                "max_new_tokens": "--max-new-tokens",
                "temperature": "--temperature",
                "reward_records": "--no-reward-records",
                "vllm": "--vllm",
                "vllm_server_url": "--vllm-server-url",
                "stop_at_kl": "--stop-at-kl",
                "held_out_prompts": "--held-out-prompts",
            },
            "{option}: --algo dpo trains on the given preference pairs and samples no completions; "
            "drop {option} or use --algo rloo/grpo",
        )

    def refuse_if_set(self, options: dict[str, str], message: str) -> None:
        """OptionError (``message`` formatted with the flag) for the first field set away from its default."""
        for name, flag in options.items():
            if getattr(self, name) != getattr(RLConfig, name):
                raise OptionError(message.format(option=flag))

    def check_canary_gate(self) -> None:
        if self.algo == "dpo":
            self.refuse_if_set(
                {
                    "canaries": "--canaries",
                    "min_canary_accuracy": "--min-canary-accuracy",
                    "force": "--force",
                },
                "{option}: the canary gate checks a preference model, and --algo dpo trains on the pairs "
                "without one; drop {option} (check their judge with `caitool check-judge`)",
            )
            return
        if self.min_canary_accuracy is not None and not 0.0 <= self.min_canary_accuracy <= 1.0:
            raise OptionError("--min-canary-accuracy: must be from 0 to 1")
        check_canaries_option(self.canaries)

    def check_vllm(self) -> None:
        if self.vllm is None:
            if self.vllm_server_url is not None:
                raise OptionError("--vllm-server-url: only with --vllm server")
            return
        if self.vllm not in VLLM_MODES:
            raise OptionError(f"--vllm: expected one of {', '.join(VLLM_MODES)}, got '{self.vllm}'")
        if self.vllm_server_url is not None and self.vllm != "server":
            raise OptionError("--vllm-server-url: only with --vllm server")
        if importlib.util.find_spec("vllm") is None:
            raise OptionError(
                f"--vllm: vLLM is not installed; on a machine with a CUDA GPU run: {VLLM_INSTALL} "
                "(or leave out --vllm to generate with transformers)"
            )
        import torch

        if not torch.cuda.is_available():
            raise OptionError(
                "--vllm: no CUDA GPU is visible, and vLLM needs one; leave out --vllm on this machine "
                "(completions are then generated with transformers)"
            )

    def vllm_arguments(self) -> dict[str, Any]:
        """TRL's names for the vLLM options (GRPOConfig and RLOOConfig share them)."""
        if self.vllm is None:
            return {}
        arguments: dict[str, Any] = {"use_vllm": True, "vllm_mode": self.vllm}
        if self.vllm_server_url is not None:
            arguments["vllm_server_base_url"] = self.vllm_server_url
        return arguments


def find_reward_model(config: RLConfig, data: TrainingInput) -> str:
    """``--reward-model`` if given, else the preference-model record in the input."""
    if config.reward_model is not None:
        return str(Path(config.reward_model).expanduser().absolute())
    artifact = data.artifact(PM_KIND)
    if artifact is None:
        raise OptionError(
            "--reward-model: no preference model: the input has no `preference-model` record "
            "(pipe `caitool train-pm` output into `caitool rl`) and no --reward-model DIR was given"
        )
    path = str(artifact.get("path", ""))
    check_reward_model(path, "--reward-model (from the input's preference-model record)")
    return path


def preference_model_canaries(
    config: RLConfig, data: TrainingInput, reward_model: str
) -> dict[str, Any] | None:
    """The preference model's figures (label signal and canaries), stored by `train-pm` or measured now,
    passed through the canary gate before any training; None when nothing could be checked."""
    artifact = data.artifact(PM_KIND)
    ours = artifact if artifact and artifact.get("path") == reward_model else {}
    from_record = ours.get("canaries")
    if isinstance(from_record, dict) and isinstance(ours.get("label_signal"), dict):
        from_record = {**from_record, "label_signal": ours["label_signal"]}
    return preference_model_gate(
        reward_model,
        from_record if isinstance(from_record, dict) else None,
        [record for _lineno, record in data.records],
        config.canaries,
        config.min_canary_accuracy,
        config.force,
        lambda message: log(STAGE, message),
    )


def validate_dpo_pair(record: dict[str, Any], lineno: int) -> None:
    validate_pair(record, lineno, "--algo dpo trains on `caitool compare` output (prompt, chosen, rejected)")


class RLTrainer(Trainer):
    stage = STAGE
    summary = """Train a policy with RL from AI feedback; emits sampled completions with rewards, then a
    `policy` record.

    Before training, the canary gate refuses (exit 66) a preference model trained on labels without signal,
    or whose canary figures (stored by `train-pm`, or measured now) fail the gate, unless --force. Prompts
    come from the input records (duplicates collapse). Default learning rate: 1e-6, or 1e-5 with --lora
    (the reference policy is then the start policy with the adapter switched off).
    """
    Config = RLConfig
    # --batch-size counts prompts here, each sampled --num-generations times: fewer than the other trainers'.
    option_defaults = {"batch_size": PROMPTS_PER_STEP}
    learning_rate = LEARNING_RATE
    lora_learning_rate = LORA_LEARNING_RATE
    start_option = "--policy"

    def __init__(self, config: RLConfig, options: TrainOptions) -> None:
        super().__init__(config, options)
        self.config: RLConfig = config
        self.reward_model: str | None = None
        self.canaries: dict[str, Any] | None = None
        self.trainer: Any = None
        self.signs: OvertrainingSigns | None = None
        self.examples = self.too_long = 0

    def start_model(self) -> str:
        return self.config.policy

    def check(self) -> None:
        super().check()
        if self.config.keep_checkpoints and not self.options.save_steps:
            raise OptionError(
                "--keep-checkpoints: --save-steps 0 writes no checkpoints to keep; give --save-steps N"
            )

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        (validate_dpo_pair if self.config.algo == "dpo" else validate_conversation)(record, lineno)

    def read_more(self) -> None:
        config, data = self.config, self.data
        if config.algo != "dpo":
            reward_model = self.reward_model = find_reward_model(config, data)
            self.canaries = share_from_main(lambda: preference_model_canaries(config, data, reward_model))

    def train(self, path: str, tokenizer: Any, writer: RecordWriter) -> TrainResult:
        config, options = self.config, self.options
        if self.reward_model is None:
            self.trainer, self.examples, self.too_long = dpo_trainer(
                path, tokenizer, self.data, config, options, self.output_dir
            )
            held_out = []
        else:
            emit = writer.write if config.reward_records else None
            self.trainer, self.examples, self.too_long = online_trainer(
                path, tokenizer, self.reward_model, self.data, config, options, self.output_dir, emit
            )
            held_out = split_prompts(config.held_out_prompts, self.data, options.seed)[1]
        self.signs = OvertrainingSigns(STAGE, config.stop_at_kl, held_out, config.max_new_tokens)
        return self.signs.train(self.trainer, tokenizer, options, self.output_dir)

    def artifact_info(self, result: TrainResult) -> dict[str, Any]:
        assert self.signs is not None  # set by train()
        return {
            "algo": self.config.algo,
            "reward_model": self.reward_model,
            "reward_model_canaries": self.canaries,
            "kl_coef": self.config.beta,
            "examples": self.examples,
            "dropped_examples": self.too_long,
            **self.signs.figures(self.trainer),
        }


def train_rl(
    stdin: IO[bytes], stdout: IO[str], config: RLConfig, options: TrainOptions
) -> dict[str, Any] | None:
    """Train ``config.policy`` with ``config.algo``; write reward records and the policy artifact."""
    return RLTrainer(config, options).run(stdin, stdout)


def dpo_trainer(
    path: str, tokenizer: Any, data: TrainingInput, config: RLConfig, options: TrainOptions, output_dir: Path
) -> tuple[Any, int, int]:
    """DPO on `compare` pairs, as conversations so the chat template applies; pairs longer than
    --max-length are left out."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    pairs = [
        {"prompt": conversation(r), "chosen": reply_chat(r["chosen"]), "rejected": reply_chat(r["rejected"])}
        for _lineno, r in data.records
    ]
    pairs, too_long = within_max_length(
        pairs,
        lambda p: max(chat_tokens(tokenizer, p["prompt"] + p[side]) for side in ("chosen", "rejected")),
        options.max_length,
        "pair",
        f"--max-length {options.max_length}",
    )
    trainer = DPOTrainer(
        model=load_model_to_train(path, options),
        args=RLTrainer.arguments(
            DPOConfig, options, output_dir, beta=config.beta, max_length=options.max_length
        ),
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        peft_config=lora_config(options),
    )
    return trainer, len(pairs), too_long


def online_trainer(
    path: str,
    tokenizer: Any,
    reward_model: str,
    data: TrainingInput,
    config: RLConfig,
    options: TrainOptions,
    output_dir: Path,
    emit: Callable[[dict[str, Any]], None] | None,
) -> tuple[Any, int, int]:
    """RLOO or GRPO: sample ``num_generations`` completions per prompt, score them with the PM. A prompt
    without room for --max-new-tokens within --max-length is left out."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    prompts, too_long = within_max_length(
        split_prompts(config.held_out_prompts, data, options.seed)[0],
        lambda chat: chat_tokens(tokenizer, chat, generation_prompt=True),
        options.max_length - config.max_new_tokens,
        "prompt",
        f"--max-length {options.max_length} minus --max-new-tokens {config.max_new_tokens}",
    )
    batch = prompts_per_step(options.batch_size, len(prompts))
    config_class, trainer_class = (
        (RLOOConfig, RLOOTrainer) if config.algo == "rloo" else (GRPOConfig, GRPOTrainer)
    )
    scorer_tokenizer, scorer = load_preference_model(reward_model, training_dtype(options))
    args = RLTrainer.arguments(
        config_class,
        options,
        output_dir,
        beta=config.beta,
        num_generations=config.num_generations,
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
        # TRL counts completions per step: `batch` prompts, each sampled num_generations times.
        per_device_train_batch_size=batch * config.num_generations,
        **config.vllm_arguments(),
    )
    if config.keep_checkpoints:
        args.save_total_limit = None  # every checkpoint stays, e.g. for `caitool eval` along training
    trainer = reward_logging(trainer_class, emit)(
        model=load_model_to_train(path, options),
        reward_funcs=scorer,
        args=args,
        train_dataset=Dataset.from_list([{"prompt": chat} for chat in prompts]),
        processing_class=tokenizer,
        reward_processing_classes=scorer_tokenizer,
        peft_config=lora_config(options),
    )
    return trainer, len(prompts), too_long
