"""Defaults that are not a field of an options dataclass, defined once.

The model and engine defaults are the field defaults of :class:`~caitool.backends.base.BackendOptions`, the
sampling defaults those of :class:`~caitool.backends.base.GenerationSettings`; the commands' signatures and
:class:`caitool.Pipeline` read them there, and the rest here.
"""

CONSTITUTION = "harmless"
FEW_SHOT = 1  # few-shot examples from the constitution in each prompt
# How `revise` asks for the rewrite (caitool.prompts.REVISION_FORMATS): "auto" is "prefill", chosen by
# measuring the embedded model's revisions (docs/findings.md: "Revision prompt formats"), except with
# --backend openai, where a begun reply needs /v1/completions, which hosted chat models do not serve: there it
# is "plain".
REVISION_FORMAT = "auto"
NUM_RESPONSES = 1  # `sample -n`
PRINCIPLES = 1  # `compare -k`: feedback principles per pair
# compare reads probabilities, so its optional (--cot) reasoning is greedy unless asked otherwise.
COMPARE_TEMPERATURE = 0.0
