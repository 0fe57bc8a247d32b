# Bad input from R gives the Python error's message as a clean R error (class kcompile_error),
# not a reticulate stack dump.

expect_kc_error <- function(expr, pattern) {
  e <- tryCatch({ expr; NULL }, error = function(e) e)
  expect_s3_class(e, "kcompile_error")
  expect_match(conditionMessage(e), pattern)
  expect_false(grepl("traceback|py_call_impl|File \"", conditionMessage(e)))
  expect_null(conditionCall(e))
  invisible(e)
}

model <- keras_model_sequential() %>% layer_dense(units = 10, input_shape = c(32))
model %>% compile(optimizer = "adam", loss = "mse")

test_that("data of the wrong shape", {
  expect_kc_error(model %>% fit(matrix(0, 10, 7), matrix(0, 10, 10)),
                  "^ValueError: Input 0 of layer .* expected shape=\\(None, 32\\), found shape=\\(.*, 7\\)")
  expect_kc_error(predict(model, matrix(0, 3, 5)), "ValueError: .*found shape=\\(3, 5\\)")
})

test_that("a character vector as data", {
  expect_kc_error(model %>% fit(c("a", "b"), matrix(0, 2, 10)), "^TypeError: .*must (contain numbers|be numeric)")
})

test_that("missing arguments", {
  expect_kc_error(layer_dense(), "^TypeError: .*missing 1 required positional argument: 'units'")
  expect_kc_error(model %>% fit(), "ValueError: fit\\(\\) needs training data")
  expect_kc_error(predict(model), "Error")
  expect_kc_error(layer_dense(units = 3, no_such_argument = 1), "no_such_argument")
})

test_that("errors inside R code called from Python (custom layers) come back as R errors", {
  Broken <- R6::R6Class("Broken", inherit = KerasLayer,
                        public = list(call = function(x, mask = NULL) stop("broken layer")))
  expect_kc_error(keras_model_sequential() %>% layer_dense(units = 2, input_shape = 2) %>%
                    create_layer(Broken, ., list()), "broken layer")
})
