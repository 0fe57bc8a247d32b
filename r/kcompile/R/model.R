# Models: construction, compile/fit/evaluate/predict, weights.

.kc_verbose <- function() getOption("kcompile.verbose", "auto")

# object$method(...) through the helper: R arguments converted, the result left in Python
.kc_call <- function(object, method, kwargs = list(), args = list()) {
  .h()$call_method(object, method, .kc_args(kwargs), lapply(args, .kc_arg))
}

#' A Sequential model; layers are added in place with %>% layer_*().
keras_model_sequential <- function(layers = NULL, name = NULL, ...) {
  .kc_guard({
    if (!is.null(layers) && !is.list(layers)) layers <- list(layers)
    .kc_construct("kc", "Sequential", c(list(layers = layers, name = name), list(...)))
  })
}

#' A functional model from input and output tensors (R lists for several).
keras_model <- function(inputs, outputs = NULL, ...) {
  .kc_guard(.kc_construct("kc", "Model", c(list(inputs = inputs, outputs = outputs), list(...))))
}

#' A symbolic input tensor.
layer_input <- function(shape = NULL, batch_shape = NULL, name = NULL, dtype = NULL, sparse = NULL,
                        tensor = NULL, ...) {
  .kc_guard(.kc_construct("kc", "layers.Input",
                          c(list(shape = shape, batch_shape = batch_shape, name = name, dtype = dtype,
                                 sparse = sparse, tensor = tensor), list(...))))
}

#' Configure a model for training (in place; returns the model invisibly).
compile <- function(object, optimizer = NULL, loss = NULL, metrics = NULL, loss_weights = NULL,
                    weighted_metrics = NULL, run_eagerly = NULL, ...) {
  .kc_guard({
    if (is.character(metrics)) metrics <- as.list(metrics)
    if (is.character(loss) && length(loss) > 1) loss <- as.list(loss)
    if (is.function(metrics) || .is_py(metrics)) metrics <- list(metrics)
    .kc_call(object, "compile", c(list(optimizer = optimizer, loss = loss, metrics = metrics,
                                       loss_weights = loss_weights, weighted_metrics = weighted_metrics,
                                       run_eagerly = run_eagerly), list(...)))
    invisible(object)
  })
}

#' Train a model on R matrices/arrays (lists of them for several inputs/outputs).
fit <- function(object, x = NULL, y = NULL, batch_size = NULL, epochs = 10,
                verbose = .kc_verbose(), callbacks = NULL, validation_split = 0,
                validation_data = NULL, shuffle = TRUE, class_weight = NULL, sample_weight = NULL,
                initial_epoch = 0, steps_per_epoch = NULL, validation_steps = NULL, ...) {
  .kc_guard({
    if (.is_py(callbacks)) callbacks <- list(callbacks)
    if (!is.null(validation_data) && !is.list(validation_data))
      stop("validation_data must be a list: list(x_val, y_val)", call. = FALSE)
    kwargs <- c(list(x = .kc_data(x), y = .kc_data(y), batch_size = batch_size, epochs = epochs,
                     verbose = verbose, callbacks = callbacks, validation_split = validation_split,
                     validation_data = .kc_data(validation_data), shuffle = shuffle,
                     class_weight = class_weight, sample_weight = .kc_data(sample_weight),
                     initial_epoch = initial_epoch, steps_per_epoch = steps_per_epoch,
                     validation_steps = validation_steps), list(...))
    kwargs$view_metrics <- NULL
    h <- .kc_call(object, "fit", kwargs)
    out <- .kc_unwrap(reticulate::py_to_r(.h()$history(h)))
    out$metrics <- lapply(out$metrics, function(v) as.numeric(unlist(v)))
    structure(out, class = "kcompile_training_history")
  })
}

#' @export
print.kcompile_training_history <- function(x, ...) {
  epochs <- if (length(x$metrics)) length(x$metrics[[1]]) else 0
  cat("Trained on", epochs, "epoch(s). Final epoch:\n")
  for (n in names(x$metrics)) cat(sprintf("  %s: %.4f\n", n, utils::tail(x$metrics[[n]], 1)))
  invisible(x)
}

#' @export
as.data.frame.kcompile_training_history <- function(x, ...) {
  rows <- lapply(names(x$metrics), function(n)
    data.frame(epoch = seq_along(x$metrics[[n]]), value = x$metrics[[n]], metric = n,
               stringsAsFactors = FALSE))
  do.call(rbind, rows)
}

#' Loss and metrics on data: a named numeric vector.
evaluate <- function(object, x = NULL, y = NULL, batch_size = NULL, verbose = .kc_verbose(),
                     sample_weight = NULL, steps = NULL, callbacks = NULL, ...) {
  .kc_guard({
    r <- .kc_call(object, "evaluate", c(list(x = .kc_data(x), y = .kc_data(y), batch_size = batch_size,
                                             verbose = verbose, sample_weight = .kc_data(sample_weight),
                                             steps = steps, callbacks = callbacks, return_dict = TRUE),
                                        list(...)))
    r <- .kc_value(r)
    stats::setNames(as.numeric(unlist(r)), names(r))
  })
}

# predict() for kcompile models (registered on the model's Python class at load)
.kc_predict <- function(object, x, batch_size = NULL, verbose = .kc_verbose(), steps = NULL,
                        callbacks = NULL, ...) {
  .kc_guard({
    if (missing(x)) x <- NULL                       # kcompile says what is missing
    .kc_value(.kc_call(object, "predict", c(list(x = .kc_data(x), batch_size = batch_size,
                                                 verbose = verbose, steps = steps, callbacks = callbacks),
                                            list(...))))
  })
}

.kc_summary <- function(object, ...) {
  .kc_guard(.kc_call(object, "summary"))
  invisible(object)
}

.kc_register_methods <- function(ns) {
  for (cls in unlist(reticulate::py_to_r(.h()$instance_class_names()))) {
    registerS3method("predict", cls, .kc_predict, envir = ns)
    registerS3method("summary", cls, .kc_summary, envir = ns)
  }
}

#' The weights of a model or layer as a list of R arrays.
get_weights <- function(object) .kc_guard(.kc_value(.kc_call(object, "get_weights")))

#' Set the weights of a model or layer from a list of R arrays (in place).
set_weights <- function(object, weights) {
  .kc_guard({
    .kc_call(object, "set_weights", args = list(lapply(weights, .kc_data)))
    invisible(object)
  })
}

#' A layer by name or (1-based) index.
get_layer <- function(object, name = NULL, index = NULL) {
  .kc_guard({
    if (!is.null(index)) index <- as.integer(index) - 1L
    .kc_value(.kc_call(object, "get_layer", list(name = name, index = index)))
  })
}

#' Remove the last layer of a Sequential model (in place).
pop_layer <- function(object) {
  .kc_guard({
    .kc_call(object, "pop")
    invisible(object)
  })
}

#' The number of weights (scalars) of a model or layer.
count_params <- function(object) .kc_guard(.kc_value(.kc_call(object, "count_params")))

#' One-hot encoding of 0-based integer class labels.
to_categorical <- function(y, num_classes = NULL) {
  .kc_guard(.kc_construct("kc", "utils.to_categorical",
                          list(.kc_data(as.integer(y)), num_classes = num_classes)))
}

#' An R function (y_true, y_pred) as a named metric for compile(metrics = ...).
custom_metric <- function(name, metric_fn) .kc_guard(.kc_py_function(metric_fn, name))

#' Dot product of tensors (numpy.dot semantics), for custom layers' call().
k_dot <- function(x, y) .kc_guard(.kc_value(.h()$k_dot(.kc_arg(x), .kc_arg(y))))
