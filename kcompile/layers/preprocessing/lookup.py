"""StringLookup and IntegerLookup: vocabulary lookups computed in numpy.

Called on Python / numpy data they return numpy arrays. In a model, StringLookup (strings have no
place in the graph IR) and IntegerLookup with several OOV buckets are the host stage of the
model input they take (host_stage.py): run on every batch before the native graph, which gets
their int32 / float32 output. IntegerLookup with at most one OOV index is part of the graph
instead (its inputs compared against the vocabulary held as a constant).

Index layout as Keras 3: [mask token (when mask_token is set and output_mode is "int")] +
num_oov_indices OOV buckets + vocabulary. In the other output modes the mask token has no index
and its occurrences are dropped. With several OOV buckets an unknown token goes to bucket
Fingerprint64(token) % n for strings (tf.strings.to_hash_bucket_fast, as Keras) and
token mod n (floor) for integers (Keras's tf.math.floormod).
"""
from __future__ import annotations

import os

import numpy as np

from ..base import Layer
from .adapt_data import _as_text, adapt_batches
from ... import ops
from .encoding import encode, encode_numpy, output_dtype
from .farmhash import hash_buckets
from .host_stage import HostStage

LOOKUP_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")


class IndexLookup(HostStage, Layer):
    """Shared machinery of StringLookup and IntegerLookup (not a Keras public class)."""

    def __init__(self, max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights, invert,
                 output_mode, pad_to_max_tokens, sparse, dtype=None, **kwargs):
        kwargs.pop("vocabulary_size", None)            # written by Keras 3's configs; derived here
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
        """Indices of a numpy object array of tokens: one dict probe per token, then the misses
        (mask, OOV) sorted out together."""
        flat = tokens.reshape(-1)
        get = self._index.get
        out = np.fromiter((get(t, -1) for t in flat), np.int64, flat.size)
        missing = np.flatnonzero(out < 0)
        if missing.size:
            tokens_missing = flat[missing]
            is_mask = np.zeros(missing.size, bool)
            if self.mask_token is not None:
                mask = self._convert([self.mask_token])[0]
                is_mask = np.array([t == mask for t in tokens_missing], bool)
                out[missing[is_mask]] = 0 if self._mask_indexed else -1      # -1: dropped by the encodings
            oov = missing[~is_mask]
            if oov.size:
                if self.num_oov_indices == 0:
                    raise ValueError(f"{type(self).__name__} '{self.name}': token {flat[oov[0]]!r} is not in the "
                                     f"vocabulary and num_oov_indices=0")
                out[oov] = self._mask_indexed + self._oov_buckets(flat[oov])
        return out.reshape(tokens.shape)

    def _oov_buckets(self, tokens):
        raise NotImplementedError(f"{type(self).__name__} must define _oov_buckets "
                                  f"(StringLookup and IntegerLookup do)")

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
            return super().__call__(inputs, *args, **kwargs)
        return self.call(inputs)

    def call(self, inputs):
        if hasattr(inputs, "node"):
            return self._symbolic_call(inputs) if self._is_host_stage() else self._graph_call(inputs)
        if self.invert:
            return self._invert(inputs)
        tokens = self._convert_array(_as_text(inputs) if self._is_text else inputs)
        return self.encode_indices(self._lookup(tokens))

    # ------------------------------------------------------------ host stage (host_stage.py)
    def _is_host_stage(self):
        return True

    def _host_stage_ok(self):
        if self.invert:
            return "invert=True gives back tokens, which the compiled graph cannot hold; call it on numpy data"
        return None

    def host_call(self, inputs):
        return self.call(inputs)

    def host_output_spec(self, input_shape):
        shape = tuple(input_shape[1:])
        if self.output_mode == "int":
            return shape, "int32"
        depth = self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()
        if self.output_mode == "one_hot":
            return (shape[:-1] if shape and shape[-1] == 1 else shape) + (depth,), "float32"
        if len(shape) > 1:
            raise ValueError(f"{self._host_label()}: output_mode={self.output_mode!r} supports inputs of rank at "
                             f"most 2, got shape {tuple(input_shape)}")
        return (depth,), "float32"

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
    _takes_text = True

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token="[UNK]", vocabulary=None,
                 idf_weights=None, invert=False, output_mode="int", pad_to_max_tokens=False, sparse=False,
                 encoding="utf-8", name=None, **kwargs):
        kwargs.pop("vocabulary_dtype", None)
        self.encoding = encoding
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights, invert,
                         output_mode, pad_to_max_tokens, sparse, name=name, **kwargs)

    def _convert(self, values):
        return [v.decode(self.encoding) if isinstance(v, bytes) else str(v) for v in values]

    def _oov_buckets(self, tokens):
        if self.num_oov_indices == 1:
            return np.zeros(len(tokens), np.int64)
        return hash_buckets(list(tokens), self.num_oov_indices, encoding=self.encoding)

    def get_config(self):
        return {**super().get_config(), "encoding": self.encoding}


class IntegerLookup(IndexLookup):
    """Integers to indices (or the reverse with invert=True)."""
    _is_text = False

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token=-1, vocabulary=None,
                 vocabulary_dtype="int64", idf_weights=None, invert=False, output_mode="int", sparse=False,
                 pad_to_max_tokens=False, oov_method="floormod", salt=None, name=None, **kwargs):
        if vocabulary_dtype not in ("int32", "int64"):
            raise ValueError(f"IntegerLookup: vocabulary_dtype must be 'int32' or 'int64', got {vocabulary_dtype!r}")
        if oov_method not in ("floormod", "farmhash"):
            raise ValueError(f"IntegerLookup: `oov_method` must be 'floormod' or 'farmhash', got {oov_method!r}")
        if salt is not None:
            if oov_method != "farmhash":
                raise ValueError("IntegerLookup: `salt` only applies with oov_method='farmhash' (it keys SipHash)")
            if isinstance(salt, (int, np.integer)) and not isinstance(salt, bool):
                salt = [int(salt), int(salt)]
            elif not (isinstance(salt, (list, tuple)) and len(salt) == 2 and
                      all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in salt)):
                raise ValueError(f"IntegerLookup: `salt` must be an integer or two integers, got {salt!r}")
            salt = [int(v) for v in salt]
        self.vocabulary_dtype = vocabulary_dtype
        self.oov_method, self.salt = oov_method, salt
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights, invert,
                         output_mode, pad_to_max_tokens, sparse, name=name, **kwargs)

    def _convert(self, values):
        return [int(v) for v in values]

    def _oov_buckets(self, tokens):
        if self.oov_method == "farmhash":    # the decimal text hashed: FarmHash, or SipHash keyed by salt
            return hash_buckets(list(tokens), self.num_oov_indices, key=self.salt)
        return np.asarray(list(tokens), np.int64) % self.num_oov_indices     # floor mod, as Keras

    def _is_host_stage(self):
        # hashed OOV buckets need a modulo the graph does not have; invert never looks at OOV
        return self.num_oov_indices > 1 and not self.invert

    def _graph_call(self, x):
        """In a compiled model: compare against the vocabulary held as a constant (fixed when the
        model is traced, so adapt first). An unknown value with num_oov_indices=0 gives index -1."""
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
        extra = {} if self.oov_method == "floormod" else {"oov_method": self.oov_method, "salt": self.salt}
        # (the defaults are left out: Keras versions before oov_method refuse the keys)
        return {**super().get_config(), "vocabulary_dtype": self.vocabulary_dtype, **extra}
