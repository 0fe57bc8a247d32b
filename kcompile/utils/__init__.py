"""`kcompile.utils`: data helpers, dataset builders, image helpers, plotting and seeding."""
from ..random_state import set_random_seed
from .model_visualization import plot_model
from .numerical_utils import normalize, to_categorical
from .progbar import Progbar
from .py_dataset import PyDataset, Sequence

__all__ = ["set_random_seed", "to_categorical", "normalize", "Progbar", "PyDataset", "Sequence", "plot_model"]
