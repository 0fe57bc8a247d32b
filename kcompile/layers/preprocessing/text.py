"""TextVectorization: strings -> token indices or bag-of-words vectors, eagerly in numpy.

Like the lookup layers it runs before the compiled graph: call it on a list / numpy array of
strings (shape (batch,) or (batch, 1)) and feed its numpy output to the model, e.g.

    vectorize = layers.TextVectorization(max_tokens=1000, output_sequence_length=20)
    vectorize.adapt(train_texts)
    model.fit(vectorize(train_texts), labels)

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
from .lookup import StringLookup

_PUNCTUATION = re.compile(r"""[!"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']""")
_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
_SPLIT = ("whitespace", "character")


class TextVectorization(Layer):
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

    # ------------------------------------------------------------ call
    def __call__(self, inputs, *args, **kwargs):
        if hasattr(inputs, "node"):
            raise ValueError(f"TextVectorization '{self.name}' runs eagerly in numpy and cannot be part of a "
                             f"compiled model: call it on your strings and feed its output to the model")
        return self.call(inputs)

    def call(self, inputs):
        documents = self._documents(inputs)
        rows = [self._lookup._lookup(np.array(tokens, dtype=object)) for tokens in documents]
        if self.output_mode == "int":
            length = self.output_sequence_length
            if length is None:
                length = max((len(r) for r in rows), default=0)
            out = np.zeros((len(rows), length), np.int64)     # 0 is the padding (mask) index
            for i, r in enumerate(rows):
                out[i, :min(len(r), length)] = r[:length]
            return out
        return np.stack([self._lookup.encode_indices(r) for r in rows]) if rows else \
            np.zeros((0, self.vocabulary_size()), np.float32)

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
