"""`kcompile.callbacks`: the Keras callbacks, one module per family."""
from .base import Callback, uses_batch_hooks
from .callback_list import CallbackList
from .checkpointing import BackupAndRestore, ModelCheckpoint
from .lambda_callback import LambdaCallback
from .monitoring import EarlyStopping, LearningRateScheduler, ReduceLROnPlateau, TerminateOnNaN
from .progress import CSVLogger, History, ProgbarLogger
from .tensorboard import TensorBoard

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "CSVLogger", "EarlyStopping",
           "ReduceLROnPlateau", "LearningRateScheduler", "LambdaCallback", "TerminateOnNaN", "ModelCheckpoint",
           "BackupAndRestore", "TensorBoard", "uses_batch_hooks"]
