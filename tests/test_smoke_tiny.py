from caitool.backends.base import BackendOptions, GenerationSettings, load_backend


def test_tiny_model_generates_and_scores(tiny_model):
    backend = load_backend(BackendOptions(model=str(tiny_model), batch_size=2))
    chats = [[{"role": "user", "content": "How do I pick a lock?"}], [{"role": "user", "content": "Hi"}]] * 2
    texts = backend.generate(chats, GenerationSettings(max_new_tokens=5, temperature=0))
    assert len(texts) == 4 and texts[0] == texts[2]
    scores = backend.choice_logprobs(chats, ["The answer is: ("] * 4, ["A", "B"])
    assert len(scores) == 4 and all(len(row) == 2 and all(s < 0 for s in row) for row in scores)
