"""Image helpers: load_img, img_to_array, array_to_img, save_img (Pillow), and the resizing used by
image_dataset_from_directory.

Pillow is an optional dependency (`pip install kcompile[images]`). Resizing of decoded arrays is
our own numpy code following tf.image.resize (half-pixel centres, no antialiasing), so datasets
hold the same pixel values Keras produces.
"""
from __future__ import annotations

import io
import os
import warnings

import numpy as np


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("Image support needs Pillow, an optional dependency of kcompile: "
                          "`pip install kcompile[images]` (or `pip install Pillow`).") from None
    return Image


_PIL_RESAMPLE = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")


def _data_format(data_format):
    data_format = data_format or "channels_last"
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first'; got {data_format!r}")
    return data_format


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest", keep_aspect_ratio=False):
    """Load an image file (path or binary file object) as a PIL Image."""
    Image = _pil()
    if color_mode not in ("grayscale", "rgb", "rgba"):
        raise ValueError(f'color_mode must be "grayscale", "rgb", or "rgba"; got {color_mode!r}')
    if isinstance(path, io.BytesIO):
        source, name = path, "<BytesIO>"
    elif isinstance(path, (str, bytes, os.PathLike)):
        name = os.fsdecode(path)
        with open(name, "rb") as fh:
            source = io.BytesIO(fh.read())
    else:
        raise TypeError(f"path should be a path-like or io.BytesIO, not {type(path).__name__}")
    try:
        img = Image.open(source)
        img.load()
    except Exception as exc:
        raise ValueError(f"Could not read the image file {name}: {exc}") from None
    if color_mode == "grayscale":
        if img.mode not in ("L", "I;16", "I"):
            img = img.convert("L")
    elif color_mode == "rgba":
        if img.mode != "RGBA":
            img = img.convert("RGBA")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    if target_size is not None:
        if interpolation not in _PIL_RESAMPLE:
            raise ValueError(f"Invalid interpolation method {interpolation} specified. Supported methods are "
                             f"{', '.join(_PIL_RESAMPLE)}")
        width_height = (int(target_size[1]), int(target_size[0]))
        if img.size != width_height:
            resample = getattr(Image, "Resampling", Image)
            resample = getattr(resample, interpolation.upper())
            if keep_aspect_ratio:   # centre crop to the target's aspect ratio first
                width, height = img.size
                crop_h = min(height, int(width * target_size[0] / target_size[1]))
                crop_w = min(width, int(height * target_size[1] / target_size[0]))
                top, left = (height - crop_h) // 2, (width - crop_w) // 2
                img = img.crop((left, top, left + crop_w, top + crop_h))
            img = img.resize(width_height, resample)
    return img


def img_to_array(img, data_format=None, dtype=None):
    """A PIL Image as a (height, width, channels) array (float32 unless `dtype` says otherwise)."""
    data_format = _data_format(data_format)
    x = np.asarray(img, dtype=dtype or "float32")
    if x.ndim == 2:
        x = x[:, :, None]
    elif x.ndim != 3:
        raise ValueError(f"Unsupported image shape: {x.shape}")
    return x.transpose(2, 0, 1) if data_format == "channels_first" else x


def array_to_img(x, data_format=None, scale=True, dtype=None):
    """A rank-3 array as a PIL Image; with `scale` its values are stretched to 0..255 first."""
    Image = _pil()
    data_format = _data_format(data_format)
    x = np.array(x, dtype=dtype or "float32")
    if x.ndim != 3:
        raise ValueError(f"Expected image array to have rank 3 (single image). Got array with shape: {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        top = np.max(x)
        if top != 0:
            x /= top
        x *= 255
    channels = x.shape[2]
    if channels == 4:
        return Image.fromarray(x.astype("uint8"), "RGBA")
    if channels == 3:
        return Image.fromarray(x.astype("uint8"), "RGB")
    if channels == 1:
        if np.max(x) > 255:   # 32-bit integer grayscale
            return Image.fromarray(x[:, :, 0].astype("int32"), "I")
        return Image.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise ValueError(f"Unsupported channel number: {channels}")


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """Save an array as an image file (format from `file_format` or the file name's extension)."""
    img = array_to_img(x, data_format=data_format, scale=scale)
    if file_format is None and isinstance(path, (str, os.PathLike)):
        file_format = os.path.splitext(os.fspath(path))[1][1:].lower() or None
    if img.mode == "RGBA" and file_format in ("jpg", "jpeg"):
        warnings.warn("The JPG format does not support RGBA images, converting to RGB.")
        img = img.convert("RGB")
    if file_format == "jpg":
        file_format = "jpeg"
    img.save(path, format=file_format, **kwargs)


# ---------------------------------------------------------------- array resizing (tf.image.resize rules)
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")


def _keys_cubic(t, a=-0.5):
    t = np.abs(t)
    return np.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                    np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))


def _resize_matrix(n_in, n_out, method):
    """(n_out, n_in) weights mapping one axis of the input to the output."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in), np.float64)
    o = np.arange(n_out)
    if method == "nearest":
        w[o, np.minimum(np.floor((o + 0.5) * scale).astype(int), n_in - 1)] = 1.0
        return w
    if method == "area":   # each output pixel averages the input span it covers
        lo, hi = o * scale, (o + 1) * scale
        for j in range(n_in):
            w[:, j] = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
        return w / w.sum(axis=1, keepdims=True)
    centre = (o + 0.5) * scale - 0.5
    if method == "bilinear":
        base = np.floor(centre).astype(int)
        frac = centre - base
        for tap, weight in ((base, 1 - frac), (base + 1, frac)):
            np.add.at(w, (o, np.clip(tap, 0, n_in - 1)), weight)
        return w
    # bicubic: Keys kernel; taps outside the image get no weight and the rest are renormalised
    base = np.floor(centre).astype(int)
    for k in range(-1, 3):
        tap = base + k
        inside = (tap >= 0) & (tap < n_in)
        np.add.at(w, (o[inside], tap[inside]), _keys_cubic(centre - tap)[inside])
    return w / w.sum(axis=1, keepdims=True)


def resize_image(image, size, interpolation="bilinear"):
    """Resize an (h, w, c) array to `size` = (height, width), as tf.image.resize(antialias=False) does."""
    if interpolation not in RESIZE_METHODS:
        raise ValueError(f"interpolation {interpolation!r} is not supported by kcompile; use one of "
                         f"{RESIZE_METHODS}")
    image = np.asarray(image, np.float32)
    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image
    rows = _resize_matrix(h, size[0], interpolation).astype(np.float32)
    cols = _resize_matrix(w, size[1], interpolation).astype(np.float32)
    return np.einsum("ih,hwc,jw->ijc", rows, image, cols, optimize=True).astype(np.float32)


def crop_or_pad_to_aspect(image, size, crop, pad):
    """Centre-crop (or zero-pad) an (h, w, c) array to the aspect ratio of `size`, as Keras's loaders do."""
    h, w = image.shape[:2]
    th, tw = size
    if crop:
        ch, cw = min(h, int(w * th / tw)), min(w, int(h * tw / th))
        top, left = int((h - ch) / 2), int((w - cw) / 2)
        return image[top:top + ch, left:left + cw]
    if pad:
        ph, pw = max(h, int(w * th / tw)), max(w, int(h * tw / th))
        out = np.zeros((ph, pw) + image.shape[2:], image.dtype)
        top, left = int((ph - h) / 2), int((pw - w) / 2)
        out[top:top + h, left:left + w] = image
        return out
    return image
