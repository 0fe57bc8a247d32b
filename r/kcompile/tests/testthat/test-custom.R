# Seed 003: CUSTOM LAYERS (R6 KerasLayer, create_layer, k_dot) and CUSTOM MODELS (keras_model_custom)

CustomLayer <- R6::R6Class("CustomLayer",
inherit = KerasLayer,
public = list(
    output_dim = NULL,
    kernel = NULL,
    initialize = function(output_dim) {
      self$output_dim <- output_dim
    },
    build = function(input_shape) {
      self$kernel <- self$add_weight(
          name = 'kernel',
          shape = list(input_shape[[2]], self$output_dim),
          initializer = initializer_random_normal(),
          trainable = TRUE)
    },
    call = function(x, mask = NULL) {
      k_dot(x, self$kernel)
    },
    compute_output_shape = function(input_shape) {
      list(input_shape[[1]], self$output_dim)
    }
))

layer_custom <- function(object, output_dim, name = NULL, trainable = TRUE) {
  create_layer(CustomLayer,
    object,
    list(output_dim = as.integer(output_dim),
    name = name,
    trainable = trainable))
}

test_that("the guide's R6 custom layer trains in a sequential model", {
  d <- seed_data(500)
  model <- keras_model_sequential()
  model %>%
  layer_dense(units = 32, input_shape = c(32)) %>%
  layer_custom(output_dim = 10, name = "custom")
  model %>% compile(optimizer = optimizer_adam(lr = 0.01), loss = 'mse')
  w <- get_weights(model)
  expect_length(w, 3)
  expect_equal(dim(w[[3]]), c(32, 10))       # the kernel made by add_weight
  before <- evaluate(model, d$data, d$labels)[["loss"]]
  h <- model %>% fit(d$data, d$labels, epochs = 5, batch_size = 32)
  expect_lt(tail(h$metrics$loss, 1), before)
  expect_false(isTRUE(all.equal(get_weights(model)[[3]], w[[3]])))   # the R layer's weight trained
  expect_equal(dim(predict(model, d$data[1:3, ])), c(3, 10))
  expect_equal(get_layer(model, "custom")$name, "custom")
})

test_that("the custom layer computes x %*% kernel, in a functional model too", {
  inputs <- layer_input(shape = c(5))
  outputs <- inputs %>% layer_custom(output_dim = 3)
  model <- keras_model(inputs, outputs)
  x <- matrix(as.numeric(1:15), 3, 5)
  k <- get_weights(model)[[1]]
  expect_equal(predict(model, x), x %*% k, tolerance = 1e-5)
})

test_that("the custom layer on the guide's 3-D input (input_shape = c(32, 32)) trains", {
  set.seed(9)
  model <- keras_model_sequential()
  model %>%
  layer_dense(units = 32, input_shape = c(32, 32)) %>%
  layer_custom(output_dim = 32)
  model %>% compile(optimizer = "adam", loss = "mse")
  x <- array(rnorm(20 * 32 * 32), c(20, 32, 32))
  y <- array(rnorm(20 * 32 * 32), c(20, 32, 32))
  h <- fit(model, x, y, epochs = 2, batch_size = 10)
  expect_true(all(is.finite(h$metrics$loss)))
  expect_equal(dim(predict(model, x[1:2, , , drop = FALSE])), c(2, 32, 32))
})

test_that("the guide's keras_model_custom model trains", {
  d <- seed_data(500)
  data <- d$data; labels <- d$labels
  # define and return a custom model
  my_model <- function(input_dim, output_dim, name = NULL) {
    keras_model_custom(name = name, function(self) {
      # create layers we'll need for the call (this code executes once)
      # note: the layers have to be created on the self object!
      self$dense1 <- layer_dense(units = 64, activation = 'relu', input_shape = input_dim)
      self$dense2 <- layer_dense(units = 64, activation = 'relu')
      self$dense3 <- layer_dense(units = output_dim, activation = 'softmax')
      # implement call (this code executes during training & inference)
      function(inputs, mask = NULL) {
        x <- inputs %>%
        self$dense1() %>%
        self$dense2() %>%
        self$dense3()
        x
      }
    })
  }
  model <- my_model(input_dim = 32, output_dim = 10)
  model %>% compile(
      optimizer = optimizer_rmsprop(lr = 0.001),
      loss = 'categorical_crossentropy',
      metrics = list('accuracy'))
  # Trains for 5 epochs
  h <- model %>% fit(data, labels, batch_size = 32, epochs = 5)
  expect_length(h$metrics$accuracy, 5)
  expect_length(get_weights(model), 6)
  p <- predict(model, data[1:4, ])
  expect_equal(dim(p), c(4, 10))
  expect_equal(rowSums(p), rep(1, 4), tolerance = 1e-5)
})

test_that("R functions work as metrics and schedules", {
  d <- onehot_data(200)
  mean_pred <- custom_metric("mean_pred", function(y_true, y_pred) k_mean(y_pred))
  model <- keras_model_sequential() %>% layer_dense(units = 10, activation = "softmax", input_shape = 32)
  model %>% compile(optimizer = "sgd", loss = loss_categorical_crossentropy, metrics = list(mean_pred))
  h <- fit(model, d$x, d$y, epochs = 1, batch_size = 50)
  expect_equal(h$metrics$mean_pred, 0.1, tolerance = 1e-5)
})
