"""What is trained under ``--lora --dtype bfloat16`` is held in float32: the frozen base may be bfloat16, the
weights that learn may not (bfloat16 rounds away an update below 1/256 of the weight)."""

from __future__ import annotations


def test_lora_preference_model_trains_its_new_head_in_float32(tiny_model):
    import torch
    from peft import get_peft_model

    from caitool.training.options import TrainOptions
    from caitool.training.trainer import load_model_to_train, lora_config

    options = TrainOptions(output_dir="unused", lora=True, dtype="bfloat16")
    model = get_peft_model(
        load_model_to_train(str(tiny_model), options, head="reward"), lora_config(options, "SEQ_CLS")
    )
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert any("score" in name for name in trainable)
    assert {p.dtype for p in trainable.values()} == {torch.float32}, {
        n: p.dtype for n, p in trainable.items()
    }
    # The frozen base stays small.
    assert model.base_model.model.model.embed_tokens.weight.dtype == torch.bfloat16

    # One optimizer step at the LoRA learning rate of train-pm moves every weight of the head, large ones too.
    head = next(p for name, p in trainable.items() if "score" in name)
    before = head.detach().clone()
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-4, weight_decay=0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=torch.tensor([[1, 5, 9, 12]])).logits
    logits.float().sum().backward()
    optimizer.step()
    assert (head.grad != 0).all()
    unmoved = int((head.detach() == before).sum())
    assert unmoved == 0, f"{unmoved} head weights did not move"
