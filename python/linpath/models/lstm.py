"""The word-level LSTM language model of Zaremba, Sutskever & Vinyals (2014) on the Penn Treebank.

:class:`LSTMLanguageModel` runs in Rust (libtorch's ``lstm`` op); :class:`TorchLSTMLanguageModel`
is its plain-PyTorch twin (``nn.Embedding`` + ``nn.LSTM`` + ``nn.Linear``, same parameter names
and outputs). The defaults are Zaremba et al.'s "small" model: 10,000 words, embedding and hidden
width 200, two layers, no dropout, every parameter initialised uniform in ±0.1. They trained it with
20 unrolled steps, minibatches of 20, plain SGD at lr 1 for 13 epochs (halving lr each epoch after
the 4th) and gradients clipped to norm 5.

Inputs are int64 token ids ``X [n, T]`` and next-word targets ``Y [n, T]``
(:func:`linpath.datasets.lm_windows` cuts a token stream into such windows). Each row is an
independent sequence starting from a zero state, a simplification of Zaremba et al., who carry the
state across consecutive minibatches of one long stream. J is the mean per-word cross-entropy
(nats), so the perplexity is ``exp(J)``; the error rate is the fraction of words whose most likely
prediction is wrong.
"""

from __future__ import annotations

import math
from typing import ClassVar, TypedDict

import torch
from torch import nn

from .._checks import I64_END, U64_END, integer, real
from .native import NativeModel


class TorchLSTMLanguageModel(nn.Module):
    """The plain-PyTorch twin of :class:`LSTMLanguageModel` (same parameter names, shapes, outputs).

    ``embedding`` (``nn.Embedding``), ``lstm`` (``nn.LSTM``, ``batch_first=True``, inter-layer
    dropout), ``decoder`` (``nn.Linear``); with ``dropout > 0`` training also drops the embedding
    output and the last LSTM layer's output, as Zaremba et al. do. Every row starts from a zero state.
    """

    def __init__(
        self,
        vocab_size: int = 10_000,
        embedding_size: int = 200,
        hidden_size: int = 200,
        num_layers: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.lstm = nn.LSTM(embedding_size, hidden_size, num_layers, batch_first=True, dropout=dropout)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, T, vocab]`` for token ids ``x`` (``[n, T]``)."""
        out, _ = self.lstm(self.drop(self.embedding(x)))
        return self.decoder(self.drop(out))


class _LSTMConfig(TypedDict):
    """The checked configuration of an :class:`LSTMLanguageModel`, as passed to Rust."""

    vocab_size: int
    embedding_size: int
    hidden_size: int
    num_layers: int
    dropout: float
    init_scale: float


class LSTMLanguageModel(NativeModel):
    """A word-level LSTM language model run by LibTorch in Rust (the paper's PTB model).

    Args:
        vocab_size: Number of words; token ids lie in ``[0, vocab_size)``.
        embedding_size: Width of the word embedding.
        hidden_size: Units per LSTM layer.
        num_layers: Stacked LSTM layers.
        dropout: Drop probability of the non-recurrent connections while training (the embedding
            output, between layers, before the decoder), in [0, 1); 0 for the small model.
        init_scale: Every parameter is initialised uniform in ``[-init_scale, init_scale]``.
        seed: Seed of the initialisation (from a private generator; the global RNG is left alone).

    The parameters are ``embedding.weight``, ``lstm.weight_ih_l{k}``, ``lstm.weight_hh_l{k}``,
    ``lstm.bias_ih_l{k}``, ``lstm.bias_hh_l{k}`` (gate order i, f, g, o, as ``nn.LSTM``),
    ``decoder.weight`` and ``decoder.bias``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For sizes outside [1, 2**63), dropout outside [0, 1), a non-positive
            init_scale, or parameters that would not fit in this machine's memory.
    """

    kind: ClassVar[str] = "lstm"
    input_dtype: ClassVar[torch.dtype] = torch.int64
    objective_is_cross_entropy = False  # per-word cross-entropy over [n, T] windows

    def __init__(
        self,
        vocab_size: int = 10_000,
        embedding_size: int = 200,
        hidden_size: int = 200,
        num_layers: int = 2,
        dropout: float = 0.0,
        init_scale: float = 0.1,
        seed: int = 0,
    ) -> None:
        self._config: _LSTMConfig = {
            "vocab_size": integer("vocab_size", vocab_size, 1, I64_END),
            "embedding_size": integer("embedding_size", embedding_size, 1, I64_END),
            "hidden_size": integer("hidden_size", hidden_size, 1, I64_END),
            "num_layers": integer("num_layers", num_layers, 1, I64_END),
            "dropout": real("dropout", dropout),
            "init_scale": real("init_scale", init_scale),
        }
        super().__init__(self._config, integer("seed", seed, -I64_END, U64_END))

    def reset_parameters(self, seed: int = 0) -> None:
        """Draws every parameter uniform in ±``init_scale`` from a generator seeded with ``seed``."""
        gen = torch.Generator().manual_seed(int(seed))
        scale = self._config["init_scale"]
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-scale, scale, generator=gen)

    @property
    def vocab_size(self) -> int:
        """Number of words."""
        return self._config["vocab_size"]

    @property
    def embedding_size(self) -> int:
        """Width of the word embedding."""
        return self._config["embedding_size"]

    @property
    def hidden_size(self) -> int:
        """Units per LSTM layer."""
        return self._config["hidden_size"]

    @property
    def num_layers(self) -> int:
        """Number of stacked LSTM layers."""
        return self._config["num_layers"]

    @property
    def dropout(self) -> float:
        """Drop probability of the non-recurrent connections while training."""
        return self._config["dropout"]

    @property
    def init_scale(self) -> float:
        """Half-width of the uniform initialisation."""
        return self._config["init_scale"]

    def to_torch(self) -> TorchLSTMLanguageModel:
        """An equivalent plain-PyTorch module holding a copy of the parameters (same names)."""
        cfg = self._config
        twin = TorchLSTMLanguageModel(
            cfg["vocab_size"], cfg["embedding_size"], cfg["hidden_size"], cfg["num_layers"], cfg["dropout"]
        )
        twin.load_state_dict(self.state_dict())
        return twin.train(self.training)

    def perplexity(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """``exp(J)``: the per-word perplexity of the targets ``y`` given the ids ``x`` (both ``[n, T]``)."""
        return math.exp(self.evaluate(x, y)[0])

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._config.items())
