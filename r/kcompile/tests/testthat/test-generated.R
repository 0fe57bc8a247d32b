# The constructors generated at load from kcompile's Python registry.

test_that("every kcompile layer, optimizer, loss, metric and callback class has an R constructor", {
  exports <- getNamespaceExports("kcompile")
  reg <- kcompile_registry()
  expect_true(all(reg$name %in% exports))
  py <- reticulate::py_run_string(paste(
    "import inspect, kcompile as kc",
    "def classes(mod, base, skip):",
    "    return sorted(n for n in dir(mod) if not n.startswith('_') and n not in skip and",
    "                  inspect.isclass(getattr(mod, n)) and issubclass(getattr(mod, n), base))",
    "layer_classes = classes(kc.layers, kc.layers.Layer, {'Layer', 'InputLayer'})",
    "optimizer_classes = classes(kc.optimizers, kc.optimizers.Optimizer, {'Optimizer'})",
    "callback_classes = classes(kc.callbacks, kc.callbacks.Callback, {'Callback', 'History', 'ProgbarLogger'})",
    sep = "\n"))
  for (fam in c("layer", "optimizer", "callback")) {
    classes <- unlist(reticulate::py[[paste0(fam, "_classes")]])
    expect_setequal(unique(reg$class[reg$family == fam]), classes)
  }
  # Keras R's names
  for (name in c("layer_dense", "layer_conv_2d", "layer_conv_2d_transpose", "layer_max_pooling_2d",
                 "layer_global_average_pooling_1d", "layer_lstm", "layer_gru", "layer_simple_rnn",
                 "layer_batch_normalization", "layer_layer_normalization", "layer_embedding",
                 "layer_dropout", "layer_flatten", "layer_reshape", "layer_concatenate", "layer_add",
                 "layer_activation_leaky_relu", "layer_activation_parametric_relu", "layer_upsampling_2d",
                 "layer_zero_padding_2d", "layer_separable_conv_2d", "layer_depthwise_conv_2d",
                 "time_distributed", "bidirectional",
                 "optimizer_sgd", "optimizer_adam", "optimizer_rmsprop", "optimizer_adagrad",
                 "optimizer_adadelta", "optimizer_adamax", "optimizer_nadam",
                 "loss_mean_squared_error", "loss_binary_crossentropy", "loss_categorical_crossentropy",
                 "loss_sparse_categorical_crossentropy", "loss_kullback_leibler_divergence", "loss_huber",
                 "metric_categorical_accuracy", "metric_auc", "metric_top_k_categorical_accuracy",
                 "metric_root_mean_squared_error", "metric_precision", "metric_recall",
                 "callback_model_checkpoint", "callback_early_stopping", "callback_tensorboard",
                 "callback_csv_logger", "callback_reduce_lr_on_plateau", "callback_learning_rate_scheduler",
                 "callback_terminate_on_naan", "callback_lambda",
                 "initializer_random_normal", "initializer_glorot_uniform", "initializer_he_normal",
                 "regularizer_l1", "regularizer_l2", "regularizer_l1_l2", "activation_relu", "k_dot", "k_mean")) {
    expect_true(name %in% exports, info = name)
  }
})

test_that("generated constructors name positional arguments and coerce R numbers", {
  conv <- layer_conv_2d(filters = 8, kernel_size = c(3, 3), strides = 2)
  expect_identical(conv$filters, 8L)
  expect_identical(unlist(conv$kernel_size), c(3L, 3L))
  d <- layer_dense(NULL, 5, "relu")                  # object, then units, activation by position
  expect_identical(d$units, 5L)
  sgd <- optimizer_sgd(0.5, momentum = 0.9)          # learning_rate by position
  expect_equal(py_number(sgd, "learning_rate"), 0.5)
  expect_s3_class(optimizer_adam(lr = 0.1), "kcompile.optimizers.Adam")
  lstm <- layer_lstm(units = 4, return_sequences = TRUE)
  expect_true(lstm$return_sequences)
  es <- callback_early_stopping(patience = 3)
  expect_identical(es$patience, 3L)
})

test_that("loss_* and metric_* give objects, or values on R data", {
  expect_s3_class(loss_mean_squared_error(), "kcompile.losses.MeanSquaredError")
  expect_equal(loss_mean_squared_error(matrix(c(0, 0), 1), matrix(c(1, 3), 1)), 5)
  expect_equal(metric_binary_accuracy(c(1, 0, 1, 1), c(0.9, 0.2, 0.3, 0.6)), 0.75)
  expect_equal(activation_relu(matrix(c(-1, 2), 1)), matrix(c(0, 2), 1))
  expect_equal(to_categorical(c(0, 2, 1), 3), diag(3)[c(1, 3, 2), ])
})

test_that("recurrent and embedding layers from R", {
  set.seed(2)
  x <- matrix(sample(0:19, 8 * 6, TRUE), 8, 6)
  y <- matrix(runif(8), 8, 1)
  model <- keras_model_sequential() %>%
    layer_embedding(input_dim = 20, output_dim = 4) %>%
    layer_lstm(units = 3) %>%
    layer_dense(units = 1)
  model %>% compile(optimizer = "adam", loss = "mse")
  h <- fit(model, x, y, epochs = 1, batch_size = 4)
  expect_true(is.finite(h$metrics$loss))
  expect_equal(dim(predict(model, x)), c(8, 1))
})
