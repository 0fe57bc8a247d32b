# The layer_*, optimizer_*, loss_*, metric_*, callback_*, initializer_*, regularizer_*,
# activation_* and k_* functions, generated from kcompile's Python registry when the package
# loads (kcompile_r.registry(): snake_case of each class name, as Keras R names them).

# Split R's `...` into positional and named arguments and call the registry entry.
.kc_construct <- function(family, cls, dots) {
  nms <- names(dots) %||% rep("", length(dots))
  pos <- unname(dots[nms == ""])
  named <- dots[nms != ""]
  .kc_value(.h()$construct(family, cls, lapply(pos, .kc_arg), .kc_args(named)))
}

# Compose a layer with the first argument of layer_*(): a Sequential model gets the layer added
# in place (as the Keras R package does with %>%), a tensor or a list of tensors is passed
# through it, nothing gives the layer itself.
.kc_compose <- function(object, layer) {
  if (missing(object) || is.null(object)) return(.kc_value(layer))
  if (.is_py(object) && .kc_true(.h()$is_sequential(object))) {
    .kc_call(object, "add", args = list(layer))
    return(object)
  }
  if (.is_py(object) && .kc_true(.h()$is_model(object))) {
    stop("kcompile: layers can be added with %>% to a Sequential model only; call the layer on ",
         "tensors (layer_input()) to build functional models", call. = FALSE)
  }
  .kc_value(.h()$call_layer(layer, .kc_arg(object)))
}

.kc_make_layer <- function(cls) {
  force(cls)
  function(object, ...) {
    .kc_guard({
      # magrittr's pipe is lazy: add the earlier layers first, so that names follow the model order
      if (!missing(object)) force(object)
      layer <- .kc_construct("layer", cls, list(...))
      .kc_compose(object, layer)
    })
  }
}

.kc_make_object <- function(family, cls) {
  force(family); force(cls)
  function(...) .kc_guard(.kc_construct(family, cls, list(...)))
}

# loss_*/metric_*: with y_true and y_pred, the value; without, the loss or metric object
.kc_make_loss <- function(family, cls) {
  force(family); force(cls)
  function(y_true, y_pred, ...) {
    .kc_guard({
      obj <- .kc_construct(family, cls, list(...))
      if (missing(y_true) && missing(y_pred)) return(obj)
      .kc_value(.h()$invoke(obj, list(.kc_data(y_true), .kc_data(y_pred))))
    })
  }
}

.kc_make_function <- function(family, fname) {
  force(family); force(fname)
  function(...) .kc_guard(.kc_construct(family, fname, list(...)))
}

.kc_generate <- function(ns) {
  entries <- reticulate::py_to_r(.h()$registry())
  made <- character()
  for (e in entries) {
    family <- e$family
    f <- switch(family,
      layer = .kc_make_layer(e$cls),
      loss = , metric = .kc_make_loss(family, e$cls),
      activation = , k = .kc_make_function(family, e$cls),
      .kc_make_object(family, e$cls))
    attr(f, "kc_family") <- if (family %in% c("layer", "activation", "k")) NULL else family
    attr(f, "kc_class") <- e$cls
    for (name in unlist(e$names)) {
      # hand-written functions of the same name (layer_input ...) take precedence
      if (exists(name, envir = ns, inherits = FALSE) && !(name %in% .kc$generated)) next
      assign(name, f, envir = ns)
      made <- c(made, name)
    }
  }
  .kc$generated <- made
  invisible(made)
}

#' The generated constructors: a data frame of R name, family and kcompile class.
kcompile_registry <- function() {
  entries <- reticulate::py_to_r(.h()$registry())
  rows <- lapply(entries, function(e)
    data.frame(name = unlist(e$names), family = e$family, class = e$cls, stringsAsFactors = FALSE))
  do.call(rbind, rows)
}

.onLoad <- function(libname, pkgname) {
  ns <- getNamespace(pkgname)
  ok <- tryCatch({ .kc_init(pkgname); TRUE }, error = function(e) {
    .kc$init_error <- trimws(conditionMessage(e))
    FALSE
  })
  if (ok) {
    .kc_generate(ns)
    .kc_register_methods(ns)
  } else {
    warning("kcompile: no Python with the 'kcompile' module (", .kc$init_error, "); set ",
            "RETICULATE_PYTHON. The layer_*/optimizer_*/... constructors are not available.",
            call. = FALSE)
  }
}
