#!/usr/bin/env bash
# The main job: sets up what is missing (.venv, backbone weights), then evaluates CR3Net.
#  - With the authors' checkpoints/RAW_RGB_RR/final_net_G_T.pth and their test set in datasets/ (testB_rgb, ...):
#    upstream's evaluation (--eval_resize official).
#  - Otherwise the embedded default: the demo test set (generated once into datasets/demo) and the demo checkpoint.
# Any arguments go on to test.py and win over these defaults, e.g.:
#    bash test.sh --dataroot my_set --eval_resize none
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh requirements.txt

if [[ -f checkpoints/RAW_RGB_RR/final_net_G_T.pth ]] && [[ -d datasets/testB_rgb || -d datasets/wogtB_rgb ]]; then
  echo "[test.sh] upstream evaluation: checkpoints/RAW_RGB_RR/final_net_G_T.pth on datasets/"
  exec python test.py --dataroot datasets --name RAW_RGB_RR --model RAWRR --dataset_mode rawrr --epoch final \
    --eval_resize official "$@"
fi

python -m scripts.make_demo_dataset --out datasets/demo
if [[ -f checkpoints/demo/final_net_G_T.pth ]]; then
  echo "[test.sh] embedded default: demo checkpoint checkpoints/demo/final_net_G_T.pth on datasets/demo"
  echo "          (for the paper's evaluation put final_net_G_T.pth in checkpoints/RAW_RGB_RR/ and the test set in datasets/)"
  exec python test.py --dataroot datasets/demo --name demo --model RAWRR --dataset_mode rawrr --epoch final \
    --eval_resize official "$@"
fi
echo "[test.sh] no trained weights here: neither checkpoints/RAW_RGB_RR/final_net_G_T.pth nor checkpoints/demo/."
echo "          Evaluating a RANDOMLY INITIALISED narrow network (ngf 16) on datasets/demo: the numbers mean nothing."
mkdir -p checkpoints/untrained
python -c "import torch; from models.networks import define_G; \
from models.checkpoint import save_generator_weights; torch.manual_seed(0); \
save_generator_weights(define_G(ngf=16, num_cab=2), 'checkpoints/untrained/final_net_G_T.pth')"
exec python test.py --dataroot datasets/demo --name untrained --model RAWRR --dataset_mode rawrr --epoch final \
  --eval_resize official "$@"
