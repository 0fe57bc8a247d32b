"""StringLookup and IntegerLookup: vocabulary lookups that run eagerly in numpy.

Strings have no place in the compiled graph, so StringLookup (and TextVectorization, built on
it) is called on raw Python / numpy data and returns numpy arrays, which are then fed to a
compiled model; calling it on a symbolic tensor is refused with a message saying so.
IntegerLookup does the same on numpy data, and can also sit inside a compiled model (integer
inputs compared against its vocabulary as a constant) when it has at most one OOV index.

Index layout as Keras 3: [mask token (when mask_token is set and output_mode is "int")] +
num_oov_indices OOV buckets + vocabulary. In the other output modes the mask token has no index
and its occurrences are dropped. With several OOV buckets an unknown token goes to bucket
crc32(token) % n (Keras uses FarmHash, so the bucket of a given token may differ from Keras's;
the split is as uniform).
"""
from __future__ import annotations

import os
import zlib

import numpy as np

from ..base import Layer
from .adapt_data import _as_text, adapt_batches
from ... import ops
from .encoding import encode, encode_numpy, output_dtype

LOOKUP_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")


class IndexLookup(Layer):
    """Shared machinery of StringLookup and IntegerLookup (not a Keras public class)."""

    def __init__(self, max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights, invert,
                 output_mode, pad_to_max_tokens, sparse, dtype=None, **kwargs):
        super().__init__(**kwargs)
        kind = type(self).__name__
        # outputs: int64 indices, float32 encodings, or the tokens themselves when inverting
        output_dtype(kind, dtype, ("int32", "int64", "float32", "float64", "string"))
        if sparse:
            raise ValueError(f"{kind}: argument sparse=True is not supported (outputs are dense numpy arrays)")
        if output_mode not in LOOKUP_MODES:
            raise ValueError(f"{kind}: unknown `output_mode` {output_mode!r}; expected one of {', '.join(LOOKUP_MODES)}")
        if invert and output_mode != "int":
            raise ValueError(f"{kind}: invert=True only works with output_mode='int', got {output_mode!r}")
        if int(num_oov_indices) < 0:
            raise ValueError(f"{kind}: `num_oov_indices` must be >= 0, got {num_oov_indices}")
        if max_tokens is not None and int(max_tokens) <= 1:
            raise ValueError(f"{kind}: `max_tokens` must be greater than 1 (or None), got {max_tokens}")
        if pad_to_max_tokens and max_tokens is None:
            raise ValueError(f"{kind}: pad_to_max_tokens=True needs `max_tokens`")
        if idf_weights is not None and output_mode != "tf_idf":
            raise ValueError(f"{kind}: `idf_weights` is only used with output_mode='tf_idf'")
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.num_oov_indices = int(num_oov_indices)
        self.mask_token, self.oov_token = mask_token, oov_token
        self.invert, self.output_mode = bool(invert), output_mode
        self.pad_to_max_tokens, self.sparse = bool(pad_to_max_tokens), False
        self._tokens = []              # the vocabulary proper, without special tokens
        self._index = {}
        self._idf = None               # idf per index (tf_idf), specials included
        self.supports_masking = False
        self.built = True
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)
        elif idf_weights is not None:
            raise ValueError(f"{kind}: `idf_weights` needs a `vocabulary`")

    # ------------------------------------------------------------ token conversion (subclasses)
    def _convert(self, values):
        raise NotImplementedError(f"{type(self).__name__} must define _convert (StringLookup and IntegerLookup do)")

    def _vocab_from_file(self, path):
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]

    # ------------------------------------------------------------ vocabulary
    @property
    def _n_special(self):
        return self._mask_indexed + self.num_oov_indices

    @property
    def _mask_indexed(self):
        """The mask token owns index 0 only in "int" mode (Keras drops it in the encoded modes)."""
        return int(self.mask_token is not None and self.output_mode == "int")

    def set_vocabulary(self, vocabulary, idf_weights=None):
        kind = type(self).__name__
        if isinstance(vocabulary, (str, os.PathLike)) and os.path.isfile(vocabulary):
            vocabulary = self._vocab_from_file(vocabulary)
        tokens = list(self._convert(np.asarray(vocabulary, dtype=object).reshape(-1)))
        if self.mask_token is not None and tokens and tokens[0] == self._convert([self.mask_token])[0]:
            tokens = tokens[1:]       # Keras accepts a vocabulary that starts with the mask token
        oov = self._convert([self.oov_token])[0] if self.oov_token is not None else None
        while self.num_oov_indices and tokens and tokens[0] == oov:
            tokens = tokens[1:]
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"{kind}: the vocabulary contains repeated tokens")
        if self.mask_token is not None and self._convert([self.mask_token])[0] in tokens:
            raise ValueError(f"{kind}: the mask token {self.mask_token!r} may only be the first vocabulary entry")
        if self.max_tokens is not None and len(tokens) + self._n_special > self.max_tokens:
            raise ValueError(f"{kind}: a vocabulary of {len(tokens)} tokens plus {self._n_special} special indices "
                             f"exceeds max_tokens={self.max_tokens}")
        self._tokens = tokens
        self._index = {t: i + self._n_special for i, t in enumerate(tokens)}
        if self.output_mode == "tf_idf":
            if idf_weights is None:
                raise ValueError(f"{kind}: output_mode='tf_idf' needs `idf_weights` with a vocabulary (or adapt())")
            idf = np.asarray(idf_weights, np.float32).reshape(-1)
            if idf.size != len(tokens):
                raise ValueError(f"{kind}: `idf_weights` has {idf.size} entries for {len(tokens)} tokens")
            self._set_idf(idf)

    def _set_idf(self, token_idf):
        # OOV buckets get the mean idf (Keras's choice); the mask index gets 0
        specials = np.zeros(self._n_special, np.float32)
        if self.num_oov_indices:
            specials[self._mask_indexed:] = token_idf.mean() if token_idf.size else 0.0
        self._idf = np.concatenate([specials, token_idf]).astype(np.float32)

    def get_vocabulary(self, include_special_tokens=True):
        if not include_special_tokens:
            return list(self._tokens)
        head = [self.mask_token] * self._mask_indexed + [self.oov_token] * self.num_oov_indices
        return head + list(self._tokens)

    def vocabulary_size(self):
        return len(self._tokens) + self._n_special

    @property
    def idf_weights(self):
        return None if self._idf is None else self._idf.copy()

    def adapt(self, data, batch_size=None, steps=None):
        """Vocabulary = the most frequent tokens (ties: the later token in sort order first, as Keras),
        at most max_tokens minus the special indices; document frequencies give tf_idf weights."""
        counts, doc_counts, documents = {}, {}, 0
        for batch in adapt_batches(data, batch_size, steps, f"{type(self).__name__} '{self.name}'",
                                   text=self._is_text):
            batch = self._convert_array(batch)
            rows = batch.reshape(batch.shape[0], -1) if batch.ndim > 1 else batch.reshape(-1, 1)
            for row in rows:
                documents += 1
                for token in row:
                    counts[token] = counts.get(token, 0) + 1
                for token in set(row):
                    doc_counts[token] = doc_counts.get(token, 0) + 1
        self._count_and_set(counts, doc_counts, documents)

    def _count_and_set(self, counts, doc_counts, documents):
        skip = {self._convert([t])[0] for t in (self.mask_token, self.oov_token) if t is not None}
        items = sorted(((c, t) for t, c in counts.items() if t not in skip), reverse=True)
        if self.max_tokens is not None:
            items = items[:max(0, self.max_tokens - self._n_special)]
        tokens = [t for _, t in items]
        self._tokens = tokens
        self._index = {t: i + self._n_special for i, t in enumerate(tokens)}
        if self.output_mode == "tf_idf":
            df = np.array([doc_counts[t] for t in tokens], np.float64)
            self._set_idf(np.log1p(documents / (1.0 + df)).astype(np.float32))

    # ------------------------------------------------------------ lookup
    def _convert_array(self, values):
        arr = np.asarray(values, dtype=object)
        return np.array(list(self._convert(arr.reshape(-1))), dtype=object).reshape(arr.shape)

    def _lookup(self, tokens):
        """Indices of a numpy object array of tokens."""
        mask = self._convert([self.mask_token])[0] if self.mask_token is not None else None
        mask_offset = self._mask_indexed
        out = np.empty(tokens.shape, np.int64)
        flat_in, flat_out = tokens.reshape(-1), out.reshape(-1)
        for i, token in enumerate(flat_in):
            index = self._index.get(token)
            if index is None:
                if mask is not None and token == mask:
                    index = 0 if mask_offset else -1          # -1: dropped by the encodings
                elif self.num_oov_indices == 0:
                    raise ValueError(f"{type(self).__name__} '{self.name}': token {token!r} is not in the "
                                     f"vocabulary and num_oov_indices=0")
                else:
                    index = mask_offset + self._oov_bucket(token)
            flat_out[i] = index
        return out

    def _oov_bucket(self, token):
        if self.num_oov_indices == 1:
            return 0
        return zlib.crc32(str(token).encode("utf-8")) % self.num_oov_indices

    def _invert(self, indices):
        vocab = self.get_vocabulary()
        idx = np.asarray(indices, np.int64)
        bad = (idx < 0) | (idx >= len(vocab))
        if bad.any():
            raise ValueError(f"{type(self).__name__} '{self.name}': index {int(idx[bad][0])} is outside the "
                             f"vocabulary of size {len(vocab)}")
        tokens = np.array(vocab, dtype=object)[idx]
        return tokens if self._is_text else tokens.astype(np.int64)

    def encode_indices(self, indices):
        """int indices -> the layer's output_mode (numpy)."""
        if self.output_mode == "int":
            return indices
        depth = self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()
        mode = "count" if self.output_mode == "tf_idf" else self.output_mode
        out = encode_numpy(indices, mode, depth, layer=f"{type(self).__name__} '{self.name}'")
        if self.output_mode == "tf_idf":
            if self._idf is None:
                raise ValueError(f"{type(self).__name__} '{self.name}': tf_idf needs adapt() or idf_weights")
            idf = np.zeros(depth, np.float32)
            idf[:self._idf.size] = self._idf
            out = out * idf
        return out

    def __call__(self, inputs, *args, **kwargs):
        if hasattr(inputs, "node"):
            if self._is_text:
                raise ValueError(f"{type(self).__name__} '{self.name}' runs eagerly in numpy and cannot be part of "
                                 f"a compiled model: call it on your raw data and feed its output to the model")
            return super().__call__(inputs, *args, **kwargs)
        return self.call(inputs)

    def call(self, inputs):
        if hasattr(inputs, "node"):
            return self._graph_call(inputs)
        if self.invert:
            return self._invert(inputs)
        tokens = self._convert_array(_as_text(inputs) if self._is_text else inputs)
        return self.encode_indices(self._lookup(tokens))

    def get_config(self):
        return {**super().get_config(), "max_tokens": self.max_tokens, "num_oov_indices": self.num_oov_indices,
                "mask_token": self.mask_token, "oov_token": self.oov_token,
                "vocabulary": self.get_vocabulary(include_special_tokens=False) or None,
                "idf_weights": None if self._idf is None else self._idf[self._n_special:].tolist(),
                "invert": self.invert, "output_mode": self.output_mode,
                "pad_to_max_tokens": self.pad_to_max_tokens, "sparse": self.sparse}


class StringLookup(IndexLookup):
    """Strings to indices (or the reverse with invert=True)."""
    _is_text = True

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token="[UNK]", vocabulary=None,
                 idf_weights=None, invert=False, output_mode="int", pad_to_max_tokens=False, sparse=False,
                 encoding="utf-8", name=None, **kwargs):
        kwargs.pop("vocabulary_dtype", None)
        self.encoding = encoding
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights, invert,
                         output_mode, pad_to_max_tokens, sparse, name=name, **kwargs)

    def _convert(self, values):
        return [v.decode(self.encoding) if isinstance(v, bytes) else str(v) for v in values]

    def get_config(self):
        return {**super().get_config(), "encoding": self.encoding}


class IntegerLookup(IndexLookup):
    """Integers to indices (or the reverse with invert=True)."""
    _is_text = False

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token=-1, vocabulary=None,
                 vocabulary_dtype="int64", idf_weights=None, invert=False, output_mode="int", sparse=False,
                 pad_to_max_tokens=False, name=None, **kwargs):
        if vocabulary_dtype not in ("int32", "int64"):
            raise ValueError(f"IntegerLookup: vocabulary_dtype must be 'int32' or 'int64', got {vocabulary_dtype!r}")
        self.vocabulary_dtype = vocabulary_dtype
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights, invert,
                         output_mode, pad_to_max_tokens, sparse, name=name, **kwargs)

    def _convert(self, values):
        return [int(v) for v in values]

    def _graph_call(self, x):
        """In a compiled model: compare against the vocabulary held as a constant (fixed when the
        model is traced, so adapt first). An unknown value with num_oov_indices=0 gives index -1."""
        if self.num_oov_indices > 1:
            raise ValueError(f"IntegerLookup '{self.name}': with num_oov_indices > 1 (hashed OOV buckets) the "
                             f"layer runs eagerly in numpy only; call it on your data before the model")
        vocab = self.get_vocabulary()
        if self.invert:
            table = np.array(vocab, np.int64)
            if np.abs(table).max() >= 2 ** 24:      # gathered through float32 arithmetic: exact below 2^24
                raise ValueError(f"IntegerLookup '{self.name}': invert=True in a compiled model needs vocabulary "
                                 f"values below 2**24 in magnitude; call it on numpy data instead")
            index = ops.cast(x, "int32")
            picked = ops.sum(ops.multiply(ops.one_hot(index, len(vocab)), table.astype(np.float32)), axis=-1)
            return ops.cast(picked, "int32")
        values = np.array(self._tokens, np.int64)
        if values.size and (values.min() < -2 ** 31 or values.max() >= 2 ** 31):
            raise ValueError(f"IntegerLookup '{self.name}': vocabulary values must fit in int32 in a compiled model")
        x = ops.cast(x, "int32")
        hits = ops.equal(ops.expand_dims(x, -1), values.astype(np.int32))             # (..., V) 0/1
        positions = np.arange(values.size, dtype=np.float32) + self._n_special
        found = ops.sum(hits, axis=-1)
        miss = float(self._mask_indexed) if self.num_oov_indices else -1.0
        index = ops.add(ops.sum(ops.multiply(hits, positions), axis=-1), ops.multiply(ops.subtract(1.0, found), miss))
        if self.mask_token is not None:
            index = ops.where(ops.equal(x, int(self.mask_token)), 0.0 if self._mask_indexed else -1.0, index)
        index = ops.cast(index, "int32")
        if self.output_mode == "int":
            return index
        depth = self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()
        mode = "count" if self.output_mode == "tf_idf" else self.output_mode
        out = encode(index, mode, depth, layer=f"IntegerLookup '{self.name}'")
        if self.output_mode == "tf_idf":
            if self._idf is None:
                raise ValueError(f"IntegerLookup '{self.name}': tf_idf needs adapt() or idf_weights")
            idf = np.zeros(depth, np.float32)
            idf[:self._idf.size] = self._idf
            out = ops.multiply(out, idf)
        return out

    def _vocab_from_file(self, path):
        return [int(t) for t in super()._vocab_from_file(path) if t.strip()]

    def get_config(self):
        return {**super().get_config(), "vocabulary_dtype": self.vocabulary_dtype}
