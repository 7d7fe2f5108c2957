"""Hugging Face models from small configs (random weights, no download) on synthetic padded tokens:
``step=`` and the default path reproduce the model's own ``.loss``, weighted by label tokens
(python/linpath/batches.py), and attention masks are respected."""

import copy

import numpy as np
import pytest
import torch

import linpath

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

VOCAB, T = 61, 12
ALPHAS = [0.0, 0.5, 1.0]


def _gpt2(seed: int, init: float = 0.02):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        initializer_range=init,
    )
    return transformers.GPT2LMHeadModel(config).eval()


def _bert_config(**kw):
    return transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        **kw,
    )


def _bert_mlm(seed: int):
    torch.manual_seed(seed)
    return transformers.BertForMaskedLM(_bert_config()).eval()


def _bert_cls(seed: int):
    torch.manual_seed(seed)
    return transformers.BertForSequenceClassification(_bert_config(num_labels=3)).eval()


def _padded(seed: int, sizes=(5, 3, 4), left: bool = False):
    """Dict batches of token ids with padding (attention mask 0, labels -100 there), sequences of
    random lengths, batches of different sizes (so token weighting differs from batch weighting)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for n in sizes:
        ids = torch.randint(1, VOCAB, (n, T), generator=g)
        lengths = torch.randint(2, T + 1, (n,), generator=g)
        pos = torch.arange(T).expand(n, T)
        mask = (pos >= T - lengths[:, None]) if left else (pos < lengths[:, None])
        ids = ids.masked_fill(~mask, 0)
        labels = ids.masked_fill(~mask, -100)
        if left:  # the first real token would be predicted from the padding: not a label
            labels[torch.arange(n), T - lengths] = -100
        batches.append({"input_ids": ids, "attention_mask": mask.long(), "labels": labels})
    return batches


def _mlm_labels(batches, seed: int):
    """Masked-LM labels: a random third of the real tokens are predicted, the rest -100."""
    g = torch.Generator().manual_seed(seed)
    for b in batches:
        keep = (torch.rand(b["labels"].shape, generator=g) < 0.35) & (b["attention_mask"] == 1)
        b["labels"] = b["input_ids"].masked_fill(~keep, -100)
    return batches


def _reference(model, batches, causal: bool) -> float:
    """The model's own .loss on each batch, weighted by the labels it averages over (computed here
    the slow obvious way: for a causal LM the labels from position 1 on that are not -100)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for b in batches:
            loss = model(**b).loss.double().item()
            labels = b["labels"][:, 1:] if causal else b["labels"]
            n = int((labels != -100).sum()) if labels.dim() > 1 else len(labels)
            total += loss * n
            count += n
    return total / count


def _close(a: float, b: float, rel: float = 1e-5) -> None:
    assert abs(a - b) <= rel * abs(b), (a, b, abs(a - b) / abs(b))


def _hand_token_loss(model, batches) -> float:
    """The causal LM's mean token cross-entropy from its logits, written out by hand."""
    losses = []
    with torch.no_grad():
        for b in batches:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.double()
            for i in range(len(logits)):
                for t in range(T - 1):
                    target = int(b["labels"][i, t + 1])
                    if target != -100:
                        losses.append(-torch.log_softmax(logits[i, t], 0)[target].item())
    return float(np.mean(losses))


@pytest.mark.parametrize(
    ("make", "causal", "label_fn"),
    [(_gpt2, True, None), (_bert_mlm, False, _mlm_labels), (_bert_cls, False, "cls")],
    ids=["gpt2", "bert_mlm", "bert_cls"],
)
def test_default_path_and_step_reproduce_the_models_own_loss(make, causal, label_fn):
    model, start = make(0), make(1)
    batches = _padded(2)
    if label_fn == "cls":
        g = torch.Generator().manual_seed(3)
        for b in batches:
            b["labels"] = torch.randint(0, 3, (len(b["input_ids"]),), generator=g)
    elif label_fn is not None:
        batches = label_fn(batches, 3)
    before = copy.deepcopy(model.state_dict())
    default = linpath.interpolate(model, start, model, batches, alphas=ALPHAS, progress=False)
    step = linpath.interpolate(
        model, start, model, batches, alphas=ALPHAS, progress=False, step=lambda m, b: m(**b).loss
    )
    _close(default.values["data"]["loss"][-1], _reference(model, batches, causal))
    _close(step.values["data"]["loss"][-1], _reference(model, batches, causal))
    _close(default.values["data"]["loss"][0], _reference(start, batches, causal))
    assert default.values["data"]["loss"][1] == pytest.approx(step.values["data"]["loss"][1], rel=1e-12)
    assert step.meta["engine"] == "module" and step.meta["loss"] == "step:<lambda>"
    if label_fn == "cls":  # a score per class and a class per row: the error rate too
        with torch.no_grad():
            wrong = sum(int((model(**b).logits.argmax(1) != b["labels"]).sum()) for b in batches)
        assert default.values["data"]["error"][-1] == wrong / sum(len(b["labels"]) for b in batches)
    else:
        assert "error" not in default.values["data"]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_gpt2_token_weighting_matches_a_hand_written_cross_entropy():
    """Weighted by label tokens (after the causal shift), the mean is the mean over every predicted
    token, which a batch-weighted or unshifted count would not give on batches of uneven padding."""
    model, start = _gpt2(0, init=0.5), _gpt2(1)  # large weights: batches' losses differ widely
    batches = _padded(5, sizes=(5, 2, 4))
    sweep = linpath.interpolate(model, start, model, batches, alphas=[1.0], progress=False)
    hand = _hand_token_loss(model, batches)
    _close(sweep.values["data"]["loss"][0], hand)
    with torch.no_grad():  # the naive alternatives differ by far more than the tolerance
        per_batch = [(model(**b).loss.item(), b) for b in batches]
    unshifted = sum(v * int((b["labels"] != -100).sum()) for v, b in per_batch) / sum(
        int((b["labels"] != -100).sum()) for _, b in per_batch
    )
    by_example = sum(v * len(b["labels"]) for v, b in per_batch) / sum(len(b["labels"]) for _, b in per_batch)
    assert abs(unshifted - hand) > 1e-3 * hand and abs(by_example - hand) > 1e-3 * hand


def test_a_dataloader_of_dicts():
    """A DataLoader collating dict examples (the Hugging Face style), last batch smaller."""
    model, start = _gpt2(0), _gpt2(1)
    examples = [{k: v[i] for k, v in b.items()} for b in _padded(7, sizes=(10,)) for i in range(10)]
    loader = torch.utils.data.DataLoader(examples, batch_size=4)
    sweep = linpath.interpolate(model, start, model, {"train": loader}, alphas=[1.0], progress=False)
    _close(sweep.values["train"]["loss"][0], _reference(model, list(loader), causal=True))


@pytest.mark.parametrize(
    ("make", "left"), [(_gpt2, True), (_bert_mlm, False)], ids=["gpt2_left", "bert_right"]
)
def test_attention_masks_are_respected(make, left):
    """Changing padded tokens' ids leaves the sweep as it was; changing a real token changes it."""
    model, start = make(0), make(1)
    batches = _padded(11, left=left)
    if make is _bert_mlm:
        batches = _mlm_labels(batches, 12)

    def run(bs):
        return linpath.interpolate(model, start, model, bs, alphas=ALPHAS, progress=False).values["data"][
            "loss"
        ]

    base = run(batches)
    g = torch.Generator().manual_seed(13)
    padded = [dict(b) for b in batches]
    for b in padded:
        noise = torch.randint(1, VOCAB, b["input_ids"].shape, generator=g)
        b["input_ids"] = torch.where(b["attention_mask"] == 1, b["input_ids"], noise)
    assert any((a["input_ids"] != b["input_ids"]).any() for a, b in zip(batches, padded, strict=True))
    np.testing.assert_allclose(run(padded), base, rtol=1e-6)
    real = [dict(b) for b in batches]
    first = real[0]["attention_mask"][0].nonzero()[0, 0]
    real[0]["input_ids"] = real[0]["input_ids"].clone()
    real[0]["input_ids"][0, first] = (real[0]["input_ids"][0, first] % (VOCAB - 1)) + 1
    assert not np.allclose(run(real), base, rtol=1e-6)


def test_an_lm_step_may_return_its_own_count_and_metrics():
    """A step returning a dict with extra metrics and a count: the names flow into Sweep.values."""
    model, start = _gpt2(0), _gpt2(1)
    batches = _padded(17)

    def step(m, b):
        out = m(**b)
        n = (b["labels"][:, 1:] != -100).sum()
        return {"loss": out.loss, "perplexity_sum": out.loss.exp(), "count": n}

    sweep = linpath.interpolate(model, start, model, batches, alphas=ALPHAS, progress=False, step=step)
    assert set(sweep.values["data"]) == {"loss", "perplexity_sum"}
    _close(sweep.values["data"]["loss"][-1], _reference(model, batches, causal=True))


def test_the_token_count_sees_through_a_compile_wrapper():
    """A ``torch.compile`` wrapper (an ``_orig_mod`` holder) of a causal LM still shifts the labels."""
    from linpath.batches import label_count

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    labels = torch.tensor([[5, 6, -100, -100], [-100, 7, 8, 9]])
    gpt2, bert = _gpt2(0), _bert_mlm(0)
    assert int(label_count(Wrapper(gpt2), labels)) == int(label_count(gpt2, labels)) == 4
    assert int(label_count(Wrapper(bert), labels)) == 5
