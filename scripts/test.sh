#!/usr/bin/env bash
# The whole test suite: set-up, type check, unit tests, and (as root) the kernel and end-to-end tests, then the
# packed package in a project of its own (scripts/test-out-of-tree.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH:/usr/sbin"
if [ "$(id -u)" -ne 0 ]; then
  echo "[test] not root: running the type check and the unit tests only (kernel tests need root)" >&2
  npm run --silent typecheck
  exec npm run --silent test:unit
fi
npm test
# probescope as users install it: the packed tarball in a project of its own (examples/out-of-tree), its unit tests,
# and its custom probe run through `probescope run --probe` (about a minute; bounded at about 5).
bash scripts/test-out-of-tree.sh
