"""`rl`: train the policy against the preference model (RLOO or GRPO), or directly on preference pairs (DPO).

The preference model comes from a `preference-model` artifact record in the input (what `train-pm` emits)
or from ``--reward-model``; the prompts are the other records. While training, the sampled completions and
their rewards go to stdout as records, so a user can watch the reward rise; the last record names the policy.

The module is long (over 300 lines) because one `RLConfig` checks the options of all three algorithms before
any input is read (which options each one uses, vLLM availability) next to the trainers that use them.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from caitool.backends.reward import check_reward_model, load_preference_model
from caitool.canaries.gate import check_canaries_option, preference_model_gate
from caitool.errors import OptionError
from caitool.models import load_tokenizer
from caitool.records import conversation, prompt_text, validate_conversation
from caitool.training.distributed import is_main_process, log, share_from_main, world_size
from caitool.training.io import (
    InsufficientInput,
    TrainingInput,
    emit_artifact,
    read_training_input,
    records_only_on_stdout,
    reply_chat,
    resolve_start_model,
    validate_pair,
)
from caitool.training.options import TrainOptions
from caitool.training.overtraining import OvertrainingSigns, hold_out
from caitool.training.trainer import (
    load_model_to_train,
    lora_config,
    quiet_training_libraries,
    trainer_arguments,
    training_dtype,
)

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
    policy: str = "embedded"
    reward_model: str | None = None  # overrides a preference-model record in the input
    algo: str = "rloo"
    kl_coef: float | None = None  # None: DEFAULT_KL[algo]
    num_generations: int = 4  # completions per prompt (RLOO/GRPO compare them against each other)
    max_new_tokens: int = 64
    temperature: float = 1.0
    reward_records: bool = True  # write sampled completions with their rewards to stdout while training
    vllm: str | None = None  # generate RLOO/GRPO completions with vLLM: colocate (in this process) or server
    vllm_server_url: str | None = None  # with vllm="server"; TRL's default: http://localhost:8000
    canaries: str | None = None  # the PM's canaries if it stores none: a file, a shipped name, or "none"
    min_canary_accuracy: float | None = None  # a floor on canary accuracy on top of the gate's rule
    force: bool = False  # train against a preference model the gate refuses (warn instead)
    stop_at_kl: float | None = None  # stop after the first step whose KL to the start policy is above this
    held_out_prompts: int = 0  # prompts kept out of training to measure repeated phrasing on (0: none)
    keep_checkpoints: bool = False  # keep every --save-steps checkpoint (default: the last two)

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
        for name, option in options.items():
            if getattr(self, name) != getattr(RLConfig, name):
                raise OptionError(message.format(option=option))

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


def split_prompts(
    config: RLConfig, data: TrainingInput, seed: int
) -> tuple[list[list[dict[str, str]]], list[list[dict[str, str]]]]:
    """(prompts to train on, prompts held out by --held-out-prompts)."""
    prompts = unique_prompts(data)
    if not config.held_out_prompts:
        return prompts, []
    if config.held_out_prompts >= len(prompts):
        raise InsufficientInput(
            f"--held-out-prompts {config.held_out_prompts}: the input has {len(prompts)} distinct prompts; "
            "hold out fewer, so that some remain to train on"
        )
    return hold_out(prompts, config.held_out_prompts, seed)


def unique_prompts(data: TrainingInput) -> list[list[dict[str, str]]]:
    """One chat per distinct prompt, in input order (`sample -n 2 | compare` repeats prompts)."""
    seen: dict[str, list[dict[str, str]]] = {}
    for _lineno, record in data.records:
        chat = conversation(record)
        seen.setdefault(json.dumps(chat, sort_keys=True), chat)
    return list(seen.values())


def chat_tokens(tokenizer: Any, chat: list[dict[str, str]], generation_prompt: bool = False) -> int:
    rendered = tokenizer.apply_chat_template(chat, add_generation_prompt=generation_prompt, return_dict=True)
    return len(rendered["input_ids"])


def within_max_length(
    items: list[Any], tokens: Callable[[Any], int], limit: int, what: str, why: str
) -> tuple[list[Any], int]:
    """The items of at most ``limit`` tokens (``why``: the options that set it), and how many were left
    out (said on stderr), as train-pm leaves long pairs out; with none left, an error."""
    kept = [item for item in items if tokens(item) <= limit]
    if not kept:
        raise InsufficientInput(f"every {what} is longer than {limit} tokens ({why}); raise --max-length")
    if len(kept) < len(items) and is_main_process():
        log(STAGE, f"{len(items) - len(kept)} {what}s longer than {limit} tokens ({why}) left out")
    return kept, len(items) - len(kept)


def prompts_per_step(config_batch: int, prompt_count: int) -> int:
    """RLOO/GRPO drop an incomplete group of prompts; with few prompts, take fewer per step, not none."""
    processes = world_size()
    if prompt_count < processes:
        raise InsufficientInput(
            f"{prompt_count} distinct prompts for {processes} processes; give at least one each"
        )
    fitting = min(config_batch, prompt_count // processes)
    if fitting < config_batch and is_main_process():
        log(
            STAGE,
            f"only {prompt_count} distinct prompts: {fitting} per step per process instead of {config_batch}",
        )
    return fitting


def reward_logging(trainer_class: type, emit: Callable[[dict[str, Any]], None] | None) -> type:
    """``trainer_class`` that also hands each scored completion to ``emit`` (main process), if given."""
    if emit is None:
        return trainer_class
    from accelerate.utils import gather_object

    write = emit  # bound for the closure below (mypy cannot narrow ``emit`` inside it)

    class RewardLogging(trainer_class):  # type: ignore[misc, valid-type]
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]  # noqa: E501
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            # Rewards come back gathered from every process; gather the texts they belong to the same way.
            all_prompts, all_completions = gather_object(prompts), gather_object(completions)
            if self.accelerator.is_main_process and self.model.training:
                step = self.state.global_step + 1
                scores = rewards.sum(dim=1).tolist()
                for index, (prompt, completion, reward) in enumerate(
                    zip(all_prompts, all_completions, scores, strict=True)
                ):
                    write(
                        {
                            "id": f"rl:step{step}:{index}",
                            "step": step,
                            "prompt": prompt_text({"messages": prompt})
                            if isinstance(prompt, list)
                            else prompt,
                            "completion": completion[-1]["content"]
                            if isinstance(completion, list)
                            else completion,
                            "reward": reward,
                        }
                    )
            return rewards

    RewardLogging.__name__ = f"RewardLogging{trainer_class.__name__}"
    return RewardLogging


def train_rl(
    stdin: IO[bytes], stdout: IO[str], config: RLConfig, options: TrainOptions
) -> dict[str, Any] | None:
    """Train ``config.policy`` with ``config.algo``; write reward records and the policy artifact."""
    from caitool.models import materialise

    output_dir = options.check()
    config.check()
    if config.keep_checkpoints and not options.save_steps:
        raise OptionError(
            "--keep-checkpoints: --save-steps 0 writes no checkpoints to keep; give --save-steps N"
        )
    resolved = resolve_start_model(config.policy, "--policy")
    data = read_training_input(
        stdin, validate_dpo_pair if config.algo == "dpo" else validate_conversation, STAGE
    )
    reward_model = None if config.algo == "dpo" else find_reward_model(config, data)
    canaries = None
    if reward_model is not None:
        canaries = share_from_main(lambda: preference_model_canaries(config, data, reward_model))

    with records_only_on_stdout(stdout) as writer:
        quiet_training_libraries()
        path = materialise(resolved)
        tokenizer = load_tokenizer(path)
        if reward_model is None:
            trainer, examples, too_long = dpo_trainer(path, tokenizer, data, config, options, output_dir)
        else:
            emit = writer.write if config.reward_records else None
            trainer, examples, too_long = online_trainer(
                path, tokenizer, reward_model, data, config, options, output_dir, emit
            )
        held_out = split_prompts(config, data, options.seed)[1] if reward_model else []
        signs = OvertrainingSigns(STAGE, config.stop_at_kl, held_out, config.max_new_tokens)
        result = signs.train(trainer, tokenizer, options, output_dir)
        if not is_main_process():
            return None
        return emit_artifact(
            writer,
            "policy",
            output_dir,
            STAGE,
            resolved,
            result,
            options,
            algo=config.algo,
            reward_model=reward_model,
            reward_model_canaries=canaries,
            kl_coef=config.beta,
            examples=examples,
            dropped_examples=too_long,
            **signs.figures(trainer),
        )


def learning_rate(options: TrainOptions) -> float:
    return LORA_LEARNING_RATE if options.lora else LEARNING_RATE


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
    args = trainer_arguments(
        DPOConfig,
        options,
        output_dir,
        learning_rate(options),
        beta=config.beta,
        max_length=options.max_length,
    )
    trainer = DPOTrainer(
        model=load_model_to_train(path, options),
        args=args,
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
        split_prompts(config, data, options.seed)[0],
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
    args = trainer_arguments(
        config_class,
        options,
        output_dir,
        learning_rate(options),
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
