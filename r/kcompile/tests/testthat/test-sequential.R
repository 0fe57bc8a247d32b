# Seed 003: SEQUENTIAL MODEL, CONFIGURE THE LAYERS, SET UP TRAINING, INPUT DATA, EVALUATE AND PREDICT

test_that("the guide's sequential MLP builds, compiles, trains, evaluates and predicts", {
  d <- seed_data()
  data <- d$data; labels <- d$labels; val_data <- d$val_data; val_labels <- d$val_labels
  model <- keras_model_sequential()
  # the pipe adds layers to `model` in place, without assignment, as in the Keras R package
  model %>%
  layer_dense(units = 64, activation = 'relu', input_shape = c(32)) %>% # Adds a densely-connected layer with 64 units to the model
  layer_dense(units = 64, activation = 'relu') %>% # Add another densely-connected layer with 64 units to the model
  layer_dense(units = 10, activation = 'softmax')  # Add a softmax layer with 10 output units
  expect_equal(count_params(model), 32 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10)

  model %>% compile(
      optimizer = 'adam',
       # mean squared error
      loss = 'mse',
       # mean absolute error
      metrics = list('mae')
      )
  # Configure a model for categorical classification.
  model %>% compile(
      optimizer = optimizer_rmsprop(lr = 0.01),
      loss = "categorical_crossentropy",
      metrics = list("categorical_accuracy")
  )
  history <- model %>% fit( data, labels, epochs = 10, batch_size = 32)
  expect_s3_class(history, "kcompile_training_history")
  expect_length(history$metrics$loss, 10)
  expect_true(all(is.finite(history$metrics$loss)))

  history <- model %>%
  fit(data, labels, epochs = 10, batch_size = 32, validation_data = list(val_data, val_labels))
  expect_setequal(names(history$metrics), c("loss", "categorical_accuracy", "val_loss", "val_categorical_accuracy"))
  expect_length(history$metrics$val_loss, 10)

  scores <- model %>% evaluate(data, labels, batch_size = 32)
  expect_named(scores, c("loss", "categorical_accuracy"))
  expect_true(all(is.finite(scores)))

  p <- model %>% predict(data[1:5, ])
  expect_true(is.matrix(p))
  expect_equal(dim(p), c(5, 10))
  expect_equal(rowSums(p), rep(1, 5), tolerance = 1e-5)

  # the same compiled model learns a real task: the class is the largest of the first 10 features
  o <- onehot_data()
  model %>% fit(o$x, o$y, epochs = 15, batch_size = 32)
  expect_gt(evaluate(model, o$x, o$y)[["categorical_accuracy"]], 0.8)
  expect_gt(mean(max.col(predict(model, o$x)) == o$cls), 0.8)
})

test_that("optimizer_rmsprop(lr =) is Keras R's legacy name of learning_rate", {
  expect_equal(py_number(optimizer_rmsprop(lr = 0.01), "learning_rate"), 0.01, tolerance = 1e-6)
  expect_equal(py_number(optimizer_sgd(learning_rate = 0.2), "learning_rate"), 0.2, tolerance = 1e-6)
})

test_that("the guide's layer configurations construct (regularizers, initializers, c(2.0))", {
  expect_s3_class(layer_dense(units = 64, activation ='sigmoid'), "kcompile.layers.core.Dense")
  # A linear layer with L1 regularization of factor 0.01 applied to the kernel matrix:
  l1 <- layer_dense(units = 64, kernel_regularizer = regularizer_l1(0.01))
  # A linear layer with L2 regularization of factor 0.01 applied to the bias vector:
  l2 <- layer_dense(units = 64, bias_regularizer = regularizer_l2(0.01))
  # A linear layer with a kernel initialized to a random orthogonal matrix:
  orth <- layer_dense(units = 64, kernel_initializer = 'orthogonal')
  # A linear layer with a bias vector initialized to 2.0
  two <- layer_dense(units = 64, kernel_initializer = c(2.0))
  for (l in list(l1, l2, orth, two)) expect_s3_class(l, "kcompile.layers.core.Dense")
  # R numerics became Python ints
  expect_identical(l1$units, 64L)

  model <- keras_model_sequential() %>%
    layer_dense(units = 4, kernel_initializer = c(2.0), bias_initializer = c(0.5), input_shape = c(3))
  w <- get_weights(model)
  expect_equal(w[[1]], matrix(2, 3, 4))
  expect_equal(w[[2]], rep(0.5, 4))
  # the L1 penalty shows in the loss: zero inputs and targets leave only 0.01 * sum(|2|) over 12 weights
  reg <- keras_model_sequential() %>%
    layer_dense(units = 4, kernel_initializer = c(2.0), kernel_regularizer = regularizer_l1(0.01),
                input_shape = c(3))
  reg %>% compile(optimizer = 'sgd', loss = 'mse')
  expect_equal(evaluate(reg, matrix(0, 2, 3), matrix(0, 2, 4))[["loss"]], 0.01 * 2 * 12, tolerance = 1e-5)
})

test_that("pipes modify the model in place and layers can be given as a list", {
  model <- keras_model_sequential()
  model %>% layer_dense(units = 8, input_shape = c(4))
  model %>% layer_dense(units = 2)
  expect_equal(length(model$layers), 2)
  m2 <- keras_model_sequential(list(layer_dense(units = 8, input_shape = 4), layer_dense(units = 2)))
  expect_equal(count_params(m2), count_params(model))
  pop_layer(model)
  expect_equal(length(model$layers), 1)
})

test_that("R integers, vectors, logicals and data frames are data; 1-D outputs come back as vectors", {
  model <- keras_model_sequential() %>% layer_dense(units = 1, input_shape = 2, kernel_initializer = c(1))
  expect_equal(as.vector(predict(model, matrix(1:4, 2, 2))), c(1 + 3, 2 + 4))
  df <- data.frame(a = c(1, 2), b = c(3, 4))
  expect_equal(as.vector(predict(model, df)), c(4, 6))
  expect_equal(as.vector(predict(model, matrix(c(TRUE, FALSE, TRUE, TRUE), 2, 2))), c(2, 1))
})

test_that("the guide's first snippet: layers without an input shape, named in model order", {
  model <- keras_model_sequential()
  model %>%
  layer_dense(units = 64, activation = 'relu') %>% # Adds a densely-connected layer with 64 units to the model
  layer_dense(units = 64, activation = 'relu') %>% # Add another densely-connected layer with 64 units to the model
  layer_dense(units = 10, activation = 'softmax')  # Add a softmax layer with 10 output units
  p <- predict(model, matrix(rnorm(2 * 32), 2, 32))     # built from the data's shape
  expect_equal(dim(p), c(2, 10))
  expect_equal(count_params(model), 32 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10)
  units <- vapply(model$layers, function(l) l$units, integer(1))
  expect_equal(units, c(64L, 64L, 10L))
  names <- vapply(model$layers, function(l) l$name, character(1))
  number <- ifelse(grepl("_[0-9]+$", names), as.integer(sub(".*_", "", names)), 0L)
  expect_true(all(diff(number) > 0))             # dense, dense_1, dense_2 (or later numbers), in order
})
