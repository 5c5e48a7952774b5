#!/usr/bin/env bash
# Runs the end-to-end tests (the official openai npm client against the real moed); ctest
# calls it as gateway_e2e_test. The client is installed by `npm ci` here (scripts/test.sh does it).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ ! -d tests/e2e/node_modules/openai ]]; then
  echo "tests/e2e: the openai package is not installed; run: (cd tests/e2e && npm ci)" >&2
  exit 1
fi
exec node --test tests/e2e/*.test.mjs
