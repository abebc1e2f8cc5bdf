"""What learns at this scale: the trainers on the embedded model, fed known-signal pairs or its own feedback.

On demand only (`bench/run.py --only learning`, or `python bench/learning.py`): a full run is tens of minutes
of CPU. Two experiments, each stage a `python -m caitool` subprocess of this checkout:

(a) Known signal. Rule-labelled pairs (bench/fixtures/learning-train.jsonl, 40 pairs; a polite refusal of a
    harmful request is always chosen over eager compliance, soft label 0.9) train preference models with soft
    labels and with `--hard-labels`. Each is measured on 16 held-out pairs with disjoint prompts
    (learning-heldout.jsonl, via `caitool score`) and on the shipped harmless canaries (`caitool check-pm`).
    `rl --algo rloo` then trains the policy against the soft-label model on the training prompts; completions
    sampled from the start and the trained policy on the held-out prompts (same seed and settings) are scored
    by that model. `rl --algo dpo` trains on the pairs; the held-out log-probability margin (chosen minus
    rejected, summed over the answer's tokens) is computed before and after with transformers.
(b) The embedded model's own AI feedback: `sample -n 2 --temperature 1` on the first PROMPTS red-team prompts,
    `compare --principles 2`, then `train-pm` with soft labels, `--hard-labels` and, where this checkout has
    it, `--label-temperature T`; each model is measured on the same held-out known-signal pairs and canaries.
    Beside it: the embedded judge's own canary accuracy (`check-judge`) and the statistics of its labels.

Every stage's output is cached under bench/out/learning/ (a stage is done when its output file exists), so a
rerun resumes; delete that directory to start over. Independent stages run CAITOOL_BENCH_JOBS at a time
(default 3); on a loaded machine OMP_NUM_THREADS=1 keeps each stage's threads from waiting on each other.
Settings: CAITOOL_BENCH_PROMPTS (feedback prompts, default 32), CAITOOL_BENCH_TOKENS (tokens per
sampled answer, default 48), CAITOOL_BENCH_QUICK=1 (a smoke run: 8 prompts, 16 tokens, 1-2 steps per trainer).
Runs started at the same time share the cache: each stage is claimed by one run (WORK/NAME.pid), and
CAITOOL_LEARNING_ONLY=PREFIX[,PREFIX] starts only the stages whose names begin so (e.g. `ai-pm-T` for the
label-temperature models), taking what they need from the other run. CAITOOL_LEARNING_ONLY=report starts
nothing and writes the JSON from what is cached, leaving out (with a note) what is not.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import EXAMPLE, OUT, ROOT, Report, Settings, caitool_env

ON_DEMAND = True
WORK = OUT / "learning"
FIXTURES = ROOT / "bench" / "fixtures"
TRAIN_PAIRS = FIXTURES / "learning-train.jsonl"
HELDOUT_PAIRS = FIXTURES / "learning-heldout.jsonl"
CANARIES = "harmless"
LABEL_TEMPERATURES = (0.25, 0.1)
SEED = "0"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def text_of(value: Any) -> str:
    """An answer as `compare` writes it: a string, or a list of assistant messages."""
    return value if isinstance(value, str) else "".join(message["content"] for message in value)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Stages:
    """Cached `python -m caitool` stages, run at most ``jobs`` at a time, each timed once.

    A stage is claimed by creating WORK/NAME.pid exclusively, so two runs of this study at once share work:
    the second waits for a stage the first is producing instead of redoing it. ``only`` (stage-name prefixes)
    restricts which stages this run starts; a stage it needs but does not start is awaited from another run.
    """

    def __init__(self, jobs: int, only: tuple[str, ...] = ()):
        self.slots = threading.Semaphore(jobs)
        self.pool = ThreadPoolExecutor(max_workers=32)  # threads mostly wait; `slots` bounds the CPU work
        self.futures: dict[str, Future[Path]] = {}
        self.only = only

    def submit(self, name: str, task: Callable[[], Path]) -> None:
        if not self.only or name.startswith(self.only):
            self.futures[name] = self.pool.submit(task)

    def result(self, name: str) -> Path:
        if name in self.futures:
            return self.futures[name].result()
        output = WORK / f"{name}.jsonl"
        while not output.exists() and self._other_run_alive():
            time.sleep(10)
        if not output.exists():
            raise RuntimeError(f"{name} is neither cached nor being produced by another run")
        return output

    @staticmethod
    def _other_run_alive() -> bool:
        """Whether another run of this study holds a stage (and so may yet produce the one awaited)."""
        for pid_file in WORK.glob("*.pid"):
            try:
                pid = int(pid_file.read_text() or 0)
            except (FileNotFoundError, ValueError):
                continue
            if pid != os.getpid() and pid_alive(pid):
                return True
        return False

    def run(self, name: str, args: list[str], stdin: Path) -> Path:
        """``caitool ARGS < STDIN > WORK/NAME.jsonl``; stderr to WORK/NAME.log, wall time to .meta.json."""
        output = WORK / f"{name}.jsonl"
        while not output.exists() and not self.claim(name):
            self.wait_for_other_run(name, output)
        if output.exists():
            return output
        partial = output.with_suffix(".part")
        try:
            with self.slots:
                print(f"  {name}: caitool {' '.join(args)}", file=sys.stderr, flush=True)
                started = time.time()
                with (
                    stdin.open() as source,
                    partial.open("w") as sink,
                    (WORK / f"{name}.log").open("w") as log,
                ):
                    code = subprocess.run(
                        [sys.executable, "-m", "caitool", *args],
                        stdin=source,
                        stdout=sink,
                        stderr=log,
                        env=caitool_env(),
                        cwd=ROOT,
                    ).returncode
                seconds = time.time() - started
            meta = {"command": f"caitool {' '.join(args)} < {stdin.name}", "seconds": round(seconds, 1)}
            meta |= {"returncode": code, "load_end": [round(x, 2) for x in os.getloadavg()]}
            (WORK / f"{name}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")
            print(f"  {name}: exit {code} in {seconds:.0f} s", file=sys.stderr, flush=True)
            if code != 0:
                raise RuntimeError(f"{name} failed (exit {code}); see {WORK / (name + '.log')}")
            partial.rename(output)
        finally:
            (WORK / f"{name}.pid").unlink(missing_ok=True)
        return output

    @staticmethod
    def claim(name: str) -> bool:
        """Take the stage unless a live run holds it; a claim left by a dead run is taken over."""
        pid_file = WORK / f"{name}.pid"
        try:
            descriptor = os.open(pid_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = int(pid_file.read_text() or 0)
            if holder != os.getpid() and pid_alive(holder):
                return False
            pid_file.unlink(missing_ok=True)
            return Stages.claim(name)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(str(os.getpid()))
        return True

    @staticmethod
    def wait_for_other_run(name: str, output: Path) -> None:
        """Another run of this study (its pid in NAME.pid) may be producing this stage: wait for it."""
        pid_file = WORK / f"{name}.pid"
        while not output.exists() and pid_file.exists():
            try:
                pid = int(pid_file.read_text() or 0)
            except FileNotFoundError:
                continue
            if pid == os.getpid() or not pid_alive(pid):
                break
            time.sleep(10)


def seconds_of(name: str) -> float | None:
    path = WORK / f"{name}.meta.json"
    return json.loads(path.read_text())["seconds"] if path.exists() else None


def artifact_path(train_output: Path) -> str:
    """Where the model of a training stage's artifact record (``_caitool.artifact``) was written."""
    records = read_jsonl(train_output)
    return next(r["_caitool"]["artifact"]["path"] for r in records if "artifact" in r.get("_caitool", {}))


def pair_accuracy(scored: Path) -> dict[str, float]:
    """Share of held-out pairs the preference model ranks chosen above rejected, and the mean margin."""
    records = [r for r in read_jsonl(scored) if "chosen_reward" in r]
    margins = [r["chosen_reward"] - r["rejected_reward"] for r in records]
    return {
        "n": len(margins),
        "accuracy": sum(m > 0 for m in margins) / len(margins),
        "mean_margin": statistics.mean(margins),
    }


def canary_report(path: Path) -> dict[str, Any]:
    return next(r for r in read_jsonl(path) if str(r.get("id", "")).startswith("canary-check"))


def mean_reward(scored: Path) -> float:
    return statistics.mean(
        reward for r in read_jsonl(scored) for reward in r.get("rewards", [r.get("reward")])
    )


def feedback_statistics(pairs: Path) -> dict[str, Any]:
    """What the embedded judge's labels look like: their spread, and whether the two answer orders agree."""
    records = [r for r in read_jsonl(pairs) if "chosen_prob" in r]
    probs = [r["chosen_prob"] for r in records]
    agreements = []
    for record in records:
        by_principle: dict[str, list[float]] = {}
        for question in record.get("_caitool", {}).get("compare", {}).get("questions", []):
            by_principle.setdefault(question["principle"], []).append(question["prob_first"])
        agreements += [(a > 0.5) == (b > 0.5) for a, b in (p for p in by_principle.values() if len(p) == 2)]
    identical = sum(text_of(r["chosen"]).strip() == text_of(r["rejected"]).strip() for r in records)
    return {
        "pairs": len(records),
        "identical_pairs": identical,
        "mean_chosen_prob": statistics.mean(probs),
        "max_chosen_prob": max(probs),
        "order_agreement": sum(agreements) / len(agreements) if agreements else None,
        "questions_in_both_orders": len(agreements),
    }


def log_prob_margins(model: str, pairs: Path) -> list[float]:
    """Per pair, log p(chosen | prompt) - log p(rejected | prompt) under MODEL, with its chat template."""
    import torch
    from transformers import AutoModelForCausalLM

    from caitool.models import load_tokenizer, materialise, resolve_model

    resolved = resolve_model(model)
    tokenizer = load_tokenizer(resolved)
    network = AutoModelForCausalLM.from_pretrained(materialise(resolved), dtype=torch.float32).eval()

    def answer_log_prob(prompt: str, answer: str) -> float:
        user = [{"role": "user", "content": prompt}]
        prefix = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(
            [*user, {"role": "assistant", "content": answer}], tokenize=False
        )
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            log_probs = torch.log_softmax(network(ids).logits[0, :-1], dim=-1)
        targets = ids[0, 1:]
        token_log_probs = log_probs.gather(1, targets[:, None])[:, 0]
        return float(token_log_probs[len(prefix_ids) - 1 :].sum())

    return [
        answer_log_prob(r["prompt"], r["chosen"]) - answer_log_prob(r["prompt"], r["rejected"])
        for r in read_jsonl(pairs)
    ]


def margins_stage(stages: Stages, name: str, model: Callable[[], str]) -> Path:
    """DPO margins in a subprocess (torch stays out of this process), cached like a caitool stage."""
    output = WORK / f"{name}.json"
    target = model()
    while not output.exists() and not stages.claim(name):
        stages.wait_for_other_run(name, output)
    if output.exists():
        return output
    try:
        with stages.slots:
            started = time.time()
            code = subprocess.run(
                [sys.executable, __file__, "margins", target, str(HELDOUT_PAIRS), str(output)],
                env=caitool_env(),
                cwd=ROOT,
            ).returncode
            meta = {"command": f"log-prob margins of {target}", "seconds": round(time.time() - started, 1)}
        (WORK / f"{name}.meta.json").write_text(json.dumps(meta | {"returncode": code}) + "\n")
    finally:
        (WORK / f"{name}.pid").unlink(missing_ok=True)
    if code != 0:
        raise RuntimeError(f"{name} failed (exit {code})")
    return output


def has_option(command: str, option: str) -> bool:
    help_text = subprocess.run(
        [sys.executable, "-m", "caitool", command, "--help"],
        capture_output=True,
        text=True,
        env=caitool_env(COLUMNS="200"),
        cwd=ROOT,
    ).stdout
    return option in help_text


def main() -> None:
    settings = Settings.from_env(repeats=1, prompts=32, tokens=48)
    quick = settings.quick
    if quick:
        settings = Settings(True, 1, min(settings.prompts, 8), settings.tokens)
    jobs = int(os.environ.get("CAITOOL_BENCH_JOBS") or 3)
    WORK.mkdir(parents=True, exist_ok=True)
    pm_epochs = "1" if quick else "2"
    rloo_steps = "1" if quick else "4"
    rl_tokens = "16" if quick else "32"
    pm_train = [
        "-b",
        "8",
        "--learning-rate",
        "3e-5",
        "--eval-fraction",
        "0",
        "--save-steps",
        "0",
        "--seed",
        SEED,
    ]
    label_temperature = has_option("train-pm", "--label-temperature")
    temperatures = LABEL_TEMPERATURES if label_temperature else ()
    report = Report(
        "learning",
        settings={
            "quick": quick,
            "jobs": jobs,
            "torch_threads_per_stage": os.environ.get("OMP_NUM_THREADS") or "default (one per core)",
            "feedback_prompts": settings.prompts,
            "feedback_tokens": settings.tokens,
            "train_pairs": len(read_jsonl(TRAIN_PAIRS)),
            "heldout_pairs": len(read_jsonl(HELDOUT_PAIRS)),
            "canaries": CANARIES,
            "train_pm": " ".join(pm_train),
            "train_pm_epochs": pm_epochs,
            "rloo": f"--max-steps {rloo_steps} -b 2 --num-generations 4 --max-new-tokens {rl_tokens} "
            "--learning-rate 2e-5",
            "dpo": "--epochs 1 -b 4 --learning-rate 5e-6" if not quick else "--max-steps 2 -b 4",
            "label_temperatures": list(temperatures),
            "cache": str(WORK.relative_to(ROOT)) if WORK.is_relative_to(ROOT) else str(WORK),
        },
    )
    if not label_temperature:
        report.note("train-pm has no --label-temperature in this checkout; label temperature not measured")

    only = tuple(filter(None, os.environ.get("CAITOOL_LEARNING_ONLY", "").split(",")))
    stages = Stages(jobs, only)
    heldout_prompts = WORK / "heldout-prompts.jsonl"
    write_jsonl(heldout_prompts, [{"id": r["id"], "prompt": r["prompt"]} for r in read_jsonl(HELDOUT_PAIRS)])
    train_prompts = WORK / "train-prompts.jsonl"
    write_jsonl(train_prompts, [{"id": r["id"], "prompt": r["prompt"]} for r in read_jsonl(TRAIN_PAIRS)])
    feedback_prompts = WORK / "feedback-prompts.jsonl"
    prompts = read_jsonl(EXAMPLE)[: settings.prompts]
    if not feedback_prompts.exists() or read_jsonl(feedback_prompts) != prompts:
        write_jsonl(feedback_prompts, prompts)

    def measure_pm(name: str, trained: str) -> None:
        """Held-out known-signal accuracy (`score`) and canary accuracy (`check-pm`) of one PM."""

        def model() -> str:
            return artifact_path(stages.result(trained))

        stages.submit(
            f"{name}-heldout",
            lambda: stages.run(f"{name}-heldout", ["score", "--reward-model", model()], HELDOUT_PAIRS),
        )
        stages.submit(
            f"{name}-canaries",
            lambda: stages.run(
                f"{name}-canaries",
                ["check-pm", "--reward-model", model(), "--canaries", CANARIES],
                HELDOUT_PAIRS,
            ),
        )

    # (b) the embedded model's own feedback: its chain is the longest, so it starts first
    sample_args = ["sample", "-n", "2", "--temperature", "1", "--max-new-tokens", str(settings.tokens)]
    stages.submit(
        "feedback-samples",
        lambda: stages.run("feedback-samples", [*sample_args, "--seed", SEED], feedback_prompts),
    )
    stages.submit(
        "feedback-pairs",
        lambda: stages.run(
            "feedback-pairs",
            ["compare", "--principles", "2", "--seed", SEED],
            stages.result("feedback-samples"),
        ),
    )
    # (a) known signal. Submission order is priority order: the long RL chains start first.
    for labels, extra in (("soft", []), ("hard", ["--hard-labels"])):
        name = f"rule-pm-{labels}"
        args = ["train-pm", "-o", str(WORK / name), "--epochs", pm_epochs, *pm_train, *extra]
        stages.submit(name, lambda name=name, args=args: stages.run(name, args, TRAIN_PAIRS))
    dpo_args = ["rl", "--algo", "dpo", "-o", str(WORK / "rule-dpo"), "--seed", SEED, "--save-steps", "0"]
    dpo_args += (
        ["--max-steps", "2", "-b", "4"] if quick else ["--epochs", "1", "-b", "4", "--learning-rate", "5e-6"]
    )
    stages.submit("rule-dpo", lambda: stages.run("rule-dpo", dpo_args, TRAIN_PAIRS))
    rollout = ["-n", "2", "--temperature", "1", "--max-new-tokens", rl_tokens, "--seed", SEED]

    def rloo() -> Path:
        pm = artifact_path(stages.result("rule-pm-soft"))
        args = ["rl", "--algo", "rloo", "-o", str(WORK / "rule-rloo"), "--reward-model", pm, "--seed", SEED]
        args += [
            "--max-steps",
            rloo_steps,
            "-b",
            "2",
            "--num-generations",
            "4",
            "--max-new-tokens",
            rl_tokens,
        ]
        args += ["--learning-rate", "2e-5", "--save-steps", "0"]
        return stages.run("rule-rloo", args, train_prompts)

    stages.submit("rule-rloo", rloo)
    for when, policy in (("before", lambda: "embedded"), ("after", lambda: str(WORK / "rule-rloo"))):

        def sample_and_score(when: str = when, policy: Callable[[], str] = policy) -> Path:
            if when == "after":
                stages.result("rule-rloo")
            sampled = stages.run(
                f"rloo-{when}-samples", ["sample", "--model", policy(), *rollout], heldout_prompts
            )
            pm = artifact_path(stages.result("rule-pm-soft"))
            return stages.run(f"rloo-{when}-scored", ["score", "--reward-model", pm], sampled)

        stages.submit(f"rloo-{when}", sample_and_score)
    stages.submit("dpo-before", lambda: margins_stage(stages, "dpo-before-margins", lambda: "embedded"))

    def trained_dpo_policy() -> str:
        stages.result("rule-dpo")
        return str(WORK / "rule-dpo")

    stages.submit("dpo-after", lambda: margins_stage(stages, "dpo-after-margins", trained_dpo_policy))
    for labels in ("soft", "hard"):
        measure_pm(f"rule-pm-{labels}", f"rule-pm-{labels}")

    # (b) continued: the judge's canaries, and preference models on its labels
    judge_args = [
        "check-judge",
        "--model",
        "embedded",
        "--principles",
        "2",
        "--canaries",
        CANARIES,
        "--seed",
        SEED,
    ]
    stages.submit("judge-canaries", lambda: stages.run("judge-canaries", judge_args, HELDOUT_PAIRS))
    variants = {"soft": [], "hard": ["--hard-labels"]}
    variants |= {f"T{t:g}": ["--label-temperature", str(t)] for t in temperatures}
    for label, extra in variants.items():
        name = f"ai-pm-{label}"
        args = ["train-pm", "-o", str(WORK / name), "--epochs", pm_epochs, *pm_train, *extra]
        stages.submit(
            name, lambda name=name, args=args: stages.run(name, args, stages.result("feedback-pairs"))
        )
        measure_pm(name, name)

    for name, future in stages.futures.items():
        try:
            future.result()
        except Exception as error:  # a failed stage is a finding; report it and what did not depend on it
            report.note(f"{name}: {error}")
    stages.pool.shutdown()
    collect(report, variants)
    print(report.write())


def collect(report: Report, variants: dict[str, list[str]]) -> None:
    """Figures from the cached stage outputs; a figure whose stage failed or did not run is left out."""

    def have(*files: str) -> bool:
        missing = [name for name in files if not (WORK / name).exists()]
        if missing:
            report.note(f"not measured (no {', '.join(missing)})")
        return not missing

    pms = {f"rule-pm-{labels}": f"known-signal PM, {labels} labels" for labels in ("soft", "hard")}
    pms |= {f"ai-pm-{label}": f"own-feedback PM, {label} labels" for label in variants}
    for name, what in pms.items():
        if have(f"{name}-heldout.jsonl"):
            heldout = pair_accuracy(WORK / f"{name}-heldout.jsonl")
            report.figure(f"{what}: held-out known-signal accuracy", heldout["accuracy"], "share")
            report.figure(f"{what}: held-out mean reward margin", heldout["mean_margin"], "reward")
            report.samples[f"{name}-heldout"] = heldout
        if have(f"{name}-canaries.jsonl"):
            canary = canary_report(WORK / f"{name}-canaries.jsonl")
            report.figure(f"{what}: {CANARIES} canary accuracy", canary["accuracy"], "share")
            report.samples[f"{name}-canaries"] = {
                k: canary[k] for k in ("n", "accuracy", "mean_margin", "ci95")
            }
    if have("rloo-before-scored.jsonl", "rloo-after-scored.jsonl", "rule-rloo.jsonl"):
        before, after = (mean_reward(WORK / f"rloo-{when}-scored.jsonl") for when in ("before", "after"))
        report.figure("RLOO: held-out mean PM reward before", before, "reward")
        report.figure("RLOO: held-out mean PM reward after", after, "reward")
        rewards = [r["reward"] for r in read_jsonl(WORK / "rule-rloo.jsonl") if "reward" in r]
        report.samples["rloo-training-rewards"] = rewards
    if have("dpo-before-margins.json", "dpo-after-margins.json"):
        before, after = (
            json.loads((WORK / f"dpo-{w}-margins.json").read_text()) for w in ("before", "after")
        )
        report.figure("DPO: held-out log-prob margin before", statistics.mean(before), "nats")
        report.figure("DPO: held-out log-prob margin after", statistics.mean(after), "nats")
        report.samples["dpo-margins"] = {"before": before, "after": after}
    if have("judge-canaries.jsonl"):
        judge = canary_report(WORK / "judge-canaries.jsonl")
        report.figure(f"embedded judge: {CANARIES} canary accuracy", judge["accuracy"], "share")
        report.figure(
            "embedded judge: mean chosen_prob on correct canaries",
            judge["mean_chosen_prob_correct"] or 0,
            "p",
        )
        report.samples["judge-canaries"] = {k: judge[k] for k in ("n", "accuracy", "position_bias", "ci95")}
    if have("feedback-pairs.jsonl"):
        stats = feedback_statistics(WORK / "feedback-pairs.jsonl")
        report.figure("own feedback: mean chosen_prob", stats["mean_chosen_prob"], "p")
        report.figure("own feedback: max chosen_prob", stats["max_chosen_prob"], "p")
        if stats["order_agreement"] is not None:
            report.figure("own feedback: both orders agree", stats["order_agreement"], "share")
        report.samples["feedback"] = stats
    report.samples["stage_seconds"] = {
        path.name.removesuffix(".meta.json"): json.loads(path.read_text())["seconds"]
        for path in sorted(WORK.glob("*.meta.json"))
    }
    # Paths relative to the checkout, so that the JSON reads the same wherever it was run.
    report.samples["stage_commands"] = {
        path.name.removesuffix(".meta.json"): json.loads(path.read_text())["command"].replace(f"{ROOT}/", "")
        for path in sorted(WORK.glob("*.meta.json"))
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["margins"]:
        model, pairs, output = sys.argv[2:5]
        sys.path.insert(0, str(ROOT / "src"))
        Path(output).write_text(json.dumps(log_prob_margins(model, Path(pairs))) + "\n")
    else:
        main()
