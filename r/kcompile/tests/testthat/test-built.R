# Libraries written by `kcompile build`, run from R without Python: kc_load_built() (R/built.R,
# src/built.c). Python builds the fixtures (built_models.py) and gives the reference predictions.

built <- local({
  py <- Sys.getenv("RETICULATE_PYTHON")
  if (!nzchar(py)) py <- unname(Sys.which("python3"))
  dir <- tempfile("kcompile-built-")
  dir.create(dir)
  why <- NULL
  if (!nzchar(py) || !file.exists(py)) {
    why <- "no Python to build the fixtures (set RETICULATE_PYTHON)"
  } else if (suppressWarnings(system2(py, c("-c", shQuote("import kcompile")), stdout = FALSE, stderr = FALSE)) != 0) {
    why <- paste(py, "cannot import kcompile, which builds the fixtures")
  } else {
    log <- suppressWarnings(system2(py, c(shQuote(test_path("built_models.py")), shQuote(dir)),
                                    stdout = TRUE, stderr = TRUE))
    if (!is.null(attr(log, "status"))) {
      stop("built_models.py failed:\n", paste(log, collapse = "\n"))
    }
    if (!file.exists(file.path(dir, "mlp", "libmlp.so")))
      why <- "kcompile build linked no libmlp.so (no C compiler found)"
  }
  list(dir = dir, skip = why)
})

skip_if_unbuilt <- function() if (!is.null(built$skip)) skip(built$skip)

# a fixture's Python result (row-major float64) as an R array
reference <- function(name) {
  shape <- as.integer(unlist(kcompile:::.kcb_read_json(file.path(built$dir, "shapes.json"))[[name]]))
  v <- readBin(file.path(built$dir, paste0(name, ".f64")), "double", n = prod(shape), size = 8L, endian = "little")
  if (length(shape) < 2L) return(v)
  aperm(array(v, rev(shape)), rev(seq_along(shape)))
}

test_that("kc_load_built predicts what the Python model predicts (7 x 5 -> 7 x 3)", {
  skip_if_unbuilt()
  f <- kc_load_built(file.path(built$dir, "mlp"))
  expect_true(is.function(f))
  expect_s3_class(f, "kcompile_built")
  x <- reference("mlp_x")
  expect_equal(dim(x), c(7L, 5L))
  p <- f(x)
  expect_equal(dim(p), c(7L, 3L))
  expect_equal(p, reference("mlp_pred"), tolerance = 1e-5)
  expect_equal(predict(f, x), p)
  expect_equal(f(as.data.frame(x)), p)
  expect_equal(f(list(input_layer = x)), p)
  # one row at a time gives the same rows
  expect_equal(f(x[3, , drop = FALSE]), p[3, , drop = FALSE])
  expect_output(print(f), "inputs:  input_layer: float32\\[batch, 5\\]")
})

test_that("several inputs and outputs, rank 3 tensors, and weights from NAME.state", {
  skip_if_unbuilt()
  f <- kc_load_built(file.path(built$dir, "two"))
  a <- reference("two_a")
  b <- reference("two_b")
  expect_equal(dim(a), c(5L, 4L, 3L))
  out <- f(a, b)
  expect_named(out, c("y0", "y1"))
  expect_equal(dim(out$y0), c(5L, 6L))
  expect_equal(dim(out$y1), c(5L, 2L, 3L))
  expect_equal(out$y0, reference("two_p1"), tolerance = 1e-5)
  expect_equal(out$y1, reference("two_p2"), tolerance = 1e-5)
  expect_equal(f(list(extra = b, seq = a)), out)            # by name, in any order
  expect_error(kc_train_step(f, list(a, b), out$y0), "no train_step entry")
})

test_that("wrong shapes and wrong data give clean R errors", {
  skip_if_unbuilt()
  f <- kc_load_built(file.path(built$dir, "mlp"))
  x <- reference("mlp_x")
  err <- expect_error(f(matrix(0, 7, 6)), "input 'input_layer' must have shape \\[batch, 5\\]; got \\[7, 6\\]",
                      class = "kcompile_error")
  expect_null(conditionCall(err))
  expect_error(f(t(x)), "must have shape \\[batch, 5\\]; got \\[5, 7\\]")
  expect_error(f(1:5), "got \\[5\\]")
  expect_error(f(array(0, c(7, 5, 1))), "got \\[7, 5, 1\\]")
  expect_error(f(x, x), "expected 1 input \\(input_layer\\), got 2")
  expect_error(f(matrix("a", 7, 5)), "must be a numeric array")
  expect_error(f(list(wrong = x)), "named input_layer; got wrong")
  expect_error(kc_train_step(f, x, matrix(0, 6, 3)), "target 'target_0' must have shape \\[batch, 3\\] with batch 7")
  expect_error(kc_train_step(f, x, matrix(0, 7, 3), sample_weight = 1:3), "sample_weight must be 7 numbers")
  g <- kc_load_built(file.path(built$dir, "two"))
  expect_error(g(reference("two_a"), matrix(0, 4, 2)), "input 'extra' must have shape \\[batch, 2\\] with batch 5")
  expect_error(kc_train_step(x, x, x), "expected a model loaded by kc_load_built")
  expect_error(kc_load_built(file.path(built$dir, "nowhere")), "no directory")
  expect_error(kc_load_built(built$dir), "expected one NAME_manifest.json")
})

test_that("the library's status codes come back with kcompile.h's messages", {
  skip_if_unbuilt()
  # weights = "file" without its NAME.state: NAME_init_state says KC_ERR_NO_WEIGHTS
  copy <- tempfile("kcompile-nostate-")
  dir.create(copy)
  on.exit(unlink(copy, recursive = TRUE), add = TRUE)
  file.copy(list.files(file.path(built$dir, "two"), full.names = TRUE), copy)
  file.remove(file.path(copy, "two.state"))
  expect_error(kc_load_built(copy), "two_init_state: the weights were not embedded: read NAME.state into the state buffer instead \\(kcompile status 4\\)",
               class = "kcompile_error")
  f <- kc_load_built(file.path(built$dir, "mlp"))
  expect_error(kcompile:::.kcb_check_status(environment(f)$model, 2L, "mlp_predict"),
               "mlp_predict: the batch size is not positive, too large, or not the model's fixed batch")
})

test_that("kc_train_step and kc_evaluate match Python's train_on_batch and update the state", {
  skip_if_unbuilt()
  f <- kc_load_built(file.path(built$dir, "mlp"))
  x <- reference("mlp_x")
  y <- reference("mlp_y")
  before <- kc_built_state(f)
  expect_type(before, "raw")
  loss0 <- kc_evaluate(f, x, y)
  expect_identical(kc_built_state(f), before)               # evaluate reads the state only
  loss <- kc_train_step(f, x, y)
  expect_equal(loss, reference("mlp_loss"), tolerance = 1e-5)
  expect_equal(loss, loss0, tolerance = 1e-6)
  expect_equal(f(x), reference("mlp_pred_after"), tolerance = 1e-5)
  expect_lt(kc_evaluate(f, x, y), loss)
  # the state round-trips: back to the built weights
  kc_built_state(f) <- before
  expect_equal(f(x), reference("mlp_pred"), tolerance = 1e-5)
  expect_true(is.finite(kc_train_step(f, x, y, sample_weight = c(1, 0, 1, 0, 1, 0, 1))))
  expect_error(kc_built_state(f) <- as.raw(1:3), "raw vector of 768 bytes")
  # models are independent, and released by their finalizers
  g <- kc_load_built(file.path(built$dir, "mlp"))
  expect_equal(g(x), reference("mlp_pred"), tolerance = 1e-5)
  for (i in 1:20) kc_load_built(file.path(built$dir, "mlp"))
  rm(g)
  invisible(gc())
  expect_equal(dim(f(x)), c(7L, 3L))
})

test_that("kc_load_built runs with no Python at all", {
  skip_if_unbuilt()
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script), add = TRUE)
  x <- reference("mlp_x")
  expected <- tempfile()
  on.exit(unlink(expected), add = TRUE)
  writeLines(c(
    "suppressWarnings(library(kcompile))",
    sprintf("f <- kc_load_built('%s')", file.path(built$dir, "mlp")),
    sprintf("x <- matrix(c(%s), 7, 5)", paste(sprintf("%.17g", x), collapse = ", ")),
    "p <- f(x)",
    "cat(if (reticulate::py_available(initialize = FALSE)) 'python' else 'no-python', '\\n')",
    "cat(sprintf('%.9g', p), sep = '\\n')"), script)
  env <- c(sprintf("R_LIBS=%s", paste(.libPaths(), collapse = .Platform$path.sep)),
           "RETICULATE_PYTHON=/nonexistent/python", "KCOMPILE_PYTHON=/nonexistent/python")
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), shQuote(script), env = env,
                                  stdout = TRUE, stderr = TRUE))
  expect_null(attr(out, "status"))
  at <- match("no-python ", out)
  expect_false(is.na(at), info = paste(out, collapse = "\n"))
  expect_equal(matrix(as.numeric(out[at + seq_len(21)]), 7, 3), reference("mlp_pred"), tolerance = 1e-5)
})
