library(testthat)
library(kcompile)
test_check("kcompile")
