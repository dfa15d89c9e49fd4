#!/usr/bin/env bash
# The runs behind results/README.md, in the order they were made.
# Usage: results/run.sh [dense|dense-dropout|mixed|lloyd|kde|clip|dither|seeds|cnn-fmnist|cnn-fmnist-bn|cnn-fmnist-levels|cnn-fmnist-mixed|cnn-fmnist-clip|cnn-fmnist-dither|cnn-fmnist-channel|cnn-fmnist-clip-keep|cnn-fmnist-clip-where|cnn-fmnist-rescale|rescale|bias-correct|cnn-fmnist-bias-correct|init-seeds|restarts|qat|qat-long|cnn-fmnist-qat|cnn-fmnist-qat3|cnn-fmnist-clip99-qat3|resnet9|resnet9-fmnist|resnet9-fmnist-layers|resnet9-fmnist-clip|resnet9-fmnist-qat|cnn-cifar|all]   (from the repository root)
# SWEEP overrides the command (default: cargo run --); SWEEP_DATA_DIR the data folder.
set -euo pipefail
SWEEP=${SWEEP:-"cargo run --quiet --"}
export SWEEP_DATA_DIR=${SWEEP_DATA_DIR:-../shared/datasets}
what=${1:-all}
run() { echo "+ sweep-gpu $*" >&2; $SWEEP "$@"; }
# the reduced ResNet9 on Fashion-MNIST and its checkpoint, shared by the resnet9-fmnist* sections
r9="--model resnet9 --dataset fashion-mnist --train-limit 3000 --epochs 3 --eval-limit 500 --checkpoint-dir results/checkpoints"

if [[ $what == dense || $what == all ]]; then
  for d in churn telescope california mv; do
    run --model mlp-simple --dataset $d --out results/mlp-simple-$d
  done
  # mlp-complex: the whole net and each layer alone (per-layer sensitivity)
  for d in churn telescope california mv; do
    scope=all; [[ $d == churn || $d == california ]] && scope=each-layer
    run --model mlp-complex --dataset $d --scope $scope --out results/mlp-complex-$d
  done
fi
if [[ $what == dense-dropout || $what == all ]]; then
  # mlp-complex on the regressors without the study's dropout 0.1 (results/README.md:
  # dropout, not too few epochs, is what holds mlp-complex back on mv)
  for d in california mv; do
    run --model mlp-complex --dataset $d --dropout 0 --out results/mlp-complex-$d-dropout0
  done
fi
if [[ $what == mixed || $what == all ]]; then
  # mixed precision: the first layer held at 8 bits or fp32 while --bits sets the
  # others (results/README.md section 4 found the first layer the most sensitive);
  # the same checkpoints as the mlp-complex runs above
  for d in churn telescope california mv; do
    run --model mlp-complex --dataset $d --layer-bits first=8 --layer-bits first=fp32 \
        --out results/mlp-complex-$d-mixed
  done
  # the classifiers again at seeds 2-8, kept as in `seeds` below
  for d in churn telescope; do
    for s in 2 3 4 5 6 7 8; do
      o=results/seeds/mlp-complex-$d-mixed-s$s
      run --model mlp-complex --dataset $d --seed $s --layer-bits first=8 --layer-bits first=fp32 --out $o
      gzip -f $o/results.csv
      rm -f $o/*.png $o/*.svg $o/report.html
    done
  done
fi
if [[ $what == lloyd || $what == all ]]; then
  # Lloyd-Max levels against uniform-nearest, on the same checkpoints as the dense runs
  for m in mlp-simple mlp-complex; do
    for d in churn telescope california mv; do
      run --model $m --dataset $d --methods uniform-nearest,lloyd-nearest,lloyd-stochastic \
          --out results/$m-$d-lloyd
    done
  done
fi
if [[ $what == kde || $what == all ]]; then
  # kernel-density levels against the uniform and normal sets, on the mlp-complex checkpoints
  for d in churn telescope california mv; do
    run --model mlp-complex --dataset $d --methods uniform-nearest,normal-nearest,kde-nearest,kde-stochastic \
        --out results/mlp-complex-$d-kde
  done
fi
if [[ $what == clip || $what == all ]]; then
  # each group's range clipped to its 99.9th and 99th percentiles, and per bit width
  # and method to the range of least (expected) squared error under that method's
  # rounding (mse), the study's seven methods, on the mlp-complex checkpoints
  for d in churn telescope california mv; do
    for p in 99.9 99 mse; do
      run --model mlp-complex --dataset $d --clip $p --out results/mlp-complex-$d-clip$p
    done
  done
fi
if [[ $what == dither || $what == all ]]; then
  # triangular dither against nearest and stochastic rounding on the uniform set,
  # 32 seeds, on the mlp-complex checkpoints
  for d in churn telescope california mv; do
    run --model mlp-complex --dataset $d \
        --methods uniform-nearest,uniform-stochastic,uniform-dither,uniform-dither-subtractive \
        --out results/mlp-complex-$d-dither
  done
  # the same under --clip mse: each rounding on the range of its own least
  # (expected) squared error
  for d in churn telescope california mv; do
    run --model mlp-complex --dataset $d --clip mse \
        --methods uniform-nearest,uniform-stochastic,uniform-dither,uniform-dither-subtractive \
        --out results/mlp-complex-$d-dither-clipmse
  done
fi
if [[ $what == seeds || $what == all ]]; then
  # the dense classifiers again at seeds 2-8 (seed 1 is the runs above): split,
  # training and rounding seeds all move. Kept: config.json, summary.json, report.md
  # and results.csv gzipped (the plots are redrawn by `sweep-gpu report` after gunzip)
  for m in mlp-simple mlp-complex; do
    for d in churn telescope; do
      for s in 2 3 4 5 6 7 8; do
        o=results/seeds/$m-$d-s$s
        run --model $m --dataset $d --seed $s --out $o
        gzip -f $o/results.csv
        rm -f $o/*.png $o/*.svg $o/report.html
      done
    done
  done
fi
if [[ $what == cnn-fmnist || $what == all ]]; then
  # reduced to fit a 2-core CPU: 3,000 training images, 2 epochs, 500 test images, 3 seeds
  run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
      --seeds 3 --out results/cnn-fashion-mnist-reduced
fi
if [[ $what == cnn-fmnist-bn || $what == all ]]; then
  # the same checkpoint, BatchNorm kept f32 or pooled with the weights (the study's way)
  for bn in keep pool; do
    run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
        --methods uniform-nearest,normal-nearest,uniform-stochastic --seeds 3 --bits 1-12 \
        --bn $bn --out results/cnn-fashion-mnist-reduced-bn-$bn
  done
fi
if [[ $what == cnn-fmnist-levels || $what == all ]]; then
  # the same checkpoint, the level sets beyond the study against uniform and normal
  run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
      --methods uniform-nearest,normal-nearest,lloyd-nearest,kde-nearest --bits 2,3,4,5,6,8 \
      --out results/cnn-fashion-mnist-reduced-levels
fi
if [[ $what == cnn-fmnist-mixed || $what == all ]]; then
  # the same checkpoint, the first and last layers held at 8 bits
  run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
      --methods uniform-nearest,lloyd-nearest --bits 2,3,4,5 --layer-bits first=8,last=8 \
      --out results/cnn-fashion-mnist-reduced-mixed
fi
if [[ $what == cnn-fmnist-clip || $what == all ]]; then
  # the same checkpoint, the study's nearest roundings with the full range, with
  # each group's range clipped to its 99th percentile, and MSE-optimal clipping
  for clip in none 99 mse; do
    flag=(); [[ $clip != none ]] && flag=(--clip $clip)
    run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
        --methods uniform-nearest,histogram-nearest,normal-nearest,midrise --bits 2,3,4,5,6,8 "${flag[@]}" \
        --out results/cnn-fashion-mnist-reduced-clip$clip
  done
  # uniform-nearest at 2 bits, the whole net and each layer alone, both clips
  for clip in 99 mse; do
    run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
        --methods uniform-nearest --bits 2 --scope each-layer --clip $clip \
        --checkpoint-dir results/checkpoints --out results/cnn-fashion-mnist-reduced-clip-layers/$clip
  done
fi
if [[ $what == cnn-fmnist-dither || $what == all ]]; then
  # the same checkpoint, the uniform set's four roundings, 8 seeds
  run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
      --methods uniform-nearest,uniform-stochastic,uniform-dither,uniform-dither-subtractive \
      --bits 2,3,4,5,6,8 --seeds 8 --out results/cnn-fashion-mnist-reduced-dither
fi
if [[ $what == cnn-fmnist-channel || $what == all ]]; then
  # the same checkpoint, one group per output channel, under each BatchNorm treatment
  # (section 5 blamed folding's per-channel scales for the fold run's 2-3 bit loss)
  for bn in fold keep pool; do
    run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
        --methods uniform-nearest,normal-nearest --bits 1-8 --granularity channel \
        --bn $bn --out results/cnn-fashion-mnist-reduced-channel-bn-$bn
  done
fi
if [[ $what == cnn-fmnist-clip-keep || $what == all ]]; then
  # the same checkpoint with BatchNorm kept f32: does mse clipping still collapse
  # at 2 bits when no BatchNorm scale is folded into the weights?
  for clip in none 99 mse; do
    flag=(); [[ $clip != none ]] && flag=(--clip $clip)
    run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
        --methods uniform-nearest --bits 2,3,4,5,6,8 --bn keep "${flag[@]}" \
        --out results/cnn-fashion-mnist-reduced-bn-keep-clip$clip
  done
fi
if [[ $what == cnn-fmnist-clip-where || $what == all ]]; then
  # where the 2-bit mse collapse comes from: uniform-nearest at 2 bits with one
  # layer held fp32 (each of the eight), and with only the first k layers
  # quantized (k = 2..6; k = 7 is fc.1 held), under both clips
  layers=(blocks.0 blocks.1 blocks.2 blocks.3 blocks.4 blocks.5 fc.0 fc.1)
  scopes=()
  for l in "${layers[@]}"; do scopes+=(--layer-bits "$l=fp32"); done
  for k in 2 3 4 5 6; do
    held=$(printf '%s=fp32,' "${layers[@]:k}"); scopes+=(--layer-bits "${held%,}")
  done
  for clip in 99 mse; do
    run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
        --methods uniform-nearest --bits 2 --clip $clip "${scopes[@]}" \
        --checkpoint-dir results/checkpoints --out results/cnn-fashion-mnist-reduced-clip-where/$clip
  done
fi
if [[ $what == cnn-fmnist-rescale || $what == all ]]; then
  # is it the shrinkage? The same checkpoint and nearest roundings as
  # cnn-fmnist-clip, each group's quantized weights rescaled after rounding:
  # by Sum w^2/Sum wq (gain 1) or Sum wq/Sum q^2 (least squares), under each clip
  for clip in none 99 mse; do
    flag=(); [[ $clip != none ]] && flag=(--clip $clip)
    for mode in gain lsq; do
      run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
          --methods uniform-nearest,histogram-nearest,normal-nearest,midrise --bits 2,3,4,5,6,8 "${flag[@]}" \
          --rescale $mode --checkpoint-dir results/checkpoints \
          --out results/cnn-fashion-mnist-reduced-rescale/clip$clip-$mode
    done
  done
fi
if [[ $what == rescale || $what == all ]]; then
  # the dense nets under --clip mse (gain 0.85-0.90 at 2 bits), rescaled after rounding
  for d in churn telescope california mv; do
    for mode in gain lsq; do
      run --model mlp-complex --dataset $d --clip mse --rescale $mode --checkpoint-dir results/checkpoints \
          --out results/mlp-complex-$d-clipmse-$mode
    done
  done
fi
if [[ $what == bias-correct || $what == all ]]; then
  # the dense nets with each quantized layer's bias corrected for the shift of
  # its mean output, over every training row (mean) or over the rows where the
  # output passes its ReLU (active): on the full range, under --clip mse, and
  # under --clip mse with --rescale gain; then the regressors without dropout
  # (dense-dropout's checkpoints)
  for mode in mean active; do
    for d in churn telescope california mv; do
      run --model mlp-complex --dataset $d --bias-correct $mode --checkpoint-dir results/checkpoints \
          --out results/mlp-complex-$d-bc$mode
      run --model mlp-complex --dataset $d --clip mse --bias-correct $mode --checkpoint-dir results/checkpoints \
          --out results/mlp-complex-$d-clipmse-bc$mode
      run --model mlp-complex --dataset $d --clip mse --rescale gain --bias-correct $mode --checkpoint-dir results/checkpoints \
          --out results/mlp-complex-$d-clipmse-gain-bc$mode
    done
    for d in california mv; do
      run --model mlp-complex --dataset $d --dropout 0 --bias-correct $mode --checkpoint-dir results/checkpoints \
          --out results/mlp-complex-$d-dropout0-bc$mode
    done
  done
  # why --rescale gain hurts california: each layer alone, with and without
  # the gain and the correction (uniform and normal nearest, 2-4 bits)
  for mode in none gain; do
    for bc in none mean; do
      run --model mlp-complex --dataset california --clip mse --rescale $mode --bias-correct $bc --scope each-layer \
          --methods uniform-nearest,normal-nearest --bits 2,3,4 --checkpoint-dir results/checkpoints \
          --out results/mlp-complex-california-gain-layers/clipmse-$mode-bc$bc
    done
  done
fi
if [[ $what == cnn-fmnist-bias-correct || $what == all ]]; then
  # the reduced CNN's clip grid (cnn-fmnist-clip) with the folded biases
  # corrected, calibrated on its first 1,024 training images; and under mse
  # with the gain restored too
  for clip in none 99 mse; do
    flag=(); [[ $clip != none ]] && flag=(--clip $clip)
    for mode in mean active; do
      run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
          --methods uniform-nearest,histogram-nearest,normal-nearest,midrise --bits 2,3,4,5,6,8 "${flag[@]}" \
          --bias-correct $mode --checkpoint-dir results/checkpoints \
          --out results/cnn-fashion-mnist-reduced-bias-correct/clip$clip-bc$mode
    done
  done
  run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
      --methods uniform-nearest,histogram-nearest,normal-nearest,midrise --bits 2,3,4,5,6,8 --clip mse \
      --rescale gain --bias-correct active --checkpoint-dir results/checkpoints \
      --out results/cnn-fashion-mnist-reduced-bias-correct/clipmse-gain-bcactive
  # BatchNorm kept f32 (cnn-fmnist-clip-keep's grid): the conv biases before it corrected
  for clip in none mse; do
    flag=(); [[ $clip != none ]] && flag=(--clip $clip)
    run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
        --methods uniform-nearest --bits 2,3,4,5,6,8 --bn keep "${flag[@]}" --bias-correct active \
        --checkpoint-dir results/checkpoints --out results/cnn-fashion-mnist-reduced-bias-correct/bn-keep-clip$clip-bcactive
  done
fi
if [[ $what == init-seeds || $what == all ]]; then
  # mlp-simple on telescope with seed 1's split, trained from 16 initial states
  # (fp32 only; config.json and summary.json kept)
  for k in $(seq 1 16); do
    out=results/seeds/mlp-simple-telescope-init$k
    run --model mlp-simple --dataset telescope --seed 1 --init-seed $k --bits 8 --methods uniform-nearest \
        --seeds 1 --checkpoint-dir results/checkpoints --out $out
    find $out -type f ! -name config.json ! -name summary.json -delete
  done
fi
if [[ $what == restarts || $what == all ]]; then
  # mlp-simple on telescope at seeds 1-16: one training, and the best on validation
  # of four (--restarts 4: init seeds s..s+3), fp32 only; config.json and summary.json kept
  for s in $(seq 1 16); do
    for r in 1 4; do
      out=results/seeds/mlp-simple-telescope-restarts$r-seed$s
      run --model mlp-simple --dataset telescope --seed $s --restarts $r --bits 8 --methods uniform-nearest \
          --seeds 1 --checkpoint-dir results/checkpoints --out $out
      find $out -type f ! -name config.json ! -name summary.json -delete
    done
  done
fi
if [[ $what == qat || $what == all ]]; then
  # quantization-aware training: mlp-complex fine-tuned for uniform-nearest at 2, 3
  # and 4 bits from the dense runs' checkpoints (3 epochs, lr a tenth of training's)
  for d in churn telescope california mv; do
    for b in 2 3 4; do
      run --model mlp-complex --dataset $d --qat uniform-nearest:$b --checkpoint-dir results/checkpoints \
          --out results/mlp-complex-$d-qat/uniform-nearest-$b
    done
  done
fi
if [[ $what == qat-long || $what == all ]]; then
  # the same fine-tunings for 10 epochs instead of 3, scored at their own
  # target alone: does QAT gain from more epochs?
  for d in churn telescope california mv; do
    for b in 2 3 4; do
      run --model mlp-complex --dataset $d --qat uniform-nearest:$b --qat-epochs 10 --bits $b --methods uniform-nearest \
          --checkpoint-dir results/checkpoints --out results/mlp-complex-$d-qat10/uniform-nearest-$b
    done
  done
fi
if [[ $what == cnn-fmnist-qat || $what == all ]]; then
  # the reduced CNN's checkpoint (cnn-fmnist) fine-tuned for uniform-nearest at 2
  # bits, one epoch, BatchNorm folded; swept with three deterministic methods
  run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
      --qat uniform-nearest:2 --qat-epochs 1 --bits 1,2,3,4,5,6,8 --methods uniform-nearest,histogram-nearest,midrise \
      --out results/cnn-fashion-mnist-reduced-qat/uniform-nearest-2
  # the same under --clip 99 (its base run: cnn-fashion-mnist-reduced-clip99), from the
  # same checkpoint
  run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 --clip 99 \
      --qat uniform-nearest:2 --qat-epochs 1 --bits 1,2,3,4,5,6,8 --methods uniform-nearest,histogram-nearest,midrise \
      --checkpoint-dir results/cnn-fashion-mnist-reduced-qat/checkpoints \
      --out results/cnn-fashion-mnist-reduced-clip99-qat/uniform-nearest-2
fi
if [[ $what == cnn-fmnist-qat3 || $what == all ]]; then
  # the plain fine-tuning for 3 epochs instead of 1 (the 1-epoch run kept its
  # last validation check), from the same checkpoint
  run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 \
      --qat uniform-nearest:2 --qat-epochs 3 --bits 1,2,3,4,5,6,8 --methods uniform-nearest,histogram-nearest,midrise \
      --checkpoint-dir results/cnn-fashion-mnist-reduced-qat/checkpoints \
      --out results/cnn-fashion-mnist-reduced-qat3/uniform-nearest-2
fi
if [[ $what == cnn-fmnist-clip99-qat3 || $what == all ]]; then
  # the --clip 99 fine-tuning for 3 epochs instead of 1, from the same checkpoint.
  # Run on 2026-12-02 as SWEEP="results/with-l1d.sh 48K 12 <sweep-gpu>": the VM's
  # own L1d trains conv nets to other roundings (README, "Reproducibility across CPUs")
  run --model cnn --dataset fashion-mnist --train-limit 3000 --epochs 2 --eval-limit 500 --clip 99 \
      --qat uniform-nearest:2 --qat-epochs 3 --bits 1,2,3,4,5,6,8 --methods uniform-nearest,histogram-nearest,midrise \
      --checkpoint-dir results/cnn-fashion-mnist-reduced-qat/checkpoints \
      --out results/cnn-fashion-mnist-reduced-clip99-qat3/uniform-nearest-2
fi
if [[ $what == resnet9 || $what == all ]]; then
  # reduced to fit a 2-core CPU: 2,000 training images, 2 epochs, 200 test images
  for bn in fold pool; do
    run --model resnet9 --dataset cifar100 --train-limit 2000 --epochs 2 --eval-limit 200 \
        --methods uniform-nearest,normal-nearest --bits 2,4,6,8,10,12,16 \
        --bn $bn --out results/resnet9-cifar100-reduced-bn-$bn
  done
fi
if [[ $what == resnet9-fmnist || $what == all ]]; then
  # ResNet9 on Fashion-MNIST, reduced as the CNN's runs are (3,000 training images,
  # 500 test images) but 3 epochs: a ResNet9 that trains to a usable accuracy on a
  # 2-core CPU. The three BatchNorm treatments on one checkpoint, per layer, then per
  # output channel as cnn-fmnist-channel does for the CNN
  # fold (the default): the study's seven methods; keep and pool: three of them
  run $r9 --seeds 3 --bits 1-8,10,12,16 --out results/resnet9-fashion-mnist-reduced-bn-fold
  for bn in keep pool; do
    run $r9 --methods uniform-nearest,uniform-stochastic,normal-nearest --seeds 3 --bits 1-8,10,12,16 \
        --bn $bn --out results/resnet9-fashion-mnist-reduced-bn-$bn
  done
  for bn in fold keep pool; do
    run $r9 --methods uniform-nearest,normal-nearest --bits 1-8 --granularity channel \
        --bn $bn --out results/resnet9-fashion-mnist-reduced-channel-bn-$bn
  done
fi
if [[ $what == resnet9-fmnist-layers || $what == all ]]; then
  # which of ResNet9's layers cost the bits (section 4): each layer alone, the rest fp32
  run $r9 --methods uniform-nearest --bits 1-8 --scope each-layer \
      --out results/resnet9-fashion-mnist-reduced-layers
  # and the bits spent where that points: layer 3, or the four main-path convolutions, at 8
  run $r9 --methods uniform-nearest --bits 1-4 \
      --layer-bits blocks.5=8 --layer-bits blocks.0=8,blocks.1=8,blocks.4=8,blocks.5=8 \
      --out results/resnet9-fashion-mnist-reduced-mixed
fi
if [[ $what == resnet9-fmnist-clip || $what == all ]]; then
  # do the CNN's clipping findings (section 3) hold on ResNet9? Its checkpoint, BatchNorm
  # folded, uniform-nearest: the 99th percentile, mse, and mse with the gain restored
  # or the biases corrected
  for v in "99" "mse" "mse --rescale gain" "mse --bias-correct active" "99 --bias-correct active"; do
    name=clip$(echo $v | sed 's/ --rescale /-/; s/ --bias-correct /-bc/')
    run $r9 --methods uniform-nearest --bits 1-8 --clip $v --out results/resnet9-fashion-mnist-reduced-clip/$name
  done
fi
if [[ $what == resnet9-fmnist-qat || $what == all ]]; then
  # ResNet9 fine-tuned for uniform-nearest at 2 bits, 3 epochs (as cnn-fmnist-qat3),
  # BatchNorm folded, from the resnet9-fmnist checkpoint
  run $r9 --qat uniform-nearest:2 --qat-epochs 3 --bits 1,2,3,4,5,6,8 --methods uniform-nearest,histogram-nearest,midrise \
      --out results/resnet9-fashion-mnist-reduced-bn-fold-qat/uniform-nearest-2
fi
if [[ $what == cnn-cifar || $what == all ]]; then
  run --model cnn --dataset cifar100 --train-limit 2000 --epochs 2 --eval-limit 300 \
      --methods uniform-nearest,normal-nearest,histogram-nearest,midrise,uniform-stochastic --seeds 2 \
      --bits 2,4,6,8,10,12,16 --out results/cnn-cifar100-reduced
fi
