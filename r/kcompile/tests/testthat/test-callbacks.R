# Seed 003: 回调函数 (callbacks) — they write their files

test_that("the guide's callbacks run and write their files", {
  d <- seed_data(300)
  data <- d$data; labels <- d$labels; val_data <- d$val_data; val_labels <- d$val_labels
  in_tempdir({
    model <- keras_model_sequential() %>%
      layer_dense(units = 16, activation = "relu", input_shape = c(32)) %>%
      layer_dense(units = 10)
    model %>% compile(optimizer = "adam", loss = "mse")
    callbacks <- list(
        callback_early_stopping(patience = 2, monitor = 'val_loss'),
        callback_tensorboard(log_dir = './logs'),
        callback_model_checkpoint(filepath = "checkpoint.h5", monitor = "val_loss"),
        callback_csv_logger("training.csv"),
        callback_learning_rate_scheduler(function(epoch, lr) lr * 0.5))

    h <- model %>%
    fit(data, labels,
    batch_size = 32,
    epochs = 5,
    callbacks = callbacks,
    validation_data = list(val_data, val_labels))

    expect_true(file.exists("checkpoint.h5"))
    expect_gt(length(list.files("logs", pattern = "tfevents", recursive = TRUE)), 0)
    log <- read.csv("training.csv")
    expect_equal(nrow(log), length(h$metrics$loss))
    expect_true(all(c("epoch", "loss", "val_loss") %in% names(log)))
    # the R schedule halved the learning rate every epoch
    lr <- h$metrics$learning_rate
    expect_equal(lr[-1] / lr[-length(lr)], rep(0.5, length(lr) - 1), tolerance = 1e-5)
    # early stopping stops: with an impossible min_delta nothing counts as an improvement
    h2 <- fit(model, data, labels, epochs = 20, batch_size = 32, validation_data = list(val_data, val_labels),
              callbacks = list(callback_early_stopping(monitor = "val_loss", patience = 1, min_delta = 1e9)))
    expect_lt(length(h2$metrics$loss), 20)
    # the checkpoint is a model
    restored <- load_model_hdf5("checkpoint.h5")
    expect_equal(dim(predict(restored, data[1:2, ])), c(2, 10))
  })
})

