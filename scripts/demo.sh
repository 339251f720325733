#!/usr/bin/env bash
# The main job: set up, then run the demo (for now the machine check `probescope doctor`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH:/usr/sbin"
exec bin/probescope doctor "$@"
