"""`kcompile.utils`: data helpers, dataset builders, image helpers, plotting and seeding."""
from ..random_state import set_random_seed
from .dataset_utils import pack_x_y_sample_weight, split_dataset, unpack_x_y_sample_weight
from .directory_datasets import image_dataset_from_directory, text_dataset_from_directory
from .image_utils import array_to_img, img_to_array, load_img, save_img
from .model_visualization import plot_model
from .numerical_utils import normalize, to_categorical
from .progbar import Progbar
from .py_dataset import PyDataset, Sequence
from .sequence_utils import pad_sequences
from .serialization import (CustomObjectScope, custom_object_scope, get_custom_objects, get_registered_name,
                            get_registered_object, register_keras_serializable)
from ..saving.objects import deserialize_keras_object, serialize_keras_object
from .timeseries_dataset import timeseries_dataset_from_array

__all__ = ["set_random_seed", "to_categorical", "normalize", "Progbar", "PyDataset", "Sequence", "plot_model",
           "pad_sequences", "timeseries_dataset_from_array", "image_dataset_from_directory",
           "text_dataset_from_directory", "load_img", "img_to_array", "array_to_img", "save_img", "split_dataset",
           "pack_x_y_sample_weight", "unpack_x_y_sample_weight", "register_keras_serializable",
           "custom_object_scope", "CustomObjectScope", "get_registered_object", "get_registered_name",
           "get_custom_objects", "serialize_keras_object", "deserialize_keras_object"]
