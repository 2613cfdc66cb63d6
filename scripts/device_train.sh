#!/usr/bin/env bash
# Train a demo candidate on a lent GPU machine in a fixed time, and bring the weights back under $OUT.
#
#   here:   python -m scripts.device_kit          # .device_kit/: training photos and pairs, backbones, wheels
#   device: run(command="OUT=$OUT bash scripts/device_train.sh", carry=[".device_kit"], timeout_s=600)
#   tiny CPU rehearsal (before spending device time):
#           OUT=/tmp/dev MINUTES=1 bash scripts/device_train.sh --gpu_ids -1 --ngf 8 --num_cab 1 --crop_size 64 \
#               --batch_size 2 --n_iters 4 --num_threads 0
#
# The GPU machine has PyTorch but not rawpy or lpips (installed from the kit's wheels when missing) and no network
# (the backbone weights come from the kit). train.py runs for at most MINUTES (default 8) and is then stopped with
# SIGINT, which makes it finish its iteration and save 'latest' (exit 130); a run that reaches --n_iters first ends
# normally. $OUT receives latest_net_G_T.pth, train_opt.txt, loss_log.txt, train.log and throughput.txt.
# Any train.py flag given to this script is appended (and so overrides the recipe below).
# Environment: OUT (required), KIT (default .device_kit), MINUTES (default 8), PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that comes back}"
KIT="${KIT:-.device_kit}"
MINUTES="${MINUTES:-8}"
PYTHON="${PYTHON:-python3}"
RUN_DIR="$(mktemp -d)"

if ! "$PYTHON" -c "import rawpy, lpips" 2>/dev/null; then
  [[ -d "$KIT/wheels" ]] || { echo "[device_train] error: rawpy/lpips missing and no $KIT/wheels" >&2; exit 2; }
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$KIT"/wheels/*.whl \
    || { echo "[device_train] error: installing $KIT/wheels failed" >&2; exit 2; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [[ -f "$KIT/pretrained.tar.gz" ]]; then
  mkdir -p "$RUN_DIR/pretrained" && tar -xzf "$KIT/pretrained.tar.gz" -C "$RUN_DIR/pretrained" || exit 2
  export CR3NET_PRETRAINED="$RUN_DIR/pretrained"
fi
# The kit holds the training photos and pairs only (held out by --holdout_every 8 when it was made), hence
# --holdout_every 0 on it; without a kit the full shared data is read and the split is made here.
photos="$KIT/photos"; pairs="$KIT/zhang_real"; holdout=0
if [[ ! -d "$photos" || ! -d "$pairs" ]]; then
  photos="../shared/data/photos"; pairs="../shared/data/reflection/zhang_real"; holdout=8
fi
"$PYTHON" -c "import torch; print('[device_train] torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

# The recipe: the CPU demo's (checkpoints/demo/README.md) at a width, crop and batch that a GPU makes cheap.
start=$(date +%s)
PYTHONUNBUFFERED=1 timeout --preserve-status -s INT -k 120 "$((MINUTES * 60))" \
  "$PYTHON" train.py --dataroot "$photos" --real_dataroot "$pairs" --holdout_every "$holdout" \
    --name device_demo --checkpoints_dir "$RUN_DIR" --ngf 48 --num_cab 4 --crop_size 192 --batch_size 16 \
    --lr 3e-4 --lr_policy linear --lr_decay_iters 1500 --n_iters 3000 --real_ratio 0.25 \
    --pixel_loss psnr --pseudo_raw_ratio 0.5 --upstream_ratio 0.3 --vgg vgg16 --precision auto \
    --samples_per_epoch 8000 --save_latest_freq 100 --print_freq 50 --display_id 0 --num_threads 12 --seed 0 \
    "$@" 2>&1 | tee "$OUT/train.log"
status=${PIPESTATUS[0]}
seconds=$(( $(date +%s) - start ))
echo "[device_train] train.py exit status $status after ${seconds} s"
if [[ $status -ne 0 && $status -ne 130 ]]; then
  exit "$status"
fi
run="$RUN_DIR/device_demo"
cp "$run/latest_net_G_T.pth" "$run/train_opt.txt" "$run/loss_log.txt" "$OUT/" || exit 2
[[ -f "$run/architecture.json" ]] && cp "$run/architecture.json" "$OUT/"
"$PYTHON" - "$run" "$seconds" > "$OUT/throughput.txt" <<'EOF'
import sys
import torch
progress = torch.load(f"{sys.argv[1]}/latest_train_state.pth", map_location="cpu", weights_only=True)["progress"]
samples = progress["iteration"] * progress["batch_size"] * progress["world_size"]
seconds = int(sys.argv[2])
print(f"{progress['iteration']} iterations, {samples} samples in {seconds} s (start-up included): "
      f"{samples / max(seconds, 1):.1f} samples/s")
EOF
cat "$OUT/throughput.txt"
exit 0
