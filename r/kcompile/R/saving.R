# Saving and loading: whole models (HDF5, .keras), weights, and the JSON/YAML configuration.
# kcompile has no TensorFlow SavedModel: save_model_tf()/save_model_weights_tf() write a
# directory holding a .keras (or .weights.h5) file, which load_model_tf()/load_model_weights_tf()
# read back.

.kc_path <- function(filepath) normalizePath(path.expand(filepath), mustWork = FALSE)

save_model_hdf5 <- function(object, filepath, overwrite = TRUE, include_optimizer = TRUE) {
  .kc_guard(.kc_call(object, "save", list(filepath = .kc_path(filepath), overwrite = overwrite,
                                          include_optimizer = include_optimizer, save_format = "h5")))
  invisible(object)
}

load_model_hdf5 <- function(filepath, custom_objects = NULL, compile = TRUE) {
  .kc_guard(.kc_construct("kc", "models.load_model", list(.kc_path(filepath), custom_objects = custom_objects,
                                                          compile = compile)))
}

save_model_weights_hdf5 <- function(object, filepath, overwrite = TRUE) {
  .kc_guard(.kc_call(object, "save_weights", list(filepath = .kc_path(filepath), overwrite = overwrite,
                                                  save_format = "h5")))
  invisible(object)
}

load_model_weights_hdf5 <- function(object, filepath, by_name = FALSE, skip_mismatch = FALSE) {
  .kc_guard(.kc_call(object, "load_weights", list(filepath = .kc_path(filepath), skip_mismatch = skip_mismatch,
                                                  by_name = if (isTRUE(by_name)) TRUE else NULL)))
  invisible(object)
}

#' Save a whole model; the format follows the extension (.keras, .h5).
save_model <- function(object, filepath, overwrite = TRUE, ...) {
  .kc_guard(.kc_call(object, "save", c(list(filepath = .kc_path(filepath), overwrite = overwrite), list(...))))
  invisible(object)
}

load_model <- function(filepath, custom_objects = NULL, compile = TRUE, ...) {
  .kc_guard(.kc_construct("kc", "models.load_model",
                          c(list(.kc_path(filepath), custom_objects = custom_objects, compile = compile),
                            list(...))))
}

save_model_tf <- function(object, filepath, overwrite = TRUE, include_optimizer = TRUE) {
  dir.create(filepath, showWarnings = FALSE, recursive = TRUE)
  .kc_guard(.kc_call(object, "save", list(filepath = .kc_path(file.path(filepath, "model.keras")),
                                          overwrite = overwrite, include_optimizer = include_optimizer)))
  invisible(object)
}

load_model_tf <- function(filepath, custom_objects = NULL, compile = TRUE) {
  load_model(file.path(filepath, "model.keras"), custom_objects = custom_objects, compile = compile)
}

save_model_weights_tf <- function(object, filepath, overwrite = TRUE) {
  dir.create(filepath, showWarnings = FALSE, recursive = TRUE)
  .kc_guard(.kc_call(object, "save_weights", list(filepath = .kc_path(file.path(filepath, "model.weights.h5")),
                                                  overwrite = overwrite)))
  invisible(object)
}

load_model_weights_tf <- function(object, filepath, skip_mismatch = FALSE) {
  .kc_guard(.kc_call(object, "load_weights", list(filepath = .kc_path(file.path(filepath, "model.weights.h5")),
                                                  skip_mismatch = skip_mismatch)))
  invisible(object)
}

model_to_json <- function(object) .kc_guard(reticulate::py_to_r(.kc_call(object, "to_json")))

model_from_json <- function(json, custom_objects = NULL) {
  .kc_guard(.kc_construct("kc", "models.model_from_json", list(json, custom_objects = custom_objects)))
}

model_to_yaml <- function(object) .kc_guard(reticulate::py_to_r(.kc_call(object, "to_yaml")))

model_from_yaml <- function(yaml, custom_objects = NULL) {
  .kc_guard(.kc_construct("kc", "models.model_from_yaml", list(yaml, custom_objects = custom_objects)))
}
