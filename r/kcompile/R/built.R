# Libraries written by `kcompile build`, run from R without Python (src/built.c).
#
#   predict_fn <- kc_load_built("path/to/dir")   # DIR/NAME_manifest.json, DIR/libNAME.so
#   y <- predict_fn(x)                           # or predict(predict_fn, x)
#   kc_train_step(predict_fn, x, y)              # one optimizer step on the library's own state
#   kc_evaluate(predict_fn, x, y)
#
# Nothing here touches reticulate: the manifest is read by the small JSON reader below, the
# tensors' shapes come from the library's tables (NAME_inputs, NAME_outputs, NAME_targets) and
# the status messages from DIR/kcompile.h.

.kcb_stop <- function(...) {
  stop(structure(class = c("kcompile_error", "error", "condition"),
                 list(message = paste0(...), call = NULL)))
}

# ----------------------------------------------------------------------------- JSON (base R)

# The manifest as R lists: objects -> named lists, arrays -> lists, numbers -> doubles.
.kcb_read_json <- function(path) {
  text <- paste(readLines(path, warn = FALSE, encoding = "UTF-8"), collapse = "\n")
  pattern <- paste0('"(?:[^"\\\\]|\\\\.)*"|-?[0-9]+(?:\\.[0-9]+)?(?:[eE][-+]?[0-9]+)?',
                    '|true|false|null|[][{}:,]|[^[:space:]]')
  tokens <- regmatches(text, gregexpr(pattern, text, perl = TRUE))[[1]]
  pos <- 1L
  bad <- function() .kcb_stop("kc_load_built: ", path, " is not valid JSON (near token ", pos, ")")
  string <- function(tok) {
    s <- substr(tok, 2L, nchar(tok) - 1L)
    if (!grepl("\\", s, fixed = TRUE)) return(s)
    m <- gregexpr("\\\\(u[0-9a-fA-F]{4}|.)", s, perl = TRUE)
    regmatches(s, m) <- list(vapply(regmatches(s, m)[[1L]], function(e) {
      ch <- substr(e, 2L, 2L)
      switch(ch, n = "\n", t = "\t", r = "\r", b = "\b", f = "\f",
             u = intToUtf8(strtoi(substr(e, 3L, 6L), 16L)), ch)
    }, "", USE.NAMES = FALSE))
    s
  }
  value <- function() {
    if (pos > length(tokens)) bad()
    tok <- tokens[pos]
    pos <<- pos + 1L
    switch(tok,
      "{" = {
        out <- list()
        if (identical(tokens[pos], "}")) { pos <<- pos + 1L; return(structure(out, names = character())) }
        repeat {
          key <- tokens[pos]
          if (is.na(key) || substr(key, 1L, 1L) != '"' || !identical(tokens[pos + 1L], ":")) bad()
          pos <<- pos + 2L
          out[string(key)] <- list(value())
          sep <- tokens[pos]
          pos <<- pos + 1L
          if (identical(sep, "}")) return(out)
          if (!identical(sep, ",")) bad()
        }
      },
      "[" = {
        out <- list()
        if (identical(tokens[pos], "]")) { pos <<- pos + 1L; return(out) }
        repeat {
          out[length(out) + 1L] <- list(value())
          sep <- tokens[pos]
          pos <<- pos + 1L
          if (identical(sep, "]")) return(out)
          if (!identical(sep, ",")) bad()
        }
      },
      "true" = TRUE, "false" = FALSE, "null" = NULL,
      if (substr(tok, 1L, 1L) == '"') string(tok)
      else if (grepl("^-?[0-9]", tok)) as.numeric(tok)
      else bad())
  }
  out <- value()
  if (pos <= length(tokens)) bad()
  out
}

# ----------------------------------------------------------------------------- status messages

# {code: message} from DIR/kcompile.h's KC_STATUS_LIST (the one definition kcompile's Python reads too)
.kcb_status_messages <- function(dir) {
  header <- file.path(dir, "kcompile.h")
  if (!file.exists(header)) return(character())
  text <- paste(readLines(header, warn = FALSE), collapse = "\n")
  rows <- regmatches(text, gregexpr('X\\((KC_\\w+), ([0-9]+), "([^"]*)"\\)', text, perl = TRUE))[[1]]
  codes <- sub('X\\((KC_\\w+), ([0-9]+), "([^"]*)"\\)', "\\2", rows, perl = TRUE)
  stats::setNames(sub('X\\((KC_\\w+), ([0-9]+), "([^"]*)"\\)', "\\3", rows, perl = TRUE), codes)
}

.kcb_check_status <- function(model, status, what) {
  if (status == 0L) return(invisible())
  message <- model$messages[as.character(status)]
  if (is.na(message)) message <- "unknown kcompile status"
  .kcb_stop(what, ": ", message, " (kcompile status ", status, ")")
}

# ----------------------------------------------------------------------------- loading

.kcb_dtype_code <- c(float32 = 1L, int32 = 2L)
.kcb_dtype_name <- function(code) {
  if (identical(code, 1L)) "float32" else if (identical(code, 2L)) "int32" else paste0("dtype ", code)
}

# a tensor of the manifest as a table row: list(name, dtype code, dims with -1 for the batch)
.kcb_row <- function(t) {
  list(name = t$name, dtype = unname(.kcb_dtype_code[t$dtype]) %||% NA_integer_,
       dims = as.numeric(unlist(t$shape)))
}

.kcb_shape_text <- function(dims) {
  paste0("[", paste(ifelse(dims == -1, "batch", format(dims, scientific = FALSE, trim = TRUE)),
                    collapse = ", "), "]")
}

#' Load a library written by `kcompile build` (DIR/libNAME.so and DIR/NAME_manifest.json); no
#' Python is used. Returns an R function that predicts: f(x) for one input, f(x1, x2) or
#' f(list(...)) for several; one output comes back as an R array, several as a named list.
#' kc_train_step(f, x, y) and kc_evaluate(f, x, y) run the library's training and evaluation
#' entries (when it has them) on the same state.
kc_load_built <- function(dir, name = NULL) {
  dir <- normalizePath(dir, mustWork = FALSE)
  if (!dir.exists(dir)) .kcb_stop("kc_load_built: no directory ", dir)
  if (is.null(name)) {
    manifests <- list.files(dir, pattern = "_manifest\\.json$")
    if (length(manifests) != 1L)
      .kcb_stop("kc_load_built: expected one NAME_manifest.json in ", dir, ", found ",
                if (length(manifests)) paste(manifests, collapse = ", ") else "none",
                if (length(manifests)) " (pass name =)" else " (is it a `kcompile build` directory?)")
    name <- sub("_manifest\\.json$", "", manifests)
  }
  manifest_path <- file.path(dir, paste0(name, "_manifest.json"))
  if (!file.exists(manifest_path)) .kcb_stop("kc_load_built: no ", manifest_path)
  library_path <- file.path(dir, paste0("lib", name, .Platform$dynlib.ext))
  if (!file.exists(library_path) && .Platform$dynlib.ext != ".so")
    library_path <- file.path(dir, paste0("lib", name, ".so"))
  if (!file.exists(library_path))
    .kcb_stop("kc_load_built: no ", library_path, " (kcompile build links it when a C compiler is ",
              "found; else: cc -shared -o ", library_path, " ", file.path(dir, paste0(name, ".o")), " -lm)")
  manifest <- .kcb_read_json(manifest_path)

  handle <- .Call(kc_built_open, library_path, name)
  model <- new.env(parent = emptyenv())
  model$handle <- handle
  model$name <- name
  model$dir <- dir
  model$messages <- .kcb_status_messages(dir)
  model$static_batch <- manifest$static_batch
  model$max_batch <- manifest$max_batch %||% Inf
  model$entries <- .Call(kc_built_entries, handle)

  status <- attr(handle, "status")
  if (status == 4L && file.exists(state_file <- file.path(dir, paste0(name, ".state")))) {
    # built with weights = "file": the initial state lies beside the library
    bytes <- readBin(state_file, "raw", n = file.size(state_file))
    if (length(bytes) != length(.Call(kc_built_get_state, handle)))
      .kcb_stop("kc_load_built: ", state_file, " has ", length(bytes), " bytes; the library's state has ",
                length(.Call(kc_built_get_state, handle)))
    .Call(kc_built_set_state, handle, bytes)
    status <- 0L
  }
  .kcb_check_status(model, status, paste0("kc_load_built: ", name, "_init_state"))

  # the tensors: the library's tables, counted by the manifest (the tables carry no length)
  entries <- manifest$entries
  roles <- function(entry, role) Filter(function(t) identical(t$role, role), entry$inputs)
  step <- entries$train %||% entries$evaluate
  x_manifest <- if (!is.null(entries$predict)) roles(entries$predict, "x") else roles(step, "x")
  model$inputs <- .Call(kc_built_table, handle, 0L, length(x_manifest))
  model$outputs <- if (!is.null(entries$predict)) .Call(kc_built_table, handle, 1L, length(entries$predict$outputs))
  model$targets <- if (!is.null(step)) .Call(kc_built_table, handle, 2L, length(roles(step, "y")))
  model$x_from_manifest <- is.null(model$inputs)
  if (model$x_from_manifest) model$inputs <- lapply(x_manifest, .kcb_row)
  same <- function(table, tensors) {
    is.null(table) || identical(vapply(table, `[[`, "", "name"), vapply(tensors, `[[`, "", "name"))
  }
  if (!same(model$inputs, x_manifest) ||
      (!is.null(entries$predict) && !same(model$outputs, entries$predict$outputs)) ||
      (!is.null(step) && !same(model$targets, roles(step, "y"))))
    .kcb_stop("kc_load_built: ", manifest_path, " does not describe ", library_path,
              " (rebuild the directory with kcompile build)")

  predict_fn <- function(...) .kcb_predict(model, list(...))
  class(predict_fn) <- c("kcompile_built", "function")
  predict_fn
}

.kcb_model <- function(object) {
  model <- if (inherits(object, "kcompile_built")) environment(object)$model
  if (!is.environment(model)) .kcb_stop("kcompile: expected a model loaded by kc_load_built()")
  model
}

# ----------------------------------------------------------------------------- data

# R values for the tensors of `table` (a list in the table's order, or by name), checked and
# converted to the storage .Call expects; returns list(values, batch).
.kcb_arrays <- function(model, args, table, what, batch = NULL) {
  if (length(args) == 1L && is.list(args[[1L]]) && !is.data.frame(args[[1L]])) args <- args[[1L]]
  names_ <- vapply(table, `[[`, "", "name")
  if (length(args) != length(table))
    .kcb_stop(model$name, ": expected ", length(table), " ", what, if (length(table) != 1L) "s", " (",
              paste(names_, collapse = ", "), "), got ", length(args))
  if (!is.null(names(args)) && all(nzchar(names(args)))) {
    if (!setequal(names(args), names_))
      .kcb_stop(model$name, ": the ", what, "s are named ", paste(names_, collapse = ", "),
                "; got ", paste(names(args), collapse = ", "))
    args <- args[names_]
  }
  values <- vector("list", length(table))
  for (i in seq_along(table)) {
    t <- table[[i]]
    x <- args[[i]]
    if (is.data.frame(x)) x <- as.matrix(x)
    if (!is.numeric(x) && !is.logical(x))
      .kcb_stop(model$name, ": ", what, " '", t$name, "' must be a numeric array, not ", class(x)[1L])
    shape <- dim(x) %||% length(x)
    expected <- t$dims
    ok <- length(shape) == length(expected) &&
          all(expected == -1 | shape == expected) &&
          (is.null(batch) || length(shape) == 0L || expected[1L] != -1 || shape[1L] == batch)
    if (!ok)
      .kcb_stop(model$name, ": ", what, " '", t$name, "' must have shape ", .kcb_shape_text(expected),
                if (!is.null(batch) && length(expected) && expected[1L] == -1) paste0(" with batch ", batch),
                "; got ", .kcb_shape_text(shape))
    if (is.null(batch) && length(expected) && expected[1L] == -1) batch <- shape[1L]
    if (identical(t$dtype, 2L)) {
      if (is.double(x) && any(is.finite(x) & x != round(x)))
        .kcb_stop(model$name, ": ", what, " '", t$name, "' is int32; got fractional numbers")
      storage.mode(x) <- "integer"
      if (anyNA(x)) .kcb_stop(model$name, ": ", what, " '", t$name, "' is int32; got NA")
    } else {
      storage.mode(x) <- "double"
    }
    values[[i]] <- x
  }
  if (is.null(batch)) batch <- 1L   # no tensor with a batch dimension
  if (!is.null(model$static_batch) && batch != model$static_batch)
    .kcb_stop(model$name, ": the library was built for a fixed batch of ", model$static_batch,
              " rows; got ", batch)
  if (batch < 1 || batch > model$max_batch)
    .kcb_stop(model$name, ": a batch of ", batch, " rows is outside 1..", model$max_batch)
  list(values = values, batch = batch)
}

.kcb_predict <- function(model, args) {
  if (!isTRUE(model$entries[["predict"]]) || is.null(model$outputs))
    .kcb_stop(model$name, ": the library has no predict entry (built with entries = without \"predict\")")
  data <- .kcb_arrays(model, args, model$inputs, "input")
  result <- .Call(kc_built_predict, model$handle, data$values, length(model$outputs), data$batch)
  .kcb_check_status(model, result[[1L]], paste0(model$name, "_predict"))
  outputs <- result[[2L]]
  if (length(outputs) == 1L) return(outputs[[1L]])
  stats::setNames(outputs, vapply(model$outputs, `[[`, "", "name"))
}

.kcb_step <- function(object, x, y, sample_weight, train) {
  model <- .kcb_model(object)
  entry <- if (train) "train" else "evaluate"
  if (!isTRUE(model$entries[[entry]]) || is.null(model$targets))
    .kcb_stop(model$name, ": the library has no ", if (train) "train_step" else "evaluate", " entry (",
              if (train) "the model needs compile() with an optimizer and a loss" else "the model needs a loss",
              " before kcompile build)")
  if (!is.list(x) || is.data.frame(x)) x <- list(x)
  if (!is.list(y) || is.data.frame(y)) y <- list(y)
  xs <- .kcb_arrays(model, list(x), model$inputs, "input")
  ys <- .kcb_arrays(model, list(y), model$targets, "target", batch = xs$batch)
  if (!is.null(sample_weight)) {
    sample_weight <- as.double(sample_weight)
    if (length(sample_weight) != xs$batch || anyNA(sample_weight))
      .kcb_stop(model$name, ": sample_weight must be ", xs$batch, " numbers (one per row); got ",
                length(sample_weight))
  }
  x_table <- if (model$x_from_manifest) model$inputs else list()
  result <- .Call(kc_built_step, model$handle, train, xs$values, ys$values, x_table, sample_weight, xs$batch)
  .kcb_check_status(model, result[[1L]], paste0(model$name, if (train) "_train_step" else "_evaluate"))
  result[[2L]]
}

#' One training step of a model loaded by kc_load_built() on a batch (x, y): updates the
#' library's state in place (later predictions see it) and returns the batch's loss.
kc_train_step <- function(object, x, y, sample_weight = NULL) {
  .kcb_step(object, x, y, sample_weight, train = TRUE)
}

#' The loss of a model loaded by kc_load_built() on a batch (x, y); the state is unchanged.
kc_evaluate <- function(object, x, y) .kcb_step(object, x, y, NULL, train = FALSE)

#' The state (weights, optimizer slots) of a model loaded by kc_load_built() as a raw vector, and
#' its replacement (from an earlier kc_built_state(), or DIR/NAME.state).
kc_built_state <- function(object) .Call(kc_built_get_state, .kcb_model(object)$handle)

`kc_built_state<-` <- function(object, value) {
  model <- .kcb_model(object)
  if (!is.raw(value)) .kcb_stop(model$name, ": the state must be a raw vector")
  .Call(kc_built_set_state, model$handle, value)
  object
}

predict.kcompile_built <- function(object, x, ...) .kcb_predict(.kcb_model(object), c(list(x), list(...)))

print.kcompile_built <- function(x, ...) {
  model <- .kcb_model(x)
  describe <- function(table) paste0(vapply(table, function(t)
    paste0(t$name, ": ", .kcb_dtype_name(t$dtype), .kcb_shape_text(t$dims)), ""), collapse = ", ")
  cat("<kcompile built model '", model$name, "' from ", model$dir, ">\n", sep = "")
  cat("  inputs:  ", describe(model$inputs), "\n", sep = "")
  if (!is.null(model$outputs)) cat("  outputs: ", describe(model$outputs), "\n", sep = "")
  if (!is.null(model$targets)) cat("  targets: ", describe(model$targets), "\n", sep = "")
  cat("  entries: ", paste(names(model$entries)[model$entries], collapse = ", "), "\n", sep = "")
  invisible(x)
}
