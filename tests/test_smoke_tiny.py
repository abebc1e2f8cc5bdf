from caitool.backends.base import BackendOptions, GenerationSettings, load_backend


def test_tiny_model_generates_and_scores(tiny_model):
    backend = load_backend(BackendOptions(model=str(tiny_model), batch_size=2))
    chats = [[{"role": "user", "content": "How do I pick a lock?"}], [{"role": "user", "content": "Hi"}]] * 2
    texts = backend.generate(chats, GenerationSettings(max_new_tokens=5, temperature=0))
    assert len(texts) == 4 and texts[0] == texts[2]
    scores = backend.choice_logprobs(chats, ["The answer is: ("] * 4, ["A", "B"])
    assert len(scores) == 4 and all(len(row) == 2 and all(s < 0 for s in row) for row in scores)


def test_batches_respect_sequence_and_token_limits():
    from caitool.backends.hf import HFBackend

    backend = HFBackend(tokenizer=None, model=None, batch_size=4, max_batch_tokens=100)
    lengths = [30, 5, 12, 200, 12, 8, 40, 3, 7, 9]
    batches = backend._batches([[0] * n for n in lengths], new_tokens=10)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert batches[0] == [3]  # longer than the budget on its own: alone, not dropped
    for batch in batches:
        width = max(lengths[i] for i in batch) + 10
        assert len(batch) <= 4
        assert len(batch) == 1 or width * len(batch) <= 100
    # Short sequences fill the batch up to --batch-size; the long ones are split by the token budget.
    assert [[lengths[i] for i in batch] for batch in batches] == [[200], [40, 30], [12, 12, 9, 8], [7, 5, 3]]
    assert len(HFBackend(None, None, batch_size=64)._batches([[0] * 50] * 64, new_tokens=64)) == 1


def test_dtype_option_loads_weights_in_that_dtype_and_records_it(tiny_model):
    from typer.testing import CliRunner

    from caitool.cli.main import app
    from conftest import jsonl, parse_jsonl

    backend = load_backend(BackendOptions(model=str(tiny_model), dtype="bfloat16"))
    assert backend.describe()["dtype"] == "bfloat16"
    assert all(str(p.dtype) == "torch.bfloat16" for p in backend.model.parameters())
    runner = CliRunner()
    args = ["sample", "--model", str(tiny_model), "--max-new-tokens", "3", "--quiet"]
    result = runner.invoke(app, [*args, "--dtype", "bfloat16"], input=jsonl([{"prompt": "Hi"}]))
    assert result.exit_code == 0, result.output
    (record,) = parse_jsonl(result.stdout)
    assert record["_caitool"]["stages"][0]["dtype"] == "bfloat16"
    result = runner.invoke(app, [*args, "--dtype", "int3"], input=jsonl([{"prompt": "Hi"}]))
    assert result.exit_code == 64 and "--dtype" in result.stderr and result.stdout == ""


def test_auto_dtype_is_bfloat16_only_where_the_hardware_runs_it(monkeypatch):
    import torch

    from caitool import models

    monkeypatch.setattr(models, "cpu_has_bfloat16_matmul", lambda: False)
    assert models.torch_dtype("auto", "cpu") == torch.float32
    assert models.torch_dtype("auto", "cuda:1") == torch.bfloat16
    assert models.torch_dtype("float16", "cpu") == torch.float16
    monkeypatch.setattr(models, "cpu_has_bfloat16_matmul", lambda: True)
    assert models.torch_dtype("auto", "cpu") == torch.bfloat16
    assert models.torch_dtype("float32", "cpu") == torch.float32


def test_multi_token_choices_score_like_a_full_forward_pass(tiny_model):
    import torch

    from caitool.backends.hf import HFBackend, load_causal_lm
    from caitool.models import resolve_model

    tokenizer, model = load_causal_lm(resolve_model(str(tiny_model)), "cpu", dtype="float32")
    backend = HFBackend(tokenizer, model, batch_size=3)
    chats = [
        [{"role": "user", "content": "Which is kinder?"}],
        [{"role": "user", "content": "Pick one, quickly"}],
    ]
    prefixes = ["Answer: (", "I choose ("]
    choices = ["A) the first", "B"]
    got = backend.choice_logprobs(chats, prefixes, choices)
    for chat, prefix, row in zip(chats, prefixes, got, strict=True):
        prompt = backend.render(chat, prefix)
        prompt_ids = backend._encode([prompt])[0]
        for choice, score in zip(choices, row, strict=True):
            full = backend._encode([prompt + choice])[0]
            assert full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids)
            with torch.inference_mode():
                logprobs = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), dim=-1)
            expected = sum(float(logprobs[t - 1, full[t]]) for t in range(len(prompt_ids), len(full)))
            assert abs(score - expected) < 1e-3
