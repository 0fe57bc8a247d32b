# Custom layers as R6 classes (KerasLayer, create_layer) and custom models (keras_model_custom).

#' Base R6 class of custom layers: implement build(input_shape), call(x, mask = NULL) and, when
#' the layer changes the shape, compute_output_shape(input_shape); make weights in build() with
#' self$add_weight().
KerasLayer <- R6::R6Class("KerasLayer",
  public = list(
    build = function(input_shape) invisible(NULL),
    call = function(inputs, mask = NULL) stop("Keras custom layers must implement the call function"),
    compute_output_shape = function(input_shape) input_shape,
    add_weight = function(name = NULL, shape = NULL, dtype = NULL, initializer = NULL,
                          regularizer = NULL, trainable = TRUE, constraint = NULL) {
      if (is.null(private$py_layer)) stop("add_weight: the layer was not created with create_layer()")
      .kc_guard(.kc_value(.h()$add_weight(private$py_layer, .kc_args(list(
        name = name, shape = shape, dtype = dtype, initializer = initializer,
        regularizer = regularizer, trainable = trainable, constraint = constraint)))))
    },
    python_layer = function() private$py_layer,
    .set_python_layer = function(layer) {
      private$py_layer <- layer
      invisible(self)
    }
  ),
  private = list(py_layer = NULL)
)

.kc_common_layer_args <- c("input_shape", "batch_input_shape", "batch_shape", "batch_size", "input_dim",
                           "dtype", "name", "trainable", "weights", "activity_regularizer")

#' Instantiate an R6 custom layer class and compose it with `object` (a model or tensor).
#' `args` go to the R6 class's initialize(), except the common layer arguments (name, trainable,
#' input_shape, ...), which go to the Python layer.
create_layer <- function(layer_class, object, args = list()) {
  .kc_guard({
    if (!missing(object)) force(object)
    args <- args[!vapply(args, is.null, logical(1))]
    common <- names(args) %in% .kc_common_layer_args
    r_layer <- do.call(layer_class$new, args[!common])
    call_takes_mask <- "mask" %in% names(formals(r_layer$call))
    methods <- list(
      build = .kc_py_function(function(input_shape) {
        r_layer$build(input_shape)
        NULL
      }),
      call = .kc_py_function(function(inputs, mask = NULL) {
        if (call_takes_mask) r_layer$call(inputs, mask = mask) else r_layer$call(inputs)
      }),
      compute_output_shape = .kc_py_function(function(input_shape) r_layer$compute_output_shape(input_shape)))
    py_layer <- .h()$make_r_layer(methods, layer_class$classname %||% "RLayer", .kc_args(args[common]))
    r_layer$.set_python_layer(py_layer)
    .kc_compose(object, py_layer)
  })
}

#' A subclassed model: `model_fn(self)` creates the layers on `self` and returns the forward
#' function `function(inputs, mask = NULL)`.
keras_model_custom <- function(model_fn, name = NULL) {
  .kc_guard({
    init <- .kc_py_function(function(self) .kc_py_function(model_fn(self), "call"), "init")
    .kc_value(.h()$make_r_model(init, name))
  })
}
