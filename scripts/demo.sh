#!/usr/bin/env bash
# The README's first command: installs what moed needs, builds it, makes the demo model, and runs
# `moed` in the foreground on the CPU, serving the OpenAI API on 127.0.0.1:8080 with two worker
# stages. Ctrl-C (SIGINT) drains and stops it.
#
# The demo model is made by moed's own `moed-model synth`: the Qwen3.5-MoE architecture at a tiny
# size with RANDOM weights, and the real Qwen3.5 tokenizer and chat template shipped in the repo.
# Its answers are therefore gibberish; everything around them (tokenizer, template, reasoning and
# tool-call parsing, streaming, batching, workers, metrics) is the real thing. Serve a real GGUF
# with: build/daemon/moed --config configs/examples/cpu-demo.yaml --model /path/to/model.gguf
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target moed moed-worker moed-model moectl

model=build/demo/tiny-q4_k.gguf
if [ ! -f "$model" ]; then
  mkdir -p build/demo
  build/tools/moed-model synth "$model" --preset tiny --experts Q4_K --rest Q8_0 \
    --vocab tests/data/text/vocab/ggml-vocab-qwen35.gguf \
    --chat-template tests/data/text/templates/qwen3.5-chat-template.jinja
fi

cat <<'HELP'

moed is starting on http://127.0.0.1:8080 (Ctrl-C to stop). In another terminal:
  curl -s localhost:8080/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"moed-demo","messages":[{"role":"user","content":"Hello!"}],"max_tokens":32}'
  curl -s localhost:8080/metrics | grep ^moed_
  build/tools/moectl --socket build/demo/moed-admin.sock status        # the admin API

HELP
exec build/daemon/moed --config configs/examples/cpu-demo.yaml
