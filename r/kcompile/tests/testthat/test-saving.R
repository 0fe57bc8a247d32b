# Seed 003: 保存和恢复 (saving and restoring): weights only, configuration only, entire model

trained <- local({
  d <- seed_data(200)
  model <- keras_model_sequential() %>%
    layer_dense(units = 16, activation = "relu", input_shape = c(32)) %>%
    layer_dense(units = 10, activation = "softmax")
  model %>% compile(optimizer = optimizer_rmsprop(lr = 0.01), loss = "categorical_crossentropy",
                    metrics = list("accuracy"))
  model %>% fit(d$data, d$labels, epochs = 2, batch_size = 32)
  list(model = model, data = d$data, labels = d$labels)
})

test_that("save_model_hdf5 -> load_model_hdf5 round-trips weights, predictions and compile state", {
  t <- trained
  in_tempdir({
    save_model_hdf5(t$model, "model.h5")
    expect_true(file.exists("model.h5"))
    restored <- load_model_hdf5("model.h5")
    expect_equal(predict(restored, t$data), predict(t$model, t$data))
    expect_equal(get_weights(restored), get_weights(t$model))
    expect_equal(evaluate(restored, t$data, t$labels), evaluate(t$model, t$data, t$labels), tolerance = 1e-6)
    # the restored model keeps training
    h <- fit(restored, t$data, t$labels, epochs = 1, batch_size = 32)
    expect_true(is.finite(h$metrics$loss))
  })
})

test_that("weights only: save_model_weights_hdf5 / load_model_weights_hdf5 and the guide's _tf forms", {
  t <- trained
  in_tempdir({
    fresh <- keras_model_sequential() %>%
      layer_dense(units = 16, activation = "relu", input_shape = c(32)) %>%
      layer_dense(units = 10, activation = "softmax")
    expect_false(isTRUE(all.equal(predict(fresh, t$data), predict(t$model, t$data))))
    t$model %>% save_model_weights_hdf5("weights.h5")
    fresh %>% load_model_weights_hdf5("weights.h5")
    expect_equal(predict(fresh, t$data), predict(t$model, t$data))

    model <- t$model
    model %>% save_model_weights_tf('my_model/') # Restore the model's state, # this requires a model with the same architecture.
    other <- keras_model_sequential() %>%
      layer_dense(units = 16, activation = "relu", input_shape = c(32)) %>%
      layer_dense(units = 10, activation = "softmax")
    other %>% load_model_weights_tf('my_model/')
    expect_equal(get_weights(other), get_weights(model))

    model %>% save_model_tf('my_model/') # Recreate the exact same model, including weights and optimizer.
    again <- load_model_tf('my_model/')
    expect_equal(predict(again, t$data), predict(model, t$data))

    save_model(model, "model.keras")
    expect_equal(predict(load_model("model.keras", compile = FALSE), t$data), predict(model, t$data))
  })
})

test_that("configuration only: model_to_json / model_from_json and model_to_yaml / model_from_yaml", {
  model <- trained$model
  json_string <- model %>% model_to_json()
  expect_type(json_string, "character")
  expect_match(json_string, "Dense")
  # Recreate the model (freshly initialized)
  fresh_model <- model_from_json(json_string)
  expect_equal(count_params(fresh_model), count_params(model))
  expect_equal(lapply(get_weights(fresh_model), dim), lapply(get_weights(model), dim))
  # Serializes a model to YAML format
  yaml_string <- model %>% model_to_yaml()
  expect_type(yaml_string, "character")
  expect_equal(count_params(model_from_yaml(yaml_string)), count_params(model))
})
