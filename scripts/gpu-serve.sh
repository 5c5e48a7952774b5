#!/usr/bin/env bash
# On the GPU machine, from an unpacked bundle (scripts/gpu-bundle.sh --serve): synthesises the
# 35B-A3B benchmark file (Q4_K experts, Q8_0 rest, the qwen35 vocabulary), serves it with moed on
# the CUDA backend, and sweeps it over HTTP with moed-bench (1, 16, 64 concurrent clients). Writes
# the logs and the sweep table under $OUT. GPUS (default "cuda:0") lists the devices: one stage per
# GPU, e.g. GPUS=cuda:0,cuda:1 for a two-stage pipeline over NCCL; TAG names the output files;
# TEMPERATURE (default 0, greedy) is the requests' temperature.
set -u
export LD_LIBRARY_PATH=$PWD/bundle
GPUS=${GPUS:-cuda:0}
TAG=${TAG:-$(echo "$GPUS" | tr -cd '0-9')}
M=/tmp/35b-vocab.gguf
[ -f $M ] || bundle/moed-model synth $M --preset 35b-a3b --experts q4_k --rest q8_0 \
  --vocab tests/data/text/vocab/ggml-vocab-qwen35.gguf --chat-template tests/data/text/templates/qwen3.5-chat-template.jinja > /dev/null
cat > /tmp/gpu.yaml <<YAML
server:
  listen: 127.0.0.1:8080
admin:
  socket: /tmp/moed-admin.sock
model:
  path: $M
  name: moed-35b
devices:
  backends: [cuda]
  ids: [$GPUS]
scheduler:
  max_running: 64
  max_batch_tokens: 8192
  prefill_chunk: 2048
cache:
  kv_block_size: 16
  kv_blocks: 16384
logging:
  level: info
YAML
bundle/moed --config /tmp/gpu.yaml > $OUT/moed-$TAG.log 2>&1 &
pid=$!
for i in $(seq 1 180); do grep -q "serving 'moed-35b'" $OUT/moed-$TAG.log && break; sleep 1; done
grep -E "plan|serving|CUDA stage|NCCL|error|Error" $OUT/moed-$TAG.log | head -20
bundle/moectl --socket /tmp/moed-admin.sock status | head -20
curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
  -d '{"model":"moed-35b","messages":[{"role":"user","content":"Hello!"}],"max_tokens":16}' | head -c 600; echo
for c in ${SWEEP:-1:8 16:32 64:128}; do  # concurrency:requests
  timeout 200 bundle/moed-bench http http://127.0.0.1:8080 --concurrency ${c%:*} --requests ${c#*:} \
    --prompt-tokens 128 --max-tokens 128 --temperature ${TEMPERATURE:-0} 2>&1 | tee -a $OUT/http_sweep-$TAG.txt
done
curl -s http://127.0.0.1:8080/metrics | grep -E "^moed_worker_(idle_ratio|step_duration_seconds_(sum|count))" | tee -a $OUT/http_sweep-$TAG.txt
kill -TERM $pid; wait $pid; echo "moed exit $?"
