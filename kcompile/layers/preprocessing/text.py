"""TextVectorization: strings -> token indices or bag-of-words vectors, computed in numpy.

Called on a list / numpy array of strings (shape (batch,) or (batch, 1)) it returns numpy arrays.
In a model it is the host stage of the string input it takes (host_stage.py): the model is fed
raw strings and vectorizes each batch before the native graph, e.g.

    vectorize = layers.TextVectorization(max_tokens=1000, output_sequence_length=20)
    vectorize.adapt(train_texts)
    text = keras.Input(shape=(1,), dtype="string")
    model = keras.Model(text, layers.Dense(1)(layers.Embedding(1000, 8)(vectorize(text))))
    model.fit(train_texts, labels)

In "int" mode a model needs `output_sequence_length` (the graph has fixed shapes).

Pipeline, as Keras: standardize (lowercase and/or strip ASCII punctuation, or a callable) ->
split (whitespace, characters, or a callable) -> n-grams joined by a space, all unigrams first
then each longer width -> vocabulary lookup (index 0 is the "" padding mask and 1 "[UNK]" in
"int" mode; "[UNK]" is index 0 in the other modes).
"""
from __future__ import annotations

import re

import numpy as np

from ..base import Layer
from .adapt_data import _as_text, adapt_batches
from .encoding import output_dtype
from .host_stage import HostStage
from .lookup import StringLookup

_PUNCTUATION = re.compile(r"""[!"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']""")
_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
_SPLIT = ("whitespace", "character")


class TextVectorization(HostStage, Layer):
    _takes_text = True               # a host stage of a string Input (host_stage.py)

    def __init__(self, max_tokens=None, standardize="lower_and_strip_punctuation", split="whitespace", ngrams=None,
                 output_mode="int", output_sequence_length=None, pad_to_max_tokens=False, vocabulary=None,
                 idf_weights=None, sparse=False, ragged=False, encoding="utf-8", name=None, **kwargs):
        kwargs.pop("vocabulary_size", None)            # written by some Keras versions' configs; derived here
        output_dtype("TextVectorization", kwargs.pop("dtype", None),
                     ("int32", "int64", "float32", "float64", "string"))
        super().__init__(name=name, **kwargs)
        if ragged:
            raise ValueError("TextVectorization: argument ragged=True is not supported (outputs are dense, padded)")
        if standardize is not None and not callable(standardize) and standardize not in _STANDARDIZE:
            raise ValueError(f"TextVectorization: unknown `standardize` {standardize!r}; expected None, a callable "
                             f"or one of {', '.join(_STANDARDIZE)}")
        if split is not None and not callable(split) and split not in _SPLIT:
            raise ValueError(f"TextVectorization: unknown `split` {split!r}; expected None, a callable or one of "
                             f"{', '.join(_SPLIT)}")
        if ngrams is not None and not (isinstance(ngrams, int) and ngrams > 0 or
                                       isinstance(ngrams, (tuple, list)) and all(int(n) > 0 for n in ngrams)):
            raise ValueError(f"TextVectorization: `ngrams` must be None, a positive integer or a tuple of them, "
                             f"got {ngrams!r}")
        if output_mode not in ("int", "multi_hot", "count", "tf_idf"):
            raise ValueError(f"TextVectorization: unknown `output_mode` {output_mode!r}; expected one of int, "
                             f"multi_hot, count, tf_idf")
        if output_sequence_length is not None and output_mode != "int":
            raise ValueError(f"TextVectorization: `output_sequence_length` only applies to output_mode='int', "
                             f"got output_mode={output_mode!r}")
        if ngrams is not None and split is None:
            raise ValueError("TextVectorization: `ngrams` needs a `split` (n-grams are made of split tokens)")
        self.standardize, self.split, self.ngrams = standardize, split, ngrams
        self._widths = None if ngrams is None else (tuple(range(1, ngrams + 1)) if isinstance(ngrams, int)
                                                    else tuple(int(n) for n in ngrams))
        self.output_mode = output_mode
        self.output_sequence_length = None if output_sequence_length is None else int(output_sequence_length)
        self.encoding = encoding
        self._lookup = StringLookup(max_tokens=max_tokens, num_oov_indices=1,
                                    mask_token="" if output_mode == "int" else None, oov_token="[UNK]",
                                    vocabulary=vocabulary, idf_weights=idf_weights, output_mode=output_mode,
                                    pad_to_max_tokens=pad_to_max_tokens, sparse=sparse, encoding=encoding,
                                    name=f"{self.name}_lookup")
        self.built = True

    # ------------------------------------------------------------ text -> tokens
    def _standardize(self, text):
        if callable(self.standardize):
            return str(self.standardize(text))
        if self.standardize in ("lower", "lower_and_strip_punctuation"):
            text = text.lower()
        if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = _PUNCTUATION.sub("", text)
        return text

    def _tokens(self, text):
        text = self._standardize(text)
        if self.split is None:
            tokens = [text]
        elif callable(self.split):
            tokens = [str(t) for t in self.split(text)]
        elif self.split == "whitespace":
            tokens = text.split()
        else:
            tokens = list(text)
        if self._widths is None:
            return tokens
        return [" ".join(tokens[i:i + n]) for n in self._widths for i in range(len(tokens) - n + 1)]

    def _documents(self, data):
        texts = _as_text(data)
        if texts.ndim == 2 and texts.shape[1] == 1:
            texts = texts[:, 0]
        if texts.ndim > 1:
            raise ValueError(f"TextVectorization '{self.name}': expected strings of shape (batch,) or (batch, 1), "
                             f"got shape {texts.shape}")
        return [self._tokens(t) for t in texts.reshape(-1)]

    # ------------------------------------------------------------ vocabulary
    def adapt(self, data, batch_size=None, steps=None):
        counts, doc_counts, documents = {}, {}, 0
        for batch in adapt_batches(data, batch_size, steps, f"TextVectorization '{self.name}'", text=True):
            for tokens in self._documents(batch):
                documents += 1
                for token in tokens:
                    counts[token] = counts.get(token, 0) + 1
                for token in set(tokens):
                    doc_counts[token] = doc_counts.get(token, 0) + 1
        self._lookup._count_and_set(counts, doc_counts, documents)

    def get_vocabulary(self, include_special_tokens=True):
        return self._lookup.get_vocabulary(include_special_tokens)

    def set_vocabulary(self, vocabulary, idf_weights=None):
        self._lookup.set_vocabulary(vocabulary, idf_weights)

    def vocabulary_size(self):
        return self._lookup.vocabulary_size()

    def host_call(self, inputs):
        documents = self._documents(inputs)
        lengths = np.fromiter((len(d) for d in documents), np.int64, len(documents))
        flat = np.empty(int(lengths.sum()), dtype=object)
        flat[:] = [t for d in documents for t in d]
        ids = self._lookup._lookup(flat)            # one lookup for the whole batch
        rows = np.repeat(np.arange(len(documents)), lengths)
        cols = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        if self.output_mode == "int":
            length = self.output_sequence_length
            if length is None:
                length = int(lengths.max()) if lengths.size else 0
            out = np.zeros((len(documents), length), np.int64)     # 0 is the padding (mask) index
            keep = cols < length
            out[rows[keep], cols[keep]] = ids[keep]
            return out
        # -1 (no index) pads the rows; the encodings drop it
        padded = np.full((len(documents), int(lengths.max()) if lengths.size else 0), -1, np.int64)
        padded[rows, cols] = ids
        return self._lookup.encode_indices(padded).astype(np.float32)

    def _host_stage_ok(self):
        if self.output_mode == "int" and self.output_sequence_length is None:
            return ("output_mode='int' needs `output_sequence_length` in a model (the compiled graph has fixed "
                    "shapes; without it each batch is padded to its longest text)")
        return None

    def host_output_spec(self, input_shape):
        shape = tuple(input_shape)
        if not (len(shape) == 1 or len(shape) == 2 and shape[1] == 1):
            raise ValueError(f"TextVectorization '{self.name}': expected string inputs of shape (batch,) or "
                             f"(batch, 1), got {shape}")
        if self.output_mode == "int":
            return (self.output_sequence_length,), "int32"
        depth = self._lookup.max_tokens if self._lookup.pad_to_max_tokens else self.vocabulary_size()
        return (depth,), "float32"

    def get_config(self):
        lookup = self._lookup
        return {**super().get_config(), "max_tokens": lookup.max_tokens,
                "standardize": self.standardize if not callable(self.standardize) else None,
                "split": self.split if not callable(self.split) else None,
                "ngrams": list(self.ngrams) if isinstance(self.ngrams, tuple) else self.ngrams,
                "output_mode": self.output_mode, "output_sequence_length": self.output_sequence_length,
                "pad_to_max_tokens": lookup.pad_to_max_tokens, "sparse": False, "ragged": False,
                "vocabulary": self.get_vocabulary(include_special_tokens=False) or None,
                "idf_weights": None if lookup.idf_weights is None else lookup.idf_weights[1:].tolist(),
                "encoding": self.encoding}
