#!/usr/bin/env bash
# The R interface's tests: install r/kcompile into a temporary library and run its testthat tests.
# Needs R with reticulate, R6, magrittr and testthat (Debian: r-base-core r-cran-reticulate r-cran-r6
# r-cran-magrittr r-cran-testthat) and a Python where `import kcompile` works: RETICULATE_PYTHON,
# else the `python` on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
RETICULATE_PYTHON="${RETICULATE_PYTHON:-$(command -v python || command -v python3)}"
export RETICULATE_PYTHON
if ! "$RETICULATE_PYTHON" -c "import kcompile" >/dev/null 2>&1; then
  echo "R interface: $RETICULATE_PYTHON cannot import kcompile (pip install -e . first, or set RETICULATE_PYTHON)" >&2
  exit 1
fi
lib="$(mktemp -d)"
trap 'rm -rf "$lib"' EXIT
echo "R interface: R CMD INSTALL r/kcompile (python: $RETICULATE_PYTHON)"
R CMD INSTALL --no-docs --no-html -l "$lib" r/kcompile >"$lib/install.log" 2>&1 || { cat "$lib/install.log"; exit 1; }
cd r/kcompile/tests
R_LIBS="$lib${R_LIBS:+:$R_LIBS}" Rscript -e '
  library(testthat)
  library(kcompile)
  started <- Sys.time()
  results <- as.data.frame(test_dir("testthat", reporter = "summary", stop_on_failure = FALSE))
  failed <- sum(results$failed) + sum(results$error)
  cat(sprintf("R tests took %.0f s\n", as.numeric(difftime(Sys.time(), started, units = "secs"))))
  cat(sprintf("testthat: %d passed, %d failed, %d skipped\n",
              as.integer(sum(results$passed)), as.integer(failed), as.integer(sum(results$skipped))))
  quit(status = if (failed > 0) 1 else 0)
'
