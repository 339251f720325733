#!/usr/bin/env bash
# The main job: set up, check the machine, then attach to the bundled example Go service and show its traces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH:/usr/sbin"
bin/probescope doctor
exec node examples/demo/demo.ts
