# Shared by the tests: quiet training and the seed guide's data, made in R.
options(kcompile.verbose = 0)

seed_data <- function(n = 1000) {
  set.seed(42)
  list(data = matrix(rnorm(n * 32), nrow = n, ncol = 32),
       labels = matrix(rnorm(n * 10), nrow = n, ncol = 10),
       val_data = matrix(rnorm(100 * 32), nrow = 100, ncol = 32),
       val_labels = matrix(rnorm(100 * 10), nrow = 100, ncol = 10))
}

# one-hot labels, for classification that can actually learn
onehot_data <- function(n = 500) {
  set.seed(7)
  x <- matrix(rnorm(n * 32), nrow = n, ncol = 32)
  cls <- max.col(x[, 1:10])                   # the class is the largest of the first 10 features
  list(x = x, y = diag(10)[cls, ], cls = cls)
}

# a Python attribute of a kcompile object as an R number (learning rates are floats or variables)
py_number <- function(obj, attr) {
  f <- reticulate::py_eval(paste0("lambda o: float(getattr(o, '", attr, "').numpy() if hasattr(getattr(o, '",
                                  attr, "'), 'numpy') else getattr(o, '", attr, "'))"))
  f(obj)
}

in_tempdir <- function(code) {
  dir <- tempfile("kcompile-r-")
  dir.create(dir)
  old <- setwd(dir)
  on.exit({ setwd(old); unlink(dir, recursive = TRUE) }, add = TRUE)
  force(code)
}
