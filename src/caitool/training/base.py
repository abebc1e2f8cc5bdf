"""What every training stage does around its own training, written once (as datatrove's step kinds share a
``base.py``): check the options, resolve the start model, read and check every record, keep stdout for
records, load the tokenizer, train, then write the artifact record that names the model.

A stage (``training/sl.py``, ``pm.py``, ``rl.py``) subclasses :class:`Trainer` and supplies only what is
its own: its options, how a record is checked, what it reads beside the records, the TRL trainer it runs and
what its artifact records. An option check or a step added here reaches all three.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, ClassVar

from caitool.records import RecordWriter
from caitool.training.distributed import is_main_process, log
from caitool.training.io import (
    TrainingInput,
    TrainResult,
    emit_artifact,
    read_training_input,
    records_only_on_stdout,
    resolve_start_model,
)
from caitool.training.options import TrainOptions
from caitool.training.trainer import quiet_training_libraries, trainer_arguments


class Trainer:
    """One run of a training stage: ``Trainer(config, options).run(stdin, stdout)``."""

    stage: ClassVar[str]  # the command's name, in messages and the artifact
    summary: ClassVar[str] = ""  # the command's help
    Config: ClassVar[type]  # its own options: a dataclass whose fields declare them (option_fields.option)
    # TrainOptions defaults of its own (rl's --batch-size counts prompts), listed first in its --help
    option_defaults: ClassVar[dict[str, Any]] = {}
    kind: ClassVar[str] = "policy"  # the artifact's kind
    learning_rate: ClassVar[float]  # the default learning rate, full weights ...
    lora_learning_rate: ClassVar[float]  # ... and with --lora
    start_option: ClassVar[str] = "--model"  # the option naming the start model

    def __init__(self, config: Any, options: TrainOptions) -> None:
        self.config = config
        self.options = options
        self.output_dir = Path(options.output_dir)
        self.data = TrainingInput()

    # What a stage supplies.

    def start_model(self) -> str:
        return str(self.config.model)

    def check(self) -> None:
        """Refuse options that cannot work, after ``TrainOptions.check`` and before anything is read."""
        self.config.check()

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        """Check one input record (artifact records are not passed here)."""
        raise NotImplementedError

    def read_more(self) -> None:
        """Read what the stage needs beside the records (a --mix file, the preference model)."""

    def prepare(self) -> None:
        """Turn the records into examples (stdout already kept for records; no model loaded yet)."""

    def tokenizer(self, path: str) -> Any:
        from caitool.models import load_tokenizer

        return load_tokenizer(path)

    def train(self, path: str, tokenizer: Any, writer: RecordWriter) -> TrainResult:
        """Train the model in ``path`` and write it to the output directory (every process)."""
        raise NotImplementedError

    def artifact_info(self, result: TrainResult) -> dict[str, Any]:
        """What the artifact records beside what every stage records (main process only)."""
        return {}

    def after_artifact(self, writer: RecordWriter) -> None:
        """Write what follows the artifact record (main process only)."""

    def finish(self) -> None:
        """The last step, once every record is written (main process only): a failed check loses no work."""

    # The shared run.

    def run(self, stdin: IO[bytes], stdout: IO[str]) -> dict[str, Any] | None:
        """Train on the records from ``stdin``; write the artifact record (and what the stage adds) to
        ``stdout``. Returns the artifact record, or None on a process other than the main one."""
        from caitool.models import materialise

        self.output_dir = self.options.check()
        self.check()
        resolved = resolve_start_model(self.start_model(), self.start_option)
        self.data = read_training_input(stdin, self.validate, self.stage)
        self.read_more()
        with records_only_on_stdout(stdout) as writer:
            quiet_training_libraries()
            self.prepare()
            path = materialise(resolved)
            result = self.train(path, self.tokenizer(path), writer)
            if not is_main_process():
                return None
            record = emit_artifact(
                writer,
                self.kind,
                self.output_dir,
                self.stage,
                resolved,
                result,
                self.options,
                **self.artifact_info(result),
            )
            self.after_artifact(writer)
        self.finish()
        return record

    # Helpers for the stages.

    @classmethod
    def arguments(cls, config_class: Any, options: TrainOptions, output_dir: Path, **extra: Any) -> Any:
        """TRL's ``config_class`` with caitool's settings and the stage's default learning rate."""
        rate = cls.lora_learning_rate if options.lora else cls.learning_rate
        return trainer_arguments(config_class, options, output_dir, rate, **extra)

    def log(self, message: str) -> None:
        log(self.stage, message)

    def says(self) -> bool:
        """Whether this process reports progress on stderr (the main one, without --quiet)."""
        return is_main_process() and not self.options.quiet
