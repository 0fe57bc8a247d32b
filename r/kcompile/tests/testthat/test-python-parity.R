# The same model built in R and in Python, with the same weights, predicts the same numbers;
# R matrices are column-major and must reach kcompile as the same rows.

test_that("an R matrix reaches Python with its rows intact (3 x 5, non-square)", {
  x <- matrix(as.numeric(0:14), nrow = 3, ncol = 5, byrow = TRUE)      # rows 0..4, 5..9, 10..14
  main <- reticulate::import_main(convert = FALSE)
  main$x_from_r <- kcompile:::.kc_data(x)
  rows <- lapply(reticulate::py_eval("[list(map(float, r)) for r in x_from_r]"), unlist)
  expect_equal(rows, list(c(0, 1, 2, 3, 4), c(5, 6, 7, 8, 9), c(10, 11, 12, 13, 14)))
  expect_equal(unlist(reticulate::py_eval("list(x_from_r.shape)")), c(3L, 5L))
  expect_true((reticulate::py_eval("bool(x_from_r.flags['C_CONTIGUOUS'])")))
  # and a 3-D array: x[i, j, k] in R is x[i-1, j-1, k-1] in Python
  a <- array(as.numeric(1:24), c(2, 3, 4))
  main$a_from_r <- kcompile:::.kc_data(a)
  expect_equal((reticulate::py_eval("float(a_from_r[1, 2, 3])")), a[2, 3, 4])
  expect_equal((reticulate::py_eval("float(a_from_r[0, 1, 2])")), a[1, 2, 3])
})

test_that("R-built and Python-built models with the same weights give identical predictions", {
  set.seed(11)
  model <- keras_model_sequential() %>%
    layer_dense(units = 7, activation = "tanh", input_shape = c(5)) %>%
    layer_dense(units = 4)
  x <- matrix(as.numeric(0:14), nrow = 3, ncol = 5, byrow = TRUE) / 10
  r_pred <- predict(model, x)
  expect_equal(dim(r_pred), c(3, 4))

  main <- reticulate::import_main(convert = FALSE)
  main$r_model <- model
  reticulate::py_run_string(paste(
    "import numpy as np",
    "import kcompile as keras",
    "from kcompile import layers",
    "py_model = keras.Sequential([layers.Dense(7, activation='tanh', input_shape=(5,)), layers.Dense(4)])",
    "py_model.set_weights(r_model.get_weights())",
    "x = np.arange(15, dtype='float32').reshape(3, 5) / 10",
    "py_pred = [list(map(float, row)) for row in py_model.predict(x, verbose=0)]",
    "r_kernel_row0 = list(map(float, r_model.get_weights()[0][0]))",
    sep = "\n"))
  py_pred <- do.call(rbind, lapply(reticulate::py$py_pred, unlist))
  expect_identical(r_pred, py_pred)
  # the kernel's first row (input 1 -> the 7 units) is the same in both languages
  expect_equal(get_weights(model)[[1]][1, ], unlist(reticulate::py$r_kernel_row0))

  # and the other way round: weights set from R (R arrays -> Python) give the Python model's numbers
  w <- lapply(get_weights(model), function(a) a * 2)
  set_weights(model, w)
  reticulate::py_run_string(paste(
    "py_model.set_weights([w * 2 for w in py_model.get_weights()])",
    "py_pred2 = [list(map(float, row)) for row in py_model.predict(x, verbose=0)]", sep = "\n"))
  expect_identical(predict(model, x), do.call(rbind, lapply(reticulate::py$py_pred2, unlist)))
})
