// Starts the real `moed` daemon with two CPU worker stages (moed-worker processes) on a tiny model
// that `moed-model synth` makes for the test: random weights with the real Qwen3.5 tokenizer and
// chat template. Paths come from the environment that ctest sets (MOED_BINARY, MOED_MODEL_TOOL,
// MOED_TEST_DATA_DIR), else from the default build/.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const moedBin = process.env.MOED_BINARY ?? `${repo}/build/daemon/moed`;
const modelTool = process.env.MOED_MODEL_TOOL ?? `${repo}/build/tools/moed-model`;
const dataDir = process.env.MOED_TEST_DATA_DIR ?? `${repo}/tests/data`;

export const API_KEY = 'sk-moed-e2e';
export const MODEL = 'moed-tiny';

// The daemon's YAML configuration: port 0 (moed logs the port it bound), an admin socket in the
// test's directory, 429 with Retry-After: 5 when the queue is full.
function configYaml({ slots, queue }) {
  return `server:
  listen: 127.0.0.1:0
  api_keys: [${API_KEY}]
admin:
  socket: admin.sock
model:
  path: tiny.gguf
  name: ${MODEL}
devices:
  backends: [cpu]
workers:
  cpu_stages: 2
  threads: 1
scheduler:
  max_running: ${slots}
  queue_capacity: ${queue}
  queue_full_status: 429
  retry_after: 5s
  drain_timeout: 30s
cache:
  kv_blocks: 256
`;
}

export async function startServer({ slots = 4, queue = 256 } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'moed-e2e-'));
  const synth = spawnSync(modelTool, [
    'synth', path.join(dir, 'tiny.gguf'), '--preset', 'tiny', '--experts', 'Q4_K', '--rest', 'Q8_0',
    '--vocab', `${dataDir}/text/vocab/ggml-vocab-qwen35.gguf`,
    '--chat-template', `${dataDir}/text/templates/qwen3.5-chat-template.jinja`,
  ], { encoding: 'utf8' });
  if (synth.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`moed-model synth failed: ${synth.stderr}`);
  }
  const config = path.join(dir, 'moed.yaml');
  writeFileSync(config, configYaml({ slots, queue }));
  const proc = spawn(moedBin, ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  // Ready once the log says both where the gateway listens and that the workers serve the model.
  const baseURL = await new Promise((resolve, reject) => {
    proc.stderr.on('data', (d) => {
      stderr += d;
      const listening = stderr.match(/gateway listening on ([0-9.]+:[0-9]+)/);
      if (listening && stderr.includes(`serving '${MODEL}'`)) resolve(`http://${listening[1]}`);
    });
    exited.then(({ code }) => reject(new Error(`moed exited (${code}): ${stderr}`)));
  });
  return {
    baseURL,
    apiBase: `${baseURL}/v1`,
    proc,
    exited,
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const result = await exited;
      rmSync(dir, { recursive: true, force: true });
      return result;
    },
  };
}
