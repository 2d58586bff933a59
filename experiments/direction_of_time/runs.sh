#!/bin/bash
# Every run of the second session's direction-of-time study, in the order they ran (model card, section
# "Direction of time"). All start from the shipped synth-r2 weights (runs/default-r2/best.pt, the card's
# run 2) on the 2-core CPU box; the data folders are those of the card plus two views made of symlinks:
#   data/synth/train-pair/{sit_down,stand_up} -> ../train/{sit_down,stand_up}     (folder layout)
#   data/synth/test-pair/{sit_down,stand_up}  -> ../test/{sit_down,stand_up}
#   data/synth/train-mix: the UCF101 layout of data/synth/train with every sit_down and stand_up video
#       listed 4 times (extra symlinks NAME_copyK.EXT; trainlist01.txt lists all 2880)
# Runs marked "stopped" were killed by hand once the per-class check showed the outcome.
set -euo pipefail
R2=runs/default-r2/best.pt
FT="--epochs-stage1 0 --batch-size 32 --cache-dir data/cache --threads 2 --warmup-epochs 0.5"
PROBE="--lr 1e-3 --weight-decay 1e-4 --label-smoothing 0"
CHECK="python experiments/direction_of_time/per_class.py"

# the probe behind temporal_pool=1 (first thing this session ran; 15 epochs each, ~2.5 min each)
python experiments/direction_of_time/temporal_pool_probe.py 3 15 $R2
python experiments/direction_of_time/temporal_pool_probe.py 1 15 $R2
# r3: 10 classes, both paths, TCL on the 6x6 map (fresh TCL), default regularisation (stopped at epoch 19)
fstcn train --data data/synth/train --out runs/r3 --preset small --init-from $R2 $FT --epochs-stage2 25 --lr 1e-3 --seed 2
$CHECK runs/r3/last.pt sit_down,stand_up
# temporal path only, 10 classes
fstcn train --data data/synth/train --out runs/control-temporal --preset small --paths temporal --init-from $R2 $FT --epochs-stage2 20 --lr 1e-3 --seed 2
$CHECK runs/control-temporal/last.pt sit_down,stand_up
# the pair alone (sit_down vs stand_up), one run per --paths value
PAIR="--data data/synth/train-pair --dataset-kind folder --holdout 0 --preset small --init-from $R2 $FT --epochs-stage2 40 $PROBE --seed 3"
fstcn train $PAIR --out runs/direction --paths temporal
fstcn train $PAIR --out runs/direction-both
fstcn train $PAIR --out runs/direction-d3 --freeze spatial
fstcn train $PAIR --out runs/direction-spatial --paths spatial
for run in direction direction-spatial direction-both; do
  fstcn evaluate --model runs/$run/best.pt --data data/synth/test-pair --dataset-kind folder --subset train --holdout 0 --out runs/eval-$run
done
$CHECK runs/direction-d3/last.pt sit_down,stand_up 40
# back to 10 classes from the pair's temporal path (+ synth-r2 for what it lacks)
INIT="--init-from runs/direction/best.pt --init-from $R2"
fstcn train --data data/synth/train --out runs/r4 --preset small $INIT $FT --epochs-stage2 15 --lr 5e-4 --seed 4      # stopped at epoch 9
fstcn train --data data/synth/train-mix --out runs/r5 --preset small $INIT $FT --epochs-stage2 12 $PROBE --seed 5     # stopped at epoch 5
fstcn train --data data/synth/train --out runs/r6 --preset small $INIT --freeze lower --freeze temporal $FT --epochs-stage2 8 $PROBE --seed 6  # stopped at epoch 2
fstcn train --data data/synth/train-mix --out runs/r8-temporal --preset small --paths temporal $INIT $FT --epochs-stage2 10 --lr 5e-4 --weight-decay 1e-4 --label-smoothing 0 --seed 8
$CHECK runs/r8-temporal/best.pt wave,clap,jumping_jack,jump,squat,punch,kick,bow,sit_down,stand_up
# where the pair's both-paths failure comes from: the lower SCL frozen (its BatchNorm statistics too)
fstcn train $PAIR --out runs/direction-temporal-frozen --paths temporal --freeze lower
fstcn train $PAIR --out runs/direction-both-frozen --freeze lower --freeze spatial
for run in direction-temporal-frozen direction-both-frozen direction-d3; do
  fstcn evaluate --model runs/$run/best.pt --data data/synth/test-pair --dataset-kind folder --subset train --holdout 0 --out runs/eval-$run
done
# two stages on ten classes: the temporal path without the spatial path in the fusion (lower SCL frozen),
# then the spatial path, fusion and classifier with the lower SCL and the temporal path frozen
fstcn train --data data/synth/train-mix --out runs/r9-temporal --preset small --paths temporal --freeze lower --init-from $R2 $FT --epochs-stage2 12 $PROBE --seed 9
$CHECK runs/r9-temporal/best.pt wave,clap,jumping_jack,jump,squat,punch,kick,bow,sit_down,stand_up
fstcn train --data data/synth/train --out runs/r10 --preset small --freeze lower --freeze temporal --init-from runs/r9-temporal/best.pt --init-from $R2 $FT --epochs-stage2 8 $PROBE --seed 10   # stopped: r9 had no direction
# the pair's frozen-lower temporal run, then the ten classes with everything up to the TCL frozen
fstcn train --data data/synth/train --out runs/r11-temporal --preset small --paths temporal --freeze lower --freeze temporal.branch --freeze temporal.tp --freeze temporal.tcl --init-from runs/direction-temporal-frozen/best.pt --init-from $R2 $FT --epochs-stage2 8 $PROBE --seed 11
$CHECK runs/r11-temporal/best.pt wave,clap,jumping_jack,jump,squat,punch,kick,bow,sit_down,stand_up

# ---- third session: --reverse-pair (every sit_down video also trains as stand_up played backwards, and
# vice versa) and --drop-spatial-path. Same FT settings; PAIRT = the pair's frozen-lower temporal run.
PAIRT=runs/direction-temporal-frozen/best.pt
REV="--reverse-pair sit_down:stand_up"
# r12: 10 classes, both paths, from run 2 (stopped at epoch 11 of 20)
fstcn train --data data/synth/train --out runs/r12-reverse --preset small --init-from $R2 $FT --epochs-stage2 20 --lr 1e-3 --seed 12 $REV
$CHECK runs/r12-reverse/last.pt sit_down,stand_up,squat,bow
# r13: from the pair's temporal path + run 2, lower SCL frozen, 15 epochs
fstcn train --data data/synth/train --out runs/r13-reverse --preset small --init-from $PAIRT --init-from $R2 --freeze lower $FT --epochs-stage2 15 --lr 1e-3 --seed 13 $REV
$CHECK runs/r13-reverse/best.pt wave,clap,jumping_jack,jump,squat,punch,kick,bow,sit_down,stand_up
# r14: same with the temporal path frozen too (only the spatial path, fusion and classifier train), 12 epochs
fstcn train --data data/synth/train --out runs/r14-reverse --preset small --init-from $PAIRT --init-from $R2 --freeze lower --freeze temporal $FT --epochs-stage2 12 --lr 1e-3 --seed 14 $REV
$CHECK runs/r14-reverse/last.pt wave,clap,jumping_jack,jump,squat,punch,kick,bow,sit_down,stand_up
# r15: as r13 with path dropout 0.5 (stopped at epoch 9)
fstcn train --data data/synth/train --out runs/r15-reverse-drop --preset small --init-from $PAIRT --init-from $R2 --freeze lower $FT --epochs-stage2 15 --lr 1e-3 --seed 15 $REV --drop-spatial-path 0.5
# r16: from r14, the temporal path trains again at a low learning rate, 10 epochs
fstcn train --data data/synth/train --out runs/r16-unfreeze --preset small --init-from runs/r14-reverse/last.pt --freeze lower $FT --epochs-stage2 10 --lr 2e-4 --seed 16 $REV
$CHECK runs/r16-unfreeze/last.pt wave,clap,jumping_jack,jump,squat,punch,kick,bow,sit_down,stand_up
# r17: 16 more epochs from r16 at 3e-4
fstcn train --data data/synth/train --out runs/r17-more --preset small --init-from runs/r16-unfreeze/last.pt --freeze lower $FT --epochs-stage2 16 --lr 3e-4 --seed 17 $REV
$CHECK runs/r17-more/last.pt wave,clap,jumping_jack,jump,squat,punch,kick,bow,sit_down,stand_up
# r18: 16 more epochs from r17 at 3e-4
fstcn train --data data/synth/train --out runs/r18-more --preset small --init-from runs/r17-more/last.pt --freeze lower $FT --epochs-stage2 16 --lr 3e-4 --seed 18 $REV
# r19: 12 more epochs from r18 without label smoothing (the pair runs' PROBE settings)
fstcn train --data data/synth/train --out runs/r19-sharp --preset small --init-from runs/r18-more/last.pt --freeze lower $FT --epochs-stage2 12 --lr 3e-4 $PROBE --seed 19 $REV
# r20: 12 more epochs from r19 at 2e-4, no label smoothing
fstcn train --data data/synth/train --out runs/r20-sharp --preset small --init-from runs/r19-sharp/last.pt --freeze lower $FT --epochs-stage2 12 --lr 2e-4 $PROBE --seed 20 $REV
# r21: 10 epochs from r19's last epoch with the lower SCL trainable too, lr 1e-4
fstcn train --data data/synth/train --out runs/r21-lower --preset small --init-from runs/r19-sharp/last.pt $FT --epochs-stage2 10 --lr 1e-4 $PROBE --seed 21 $REV

# ---- fourth session: more training data (120 more videos per class from seeds 3 and 4), synth-r4
fstcn synth --out data/synth/train-extra  --videos-per-class 60 --seed 3 --workers 2
fstcn synth --out data/synth/train-extra2 --videos-per-class 60 --seed 4 --workers 2
python experiments/direction_of_time/train_plus.py data/synth/train-plus data/synth/train data/synth/train-extra data/synth/train-extra2
# r22: 8 epochs on the 3000 videos from r21's best; squats also played backwards
fstcn train --data data/synth/train-plus --out runs/r22-plus --preset small --init-from runs/r21-lower/best.pt $FT --epochs-stage2 8 --lr 1e-4 --weight-decay 1e-4 --label-smoothing 0 --seed 22 --decode-workers 2 $REV --reverse-pair squat:squat
# r23 (synth-r4 = its best.pt): 8 more epochs from r22's best without squat:squat
fstcn train --data data/synth/train-plus --out runs/r23-plus --preset small --init-from runs/r22-plus/best.pt $FT --epochs-stage2 8 --lr 1e-4 --weight-decay 1e-4 --label-smoothing 0 --seed 23 --decode-workers 2 $REV
for run in r22-plus r23-plus; do
    fstcn export --checkpoint runs/$run/best.pt --out /tmp/$run/fstcn-small.onnx --name fstcn-small --version synth-r4
    fstcn evaluate --model /tmp/$run/fstcn-small.onnx --data data/synth/test --out runs/eval-${run%-plus}
done
# r25 (synth-r5): 12 minutes from r23's best on exact crops and shared-trunk windows together
python experiments/agreement/finetune_shared.py runs/r23-plus/best.pt runs/r25-shared/best.pt --data data/synth/train-plus --cache-dir data/cache --minutes 12
fstcn export --checkpoint runs/r25-shared/best.pt --out /tmp/r25/fstcn-small.onnx --name fstcn-small --version synth-r5
fstcn evaluate --model /tmp/r25/fstcn-small.onnx --data data/synth/test --out runs/eval-r25
# r26 (not shipped): 12 more minutes from r25 with the KL term weighted 10; agreement over all 400 test videos
python experiments/agreement/finetune_shared.py runs/r25-shared/best.pt runs/r26-consistency/best.pt --data data/synth/train-plus --cache-dir data/cache --minutes 12 --consistency 10 --seed 1
# (the version string of this scratch export is not the shipped synth-r6, which is r28 below)
fstcn export --checkpoint runs/r26-consistency/best.pt --out /tmp/r26/fstcn-small.onnx --name fstcn-small --version synth-r6
fstcn bench --sections agreement --model /tmp/r26/fstcn-small.onnx --data data/synth/test --max-videos 400 --cache .cache/bench-r6 --checkpoint runs/r26-consistency/best.pt

# ---- fifth session: on a lent H100 (the data generated there; experiments/gpu_train/train_on_gpu.py has
# the two commands), then the selection set here, the four candidates on it, and one test evaluation
#   r27: train_on_gpu.py runs/r25-shared/best.pt $OUT --work /tmp/gpu-train --minutes 5 --epochs 14
#   r28: train_on_gpu.py /tmp/gpu-train/run/last.pt $OUT --work /tmp/gpu-train --run run2 --minutes 3.4 \
#        --epochs 50 --lr 2e-4 --seed 28 --val-clips 5          (copied back to runs/r27-gpu, runs/r28-gpu)
fstcn synth --out data/synth/select-s7 --videos-per-class 40 --seed 7 --split test --workers 2
for c in r25-shared/best r27-gpu/last r28-gpu/best r28-gpu/last; do
    n=$(echo $c | tr / -)
    fstcn export --checkpoint runs/$c.pt --out /tmp/sel/$n/fstcn-small.onnx --name fstcn-small --version $n
    fstcn evaluate --model /tmp/sel/$n/fstcn-small.onnx --data data/synth/select-s7 --out runs/select-s7/$n
done
# synth-r6 = r28's last epoch (97.75% on select-s7); its one test evaluation (first of the same weights
# exported to /tmp/r28 without --video: runs/eval-r28, identical), then its agreement
fstcn export --checkpoint runs/r28-gpu/last.pt --out models/fstcn-small.onnx --name fstcn-small --version synth-r6 --video data/synth/test/wave/v_wave_g01_c01.mp4
# later (same weights, same ONNX file): the shared trunk's border calibration, models/fstcn-small.border.npz
fstcn export --checkpoint runs/r28-gpu/last.pt --out models/fstcn-small.onnx --name fstcn-small --version synth-r6 --video data/synth/test/wave/v_wave_g01_c01.mp4 --calibrate-shared data/synth/train
python experiments/agreement/border_calibration.py runs/r28-gpu/last.pt --calibrate data/synth/train --calibrate-videos 200 --evaluate data/synth/select-s7 --evaluate data/synth/test --out runs/border-calibration-r28.json
python experiments/agreement/border_linear_study.py runs/r28-gpu/last.pt data/synth/train 200 data/synth/select-s7 runs/border-linear-select.json
fstcn evaluate --model models/fstcn-small.onnx --data data/synth/test --out runs/eval-r28-shipped
fstcn bench --sections agreement --data data/synth/test --max-videos 400 --cache .cache/bench-r6 --checkpoint runs/r28-gpu/last.pt --out .cache/bench-r6/agreement400.json
# with models/fstcn-small.border.npz in place (the bench's trunk graphs pick it up)
fstcn bench --sections agreement --data data/synth/test --max-videos 400 --cache .cache/bench-r6c --checkpoint runs/r28-gpu/last.pt --out .cache/bench-r6c/agreement400.json

# ---- sixth session: the border calibration refined on the decision, and exact rechecks of close calls
# the refinement on cached windows, followed on the selection set epoch by epoch, from the fifth session's
# least-squares .npz (a first run of 4 epochs, before --start existed, read the then-shipped file, the same)
git show 12562e1:models/fstcn-small.border.npz > /tmp/least-squares.border.npz
python experiments/agreement/border_refine.py models/fstcn-small.pt models/fstcn-small.onnx data/synth/train 500 data/synth/select-s7 runs/border-refine --epochs 8 --start /tmp/least-squares.border.npz
# the shipped calibration (the ONNX file written here is byte-identical to models/fstcn-small.onnx;
# only the .border.npz was copied to models/)
fstcn export --checkpoint runs/r28-gpu/last.pt --out /tmp/ship/fstcn-small.onnx --name fstcn-small --version synth-r6 --no-write-checkpoint --calibrate-shared data/synth/train --calibration-videos 600 --refine-epochs 8
