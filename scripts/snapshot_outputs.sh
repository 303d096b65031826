#!/bin/bash
# Snapshot the outputs of a fixed set of commands, to check that a refactor changes nothing.
# Usage: scripts/snapshot_outputs.sh TREE OUTDIR   (OUTDIR's last part in lower-case letters)
# Runs guideopt from TREE (PYTHONPATH) and writes NAME.out / NAME.err / NAME.rc per command,
# with solve times blanked, plus the files two --emit runs write (/tmp/snap/emit_*, emit2_*).
# Compare two trees with: diff -r OUTDIR_A OUTDIR_B (and the emit folders).
TREE=$1; OUT=$2; mkdir -p $OUT; cd $TREE
export PYTHONPATH=$TREE
G="python -c \"import sys; sys.argv[0]='guideopt'; from guideopt.cli import main; main()\""
run() { name=$1; shift; eval "$@" > $OUT/$name.out 2> $OUT/$name.err; echo $? > $OUT/$name.rc; sed -i -E 's/"solve_time_s": [0-9.e-]+/"solve_time_s": X/; s/solve time: [0-9.]+ s/solve time: X s/' $OUT/$name.out; }
for f in examples/*.yaml examples/*.json examples/*.toml; do run solve_$(basename $f) $G solve $f --json; done
run plan_readme $G plan --model meta-llama/Llama-2-7b-hf --budget 12 --input-len 512 --output-len 256 --json
run plan_readme_txt $G plan --model meta-llama/Llama-2-7b-hf --budget 12 --input-len 512 --output-len 256
run plan_70b $G plan --model meta-llama/Llama-3.1-70B --budget 40 --input-len 1024 --output-len 256 --ttft-ms 500 --tpot-ms 50 --gpu h100-sxm --gpu a100-sxm4-80gb --gpu l40s --json
run plan_het $G plan --model meta-llama/Llama-2-7b-hf --budget 12 --input-len 512 --output-len 256 --heterogeneous --top 4 --json
run plan_inf $G plan --model meta-llama/Llama-3.1-405B --budget 5 --input-len 512 --output-len 256 --ttft-ms 200 --json
run plan_inf2 $G plan --model meta-llama/Llama-2-7b-hf --budget 12 --input-len 512 --output-len 256 --gpu mi300x --framework trtllm --json
run plan_anyfw $G plan --model meta-llama/Llama-2-13b-hf --budget 30 --input-len 2048 --output-len 128 --framework any --dtype fp16 --dtype fp8 --objective cost,throughput --min-throughput 2000 --json
run plan_lat $G plan --model mistralai/Mixtral-8x7B-v0.1 --budget 50 --input-len 512 --output-len 512 --objective latency --max-gpus 8 --json
run predict1 $G predict --model meta-llama/Llama-2-7b-hf --gpu a100-sxm4-80gb --batch 16 --input-len 512 --output-len 128 --json
run predict2 $G predict --model meta-llama/Llama-3.1-70B --gpu h100-sxm --num-gpus 8 --tp 4 --concurrency 32 --input-len 1024 --output-len 256 --json
run capacity1 $G capacity --model meta-llama/Llama-2-7b-hf --gpu a100-sxm4-80gb --input-len 512,1024,2048 --output-len 256 --rate 4 --json
run capacity2 $G capacity --model meta-llama/Llama-3.1-70B --gpu h100-sxm --tp 4 --input-len 1024 --output-len 256 --rate 10 --ttft-ms 500 --tpot-ms 50
run pareto1 $G pareto --model meta-llama/Llama-2-7b-hf --budget 12 --input-len 512 --output-len 256 --json
run catalog_gpus $G catalog gpus --json
run catalog_fw $G catalog frameworks
mkdir -p /tmp/snap; rm -rf /tmp/snap/emit_$(basename $OUT); run launch1 $G launch --model meta-llama/Llama-2-70b-hf --budget 40 --input-len 512 --output-len 256 --emit /tmp/snap/emit_$(basename $OUT)
rm -rf /tmp/snap/emit2_$(basename $OUT); run launch2 $G solve examples/mixed-48gb-fleet.yaml --emit /tmp/snap/emit2_$(basename $OUT)
sed -i "s#/tmp/snap/emit2*_[a-z]*##g" $OUT/launch*.out $OUT/launch*.err
