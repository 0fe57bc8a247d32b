# Seed 003: FUNCTIONAL API; R lists for several inputs and outputs

test_that("the guide's functional model trains", {
  d <- seed_data()
  data <- d$data; labels <- d$labels
  inputs <- layer_input(shape = c(32))
  predictions <- inputs %>%
   layer_dense(units = 64, activation = 'relu') %>%
   layer_dense(units = 64, activation = 'relu') %>%
   layer_dense(units = 10, activation = 'softmax')

  # Instantiate the model given inputs and outputs.
  model <- keras_model(inputs = inputs, outputs = predictions)

  # The compile step specifies the training configuration.
  model %>%
  compile(
      optimizer = optimizer_rmsprop(lr = 0.001),
      loss = 'categorical_crossentropy',
      metrics = list('accuracy') )

  # Trains for 5 epochs
  history <- model %>%
  fit( data, labels, batch_size = 32, epochs = 5)
  expect_length(history$metrics$loss, 5)
  expect_true(all(is.finite(history$metrics$loss)))
  expect_equal(dim(predict(model, data[1:2, ])), c(2, 10))
  expect_named(evaluate(model, data, labels), c("loss", "accuracy"))
})

test_that("multi-input, multi-output models take and give R lists", {
  set.seed(3)
  a <- layer_input(shape = c(4), name = "a")
  b <- layer_input(shape = c(3), name = "b")
  shared <- layer_dense(units = 8, activation = "relu")
  merged <- layer_concatenate(list(a %>% layer_dense(units = 8), b %>% layer_dense(units = 8))) %>% shared
  out1 <- merged %>% layer_dense(units = 1, name = "out1")
  out2 <- merged %>% layer_dense(units = 2, activation = "softmax", name = "out2")
  model <- keras_model(inputs = list(a, b), outputs = list(out1, out2))
  model %>% compile(optimizer = "adam", loss = list("mse", "categorical_crossentropy"),
                    loss_weights = list(1, 0.5))
  xa <- matrix(rnorm(64 * 4), 64, 4); xb <- matrix(rnorm(64 * 3), 64, 3)
  y1 <- matrix(rnorm(64), 64, 1); y2 <- diag(2)[sample(1:2, 64, TRUE), ]
  h <- model %>% fit(list(xa, xb), list(y1, y2), epochs = 3, batch_size = 16)
  expect_length(h$metrics$loss, 3)
  p <- predict(model, list(xa[1:5, ], xb[1:5, ]))
  expect_type(p, "list")
  expect_length(p, 2)
  expect_equal(dim(p[[1]]), c(5, 1))
  expect_equal(dim(p[[2]]), c(5, 2))
  # named lists are dicts keyed by input/output name
  p2 <- predict(model, list(a = xa[1:5, ], b = xb[1:5, ]))
  expect_equal(p2[[2]], p[[2]])
  expect_true(is.finite(evaluate(model, list(xa, xb), list(y1, y2))[["loss"]]))
})

test_that("a convolutional model takes R 4-D arrays (generated layer_conv_2d, layer_max_pooling_2d)", {
  set.seed(5)
  x <- array(runif(16 * 6 * 5 * 1), c(16, 6, 5, 1))
  y <- diag(3)[sample(1:3, 16, TRUE), ]
  model <- keras_model_sequential() %>%
    layer_conv_2d(filters = 4, kernel_size = c(3, 3), activation = "relu", padding = "same",
                  input_shape = c(6, 5, 1)) %>%
    layer_max_pooling_2d(pool_size = c(2, 2)) %>%
    layer_flatten() %>%
    layer_dense(units = 3, activation = "softmax")
  model %>% compile(optimizer = optimizer_adam(learning_rate = 0.01), loss = "categorical_crossentropy",
                    metrics = list(metric_categorical_accuracy()))
  h <- model %>% fit(x, y, epochs = 2, batch_size = 8)
  expect_length(h$metrics$categorical_accuracy, 2)
  expect_equal(dim(predict(model, x)), c(16, 3))
})
