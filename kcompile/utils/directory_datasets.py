"""image_dataset_from_directory and text_dataset_from_directory.

Both index a directory the Keras way (`index_directory`): with labels='inferred' each
sub-folder, in alphabetical order, is a class and its files (searched recursively, sorted) get
that class's index; the file list is shuffled with a seeded permutation, then the last
`validation_split` fraction is the validation subset. Files are read lazily, batch by batch.
"""
from __future__ import annotations

import os

import numpy as np

from ..data.dataset import Dataset
from . import image_utils

IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
TEXT_FORMATS = (".txt",)


def _check_directory(directory):
    directory = os.fspath(directory)
    if not os.path.exists(directory):
        raise FileNotFoundError(f"Could not find directory {directory}")
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"Expected a directory of files, but {directory} is not a directory")
    return directory


def _files_under(root, formats, follow_links):
    found = []
    for dirpath, _, files in sorted(os.walk(root, followlinks=follow_links), key=lambda t: t[0]):
        for name in sorted(files):
            if name.lower().endswith(formats):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def index_directory(directory, labels, formats, class_names=None, shuffle=True, seed=None, follow_links=False,
                    verbose=True):
    """(file_paths, labels or None, class_names) for the files of `directory`."""
    directory = _check_directory(directory)
    if _inferred(labels):
        subdirs = [d for d in sorted(os.listdir(directory)) if os.path.isdir(os.path.join(directory, d))]
        if class_names is not None:
            if not set(class_names).issubset(subdirs):
                raise ValueError("The `class_names` passed did not match the names of the subdirectories of the "
                                 f"target directory. Expected: {subdirs} (or a subset of it), but received: "
                                 f"class_names={class_names}")
            subdirs = list(class_names)   # the caller's order sets the label indices
    else:
        subdirs = [""]
        if class_names is not None:
            if labels is None:
                raise ValueError("When `labels=None` (no labels), argument `class_names` cannot be specified.")
            raise ValueError("When argument `labels` is specified, argument `class_names` cannot be specified (the "
                             "`class_names` will be the sorted list of labels).")
    filenames, label_list = [], []
    for index, sub in enumerate(subdirs):
        names = _files_under(os.path.join(directory, sub), formats, follow_links)
        filenames += [os.path.join(sub, n) for n in names]
        label_list += [index] * len(names)
    if _inferred(labels):
        class_names = subdirs
        label_array = np.asarray(label_list, np.int32)
    elif labels is None:
        class_names, label_array = None, None
    else:
        if len(labels) != len(filenames):
            raise ValueError(f"Expected the lengths of `labels` to match the number of files in the target "
                             f"directory. len(labels) is {len(labels)} while we found {len(filenames)} files in "
                             f"directory {directory}.")
        class_names = [str(label) for label in sorted(set(labels))]
        label_array = np.asarray(labels)
    if verbose:
        if label_array is None:
            print(f"Found {len(filenames)} files.")
        else:
            print(f"Found {len(filenames)} files belonging to {len(class_names)} classes.")
    paths = [os.path.join(directory, f) for f in filenames]
    if shuffle:
        if seed is None:
            seed = np.random.randint(1_000_000)
        order = np.random.RandomState(seed).permutation(len(paths))
        paths = [paths[i] for i in order]
        if label_array is not None:
            label_array = label_array[order]
    return paths, label_array, class_names


def check_validation_split_arg(validation_split, subset, shuffle, seed):
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1, received: {validation_split}")
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f'`subset` must be either "training", "validation" or "both", received: {subset}')
    if validation_split and shuffle and seed is None:
        raise ValueError("If using `validation_split` and shuffling the data, you must provide a `seed` argument, "
                         "to make sure that there is no overlap between the training and validation subset.")


def split_subset(paths, labels, validation_split, subset, verbose=True):
    if not validation_split:
        return paths, labels
    num_val = int(validation_split * len(paths))
    cut = len(paths) - num_val
    if subset == "training":
        if verbose:
            print(f"Using {cut} files for training.")
        return paths[:cut], None if labels is None else labels[:cut]
    if verbose:
        print(f"Using {num_val} files for validation.")
    return paths[cut:], None if labels is None else labels[cut:]


def _encode_labels(labels, label_mode, num_classes):
    if label_mode == "int":
        return labels.astype(np.int32) if labels.dtype.kind in "iub" else labels
    if label_mode == "binary":
        return labels.astype(np.float32).reshape(-1, 1)
    eye = np.eye(num_classes, dtype=np.float32)
    return eye[labels.astype(np.int64)]


def _inferred(labels):
    return isinstance(labels, str) and labels == "inferred"


def _validate_labels(labels, label_mode, class_names, kind):
    if not (_inferred(labels) or labels is None or isinstance(labels, (list, tuple))):
        raise ValueError(f"`labels` argument should be a list/tuple of integer labels, of the same size as the number "
                         f"of {kind} files in the target directory. If you wish to infer the labels from the "
                         f"subdirectory names in the target directory, pass `labels=\"inferred\"`. If you wish to get "
                         f"a dataset that only contains {kind}s (no labels), pass `labels=None`.")
    if not _inferred(labels) and class_names:
        raise ValueError(f'You can only pass `class_names` if `labels="inferred"`. Received: labels={labels}, and '
                         f"class_names={class_names}")
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError('`label_mode` argument must be one of "int", "categorical", "binary", or None. '
                         f"Received: label_mode={label_mode}")


def _make_dataset(paths, labels, load, label_mode, num_classes, batch_size, shuffle, seed, class_names):
    """A Dataset of loaded files (and encoded labels), shuffled per epoch and batched like Keras."""
    encoded = None if labels is None else _encode_labels(np.asarray(labels), label_mode, num_classes)
    index = Dataset.from_tensor_slices(np.arange(len(paths)))
    dataset = index.map(lambda i: load(paths[int(i)]) if encoded is None else (load(paths[int(i)]), encoded[int(i)]))
    if batch_size is not None:
        if shuffle:
            dataset = dataset.shuffle(buffer_size=batch_size * 8, seed=seed)
        dataset = dataset.batch(batch_size)
    elif shuffle:
        dataset = dataset.shuffle(buffer_size=1024, seed=seed)
    dataset.class_names = class_names
    dataset.file_paths = list(paths)
    return dataset


def _build(directory, labels, label_mode, class_names, batch_size, shuffle, seed, validation_split, subset,
           follow_links, verbose, formats, kind, load):
    _validate_labels(labels, label_mode, class_names, kind)
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    check_validation_split_arg(validation_split, subset, shuffle, seed)
    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive integer or None; got {batch_size}")
    if seed is None:
        seed = np.random.randint(1_000_000)
    paths, label_array, class_names = index_directory(directory, labels, formats, class_names=class_names,
                                                      shuffle=shuffle, seed=seed, follow_links=follow_links,
                                                      verbose=verbose)
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(f'When passing `label_mode="binary"`, there must be exactly 2 class_names. Received: '
                         f"class_names={class_names}")
    num_classes = len(class_names) if class_names else 0
    if subset == "both":
        out = []
        for part in ("training", "validation"):
            p, l = split_subset(paths, label_array, validation_split, part, verbose)
            if not p:
                raise ValueError(f"No {part} {kind}s found in directory {directory}. Allowed formats: {formats}")
            out.append(_make_dataset(p, l, load, label_mode, num_classes, batch_size,
                                     shuffle and part == "training", seed, class_names))
        return out
    paths, label_array = split_subset(paths, label_array, validation_split, subset, verbose)
    if not paths:
        raise ValueError(f"No {kind}s found in directory {directory}. Allowed formats: {formats}")
    return _make_dataset(paths, label_array, load, label_mode, num_classes, batch_size, shuffle, seed, class_names)


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, color_mode="rgb",
                                 batch_size=32, image_size=(256, 256), shuffle=True, seed=None, validation_split=None,
                                 subset=None, interpolation="bilinear", follow_links=False,
                                 crop_to_aspect_ratio=False, pad_to_aspect_ratio=False, data_format=None,
                                 verbose=True):
    """A Dataset of (images, labels) batches: float32 images of `image_size` with 1, 3 or 4 channels."""
    image_utils._pil()   # fail early, with the install hint, when Pillow is missing
    channels = {"rgb": 3, "rgba": 4, "grayscale": 1}.get(color_mode)
    if channels is None:
        raise ValueError(f'`color_mode` must be one of {{"rgb", "rgba", "grayscale"}}. Received: '
                         f"color_mode={color_mode}")
    if interpolation not in image_utils.RESIZE_METHODS:
        raise ValueError(f"image_dataset_from_directory: interpolation {interpolation!r} is not supported; use one "
                         f"of {image_utils.RESIZE_METHODS}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of `crop_to_aspect_ratio`, `pad_to_aspect_ratio` can be True.")
    data_format = image_utils._data_format(data_format)
    image_size = tuple(int(s) for s in image_size)
    if len(image_size) != 2 or min(image_size) <= 0:
        raise ValueError(f"`image_size` must be a tuple of two positive integers; got {image_size}")

    def load(path):
        img = image_utils.load_img(path, color_mode=color_mode)
        arr = image_utils.img_to_array(img)
        if arr.shape[-1] != channels:   # e.g. 16-bit grayscale kept as one channel
            raise ValueError(f"Image {path} decoded to {arr.shape[-1]} channels; expected {channels}")
        arr = image_utils.crop_or_pad_to_aspect(arr, image_size, crop_to_aspect_ratio, pad_to_aspect_ratio)
        arr = image_utils.resize_image(arr, image_size, interpolation)
        return arr.transpose(2, 0, 1) if data_format == "channels_first" else arr
    return _build(directory, labels, label_mode, class_names, batch_size, shuffle, seed, validation_split, subset,
                  follow_links, verbose, IMAGE_FORMATS, "image", load)


def text_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, batch_size=32,
                                max_length=None, shuffle=True, seed=None, validation_split=None, subset=None,
                                follow_links=False, verbose=True):
    """A Dataset of (texts, labels) batches from `.txt` files; texts are numpy unicode strings.

    `max_length` truncates each file's UTF-8 bytes, as Keras does (a split final character is dropped).
    """
    if max_length is not None and (not isinstance(max_length, int) or max_length <= 0):
        raise ValueError(f"`max_length` must be a positive integer or None; got {max_length!r}")

    def load(path):
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise OSError(f"Could not read the text file {path}: {exc}") from None
        if max_length is not None:
            raw = raw[:max_length]
        return np.str_(raw.decode("utf-8", errors="ignore" if max_length is not None else "replace"))
    return _build(directory, labels, label_mode, class_names, batch_size, shuffle, seed, validation_split, subset,
                  follow_links, verbose, TEXT_FORMATS, "text", load)
