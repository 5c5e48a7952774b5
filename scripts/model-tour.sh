#!/usr/bin/env bash
# A tour of moed's model tool, `moed-model`, on the CPU: convert a Hugging Face checkpoint, quantize it and run it on the CPU
# engine; synthesize the tiny demo model with the Qwen3.5 tokenizer, build a Phase Twin file
# (IQ3_A770 experts + Q4_K experts), plan a VRAM budget over it, prune it, and load a phase
# reading only its bytes.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target moed-model

m=build/tools/moed-model
out=build/demo
mkdir -p "$out"
vocab=tests/data/text/vocab/ggml-vocab-qwen35.gguf
template=tests/data/text/templates/qwen3.5-chat-template.jinja
export MOED_LOG_LEVEL=${MOED_LOG_LEVEL:-warning}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "convert the tiny-b Hugging Face checkpoint to GGUF (bf16), then quantize it to Q8_0"
"$m" convert tests/data/qwen35moe-tiny/tiny-b "$out/tiny-b-bf16.gguf" --outtype bf16
"$m" quantize "$out/tiny-b-bf16.gguf" "$out/tiny-b-q8_0.gguf" --type Q8_0 2>/dev/null
"$m" info "$out/tiny-b-q8_0.gguf" | sed -n '/tensors by type/,$p'

step "run it on the CPU engine: 16 greedy tokens, as one stage and split into two pipeline stages"
"$m" generate --model "$out/tiny-b-bf16.gguf" --ids 1,2,3,4,5 --greedy 16
"$m" generate --model "$out/tiny-b-q8_0.gguf" --ids 1,2,3,4,5 --greedy 16 --stages 2

step "synthesize the tiny demo model twice: Q4_K experts and IQ3_A770 experts (same seed)"
"$m" synth "$out/tiny-q4_k.gguf" --preset tiny --experts Q4_K --rest Q8_0 --vocab "$vocab" --chat-template "$template"
"$m" synth "$out/tiny-iq3.gguf" --preset tiny --experts IQ3_A770 --rest Q8_0 --vocab "$vocab" --chat-template "$template"

step "merge them into one Phase Twin file, experts ranked down-projections first"
for l in 0 1 2 3; do for t in down gate up; do echo "blk.$l.ffn_${t}_exps.weight"; done; done > "$out/ranking.txt"
"$m" twin "$out/tiny-iq3.gguf" "$out/tiny-q4_k.gguf" "$out/tiny-twin.gguf" --ranking "$out/ranking.txt"
"$m" info "$out/tiny-twin.gguf" --budget-mb 86 | sed -n '/tensor variants/,/^architecture/p'

step "materialise the 86 MiB budget as a plain GGUF, and load phase 1 of the twin as a worker would"
"$m" prune "$out/tiny-twin.gguf" "$out/tiny-86mb.gguf" --budget-mb 86
"$m" load "$out/tiny-twin.gguf" --variant 1
echo
echo "files are in $out/; 'build/tools/moed-model --help' lists every subcommand"
