#!/usr/bin/env bash
# Every GPU timing of issue 5 in one call (an H200: about 7 minutes); JSON into $OUT (or bench/).
#
# On the lent device machine (no network; its python3 has torch, torchvision, tqdm, pillow, tifffile, matplotlib)
# carry open_clip as wheels, made here once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform any -d .whl open_clip_torch ftfy wcwidth
# then: run(command="bash bench/gpu.sh", carry=[".whl"]).
set -eo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 STYLELAB_OFFLINE=1
out=${OUT:-bench}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 bench/lbfgs.py --json "$out/h200-lbfgs.json"
python3 bench/bench.py --sizes 512 --repeats 2 --batch 8 --json "$out/h200-512.json"
python3 bench/bench.py --backbones vgg19 --sizes 256,1024 --variants fp32,bf16 --repeats 2 --batch 0 --no-reference \
    --json "$out/h200-256-1024.json"
python3 bench/memory.py --json "$out/h200-memory.json"
