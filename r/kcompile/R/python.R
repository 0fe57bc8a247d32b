# Finding Python, the helper module, and the two conversions every call goes through:
# R values -> Python (.kc_arg, .kc_data) and Python results -> R values (.kc_value).
#
# Arrays never go through reticulate's NumPy conversion (the reticulate of Debian 12 cannot talk
# to NumPy 2): an R array crosses as its raw column-major bytes plus its dim, and becomes a
# row-major (C-contiguous) NumPy array on the Python side (inst/python/kcompile_r.py); results come
# back the same way.

.kc <- new.env(parent = emptyenv())

`%||%` <- function(x, y) if (is.null(x)) y else x

# The Python that has kcompile: RETICULATE_PYTHON when set (reticulate honours it), else the
# option kcompile.python, KCOMPILE_PYTHON, or the first python3/python on the PATH that imports it.
.kc_find_python <- function() {
  if (nzchar(Sys.getenv("RETICULATE_PYTHON"))) return(NULL)
  candidates <- c(getOption("kcompile.python"), Sys.getenv("KCOMPILE_PYTHON"),
                  Sys.which(c("python3", "python")), "/usr/bin/python3")
  candidates <- unique(candidates[!is.na(candidates) & nzchar(candidates)])
  for (py in candidates) {
    ok <- tryCatch(suppressWarnings(system2(py, c("-c", shQuote("import kcompile")),
                                            stdout = FALSE, stderr = FALSE)) == 0,
                   error = function(e) FALSE)
    if (isTRUE(ok)) return(unname(py))
  }
  NULL
}

.kc_init <- function(pkgname) {
  if (!reticulate::py_available(initialize = FALSE)) {
    py <- .kc_find_python()
    if (!is.null(py)) reticulate::use_python(py, required = TRUE)
  }
  path <- system.file("python", package = pkgname)
  .kc$h <- reticulate::import_from_path("kcompile_r", path = path, convert = FALSE)
  # the same module with conversion: export() results come back as R values and R-callable objects
  .kc$hc <- reticulate::import_from_path("kcompile_r", path = path, convert = TRUE)
  .kc$kc <- reticulate::import("kcompile", convert = FALSE)
  invisible(TRUE)
}

# the helper module (inst/python/kcompile_r.py)
.h <- function() {
  if (is.null(.kc$h))
    stop("kcompile: Python with the 'kcompile' module was not found (",
         .kc$init_error %||% "not initialised",
         "). Set RETICULATE_PYTHON to a python where `import kcompile` works.", call. = FALSE)
  .kc$h
}

#' The Python interpreter kcompile uses.
kcompile_python <- function() reticulate::py_config()$python

# ----------------------------------------------------------------------------- errors

# Python errors (and R errors) as one clean R error carrying the Python message, not a
# reticulate stack dump.
.kc_stop <- function(e) {
  msg <- conditionMessage(e)
  msg <- sub("(?s)\\s*Detailed traceback:.*$", "", msg, perl = TRUE)
  msg <- sub("(?s)\\s*Run `reticulate::py_last_error\\(\\)`.*$", "", msg, perl = TRUE)
  msg <- sub("^Evaluation error: ", "", trimws(msg))
  cond <- structure(class = c("kcompile_error", "error", "condition"),
                    list(message = msg, call = NULL))
  stop(cond)
}

.kc_guard <- function(expr) {
  tryCatch(expr, kcompile_error = function(e) stop(e), error = .kc_stop)
}

# ----------------------------------------------------------------------------- R -> Python

.is_py <- function(x) inherits(x, "python.builtin.object")

# An R atomic vector/array as a row-major NumPy array (doubles -> float32, integers -> int32).
.kc_array <- function(x) {
  if (is.factor(x)) x <- as.character(x)
  dims <- dim(x) %||% length(x)
  if (is.double(x)) {
    kind <- "double"; data <- writeBin(as.double(x), raw(), size = 8L, endian = "little")
  } else if (is.integer(x)) {
    kind <- "integer"; data <- writeBin(as.integer(x), raw(), size = 4L, endian = "little")
  } else if (is.logical(x)) {
    kind <- "logical"; data <- writeBin(as.integer(x), raw(), size = 4L, endian = "little")
  } else if (is.character(x)) {
    kind <- "character"; data <- as.list(as.character(x))
  } else {
    stop("kcompile: cannot convert an R ", typeof(x), " to an array", call. = FALSE)
  }
  .h()$array_from_r(data, as.list(as.integer(dims)), kind)
}

# Data arguments (x, y, validation_data, sample_weight): every R vector/matrix/array is an array.
.kc_data <- function(x) {
  if (is.null(x) || .is_py(x)) return(x)
  if (is.data.frame(x)) return(.kc_array(as.matrix(x)))
  if (is.list(x)) return(lapply(x, .kc_data))
  if (is.atomic(x)) return(.kc_array(x))
  x
}

# Constructor arguments: scalars and vectors as reticulate converts them (shapes and integer
# parameters are fixed on the Python side), arrays with a dim as NumPy, lists recursively,
# R functions as Python callables, generated constructors (loss_mean_squared_error) as instances.
.kc_arg <- function(x) {
  if (is.null(x) || .is_py(x)) return(x)
  if (is.function(x)) {
    if (!is.null(attr(x, "kc_family", exact = TRUE))) return(x())
    return(.kc_py_function(x))
  }
  if (is.data.frame(x)) return(.kc_array(as.matrix(x)))
  if (is.list(x)) return(lapply(x, .kc_arg))
  if (is.factor(x)) return(as.character(x))
  if (is.atomic(x) && !is.null(dim(x))) return(.kc_array(x))
  x
}

.kc_args <- function(args) {
  if (!length(args)) return(structure(list(), names = character()))
  lapply(args, .kc_arg)
}

# An R function that Python can call: its arguments arrive as R values (arrays included) and its
# result goes back as a Python value.
.kc_py_function <- function(f, name = NULL) {
  force(f)
  g <- function(...) {
    args <- lapply(list(...), .kc_unwrap)
    .kc_arg(do.call(f, args))
  }
  # convert = TRUE: Python calls it with arguments converted to R values
  .h()$r_function(reticulate::r_to_py(g, convert = TRUE), name)
}

# ----------------------------------------------------------------------------- Python -> R

.kc_unwrap <- function(x) {
  if (is.list(x) && !.is_py(x)) {
    nm <- names(x)
    if (length(nm) && identical(nm[1], "__kc_ndarray__")) return(.kc_from_marker(x))
    attrs <- attributes(x)
    x <- lapply(x, .kc_unwrap)
    attributes(x) <- attrs
  }
  x
}

.kc_from_marker <- function(m) {
  shape <- as.integer(unlist(m$shape))
  n <- if (length(shape)) prod(shape) else 1L
  kind <- m[["__kc_ndarray__"]]
  v <- switch(kind,
    double = readBin(m$data, "double", n = n, size = 8L, endian = "little"),
    integer = readBin(m$data, "integer", n = n, size = 4L, endian = "little"),
    logical = as.logical(readBin(m$data, "integer", n = n, size = 4L, endian = "little")),
    character = as.character(unlist(m$data)))
  if (length(shape) >= 2L) dim(v) <- shape
  v
}

# A Python result as an R value: arrays -> R arrays, lists/dicts -> R lists, numbers -> numbers;
# kcompile objects stay Python objects (converting ones, so that layer$units is an R number and
# layers are R-callable: x %>% shared_layer).
.kc_value <- function(p) {
  .h()
  .kc_unwrap(.kc$hc$export(p))
}

.kc_true <- function(p) isTRUE(reticulate::py_to_r(p))
