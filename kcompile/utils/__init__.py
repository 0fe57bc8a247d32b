"""`kcompile.utils`: data helpers and seeding."""
from ..random_state import set_random_seed
from .numerical_utils import normalize, to_categorical
from .progbar import Progbar

__all__ = ["set_random_seed", "to_categorical", "normalize", "Progbar"]
