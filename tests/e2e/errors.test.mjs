// Error cases through the official openai client and raw fetch: each gets the right status and
// an OpenAI error body, and the server keeps serving. Also: a client that disconnects
// mid-stream, a full queue (429 + Retry-After), and SIGTERM draining (503 for new requests,
// streams in flight complete, exit code 0).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { API_KEY, MODEL, startServer } from './server.mjs';

let server;
let client;
const messages = [{ role: 'user', content: 'Hello' }];

before(async () => {
  server = await startServer({ slots: 1, queue: 1 });
  client = new OpenAI({ baseURL: server.apiBase, apiKey: API_KEY, maxRetries: 0 });
});

after(async () => {
  await server.stop();
});

async function expectApiError(promise, status) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIError, `not an APIError: ${e}`);
    assert.equal(e.status, status, e.message);
    assert.equal(typeof e.error?.message, 'string');
    return e;
  }
  assert.fail(`expected HTTP ${status}`);
}

async function raw(pathname, body, headers = {}) {
  const r = await fetch(`${server.baseURL}${pathname}`, {
    method: 'POST', body, headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json', ...headers },
  });
  return { status: r.status, headers: r.headers, json: await r.json() };
}

async function healthy() {
  const r = await fetch(`${server.baseURL}/health`);
  assert.equal(r.status, 200);
  const ok = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 1 });
  assert.equal(ok.choices.length, 1);
}

test('API keys', async () => {
  const wrong = new OpenAI({ baseURL: server.apiBase, apiKey: 'sk-wrong', maxRetries: 0 });
  const e = await expectApiError(wrong.chat.completions.create({ model: MODEL, messages }), 401);
  assert.ok(e instanceof OpenAI.AuthenticationError);
  assert.equal(e.code, 'invalid_api_key');
  const r = await fetch(`${server.baseURL}/v1/models`);
  assert.equal(r.status, 401);
  assert.equal((await fetch(`${server.baseURL}/health`)).status, 200);
});

test('bad requests get 400/404 with OpenAI error bodies', async () => {
  const unknown = await expectApiError(client.chat.completions.create({ model: 'gpt-4o', messages }), 404);
  assert.equal(unknown.code, 'model_not_found');
  let e = await expectApiError(client.chat.completions.create({ model: MODEL, messages, max_tokens: -1 }), 400);
  assert.equal(e.param, 'max_tokens');
  e = await expectApiError(client.chat.completions.create({ model: MODEL, messages, max_tokens: 10_000_000 }), 400);
  assert.equal(e.param, 'max_tokens');
  e = await expectApiError(client.chat.completions.create({ model: MODEL, messages, temperature: 'warm' }), 400);
  assert.equal(e.param, 'temperature');
  assert.equal(e.code, 'invalid_type');
  e = await expectApiError(client.chat.completions.create({ model: MODEL, messages: 'hello' }), 400);
  assert.equal(e.param, 'messages');
  const nCtx = (await client.models.retrieve(MODEL)).meta.n_ctx;
  const long = 'word '.repeat(nCtx + 100);
  e = await expectApiError(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: long }] }), 400);
  assert.equal(e.code, 'context_length_exceeded');

  const invalidJson = await raw('/v1/chat/completions', '{"model": ');
  assert.equal(invalidJson.status, 400);
  assert.equal(invalidJson.json.error.code, 'invalid_json');
  const badUtf8 = await raw('/v1/chat/completions', Buffer.from([
    ...Buffer.from('{"messages":[{"role":"user","content":"'), 0xc3, 0x28, ...Buffer.from('"}]}'),
  ]));
  assert.equal(badUtf8.status, 400);
  assert.equal(badUtf8.json.error.code, 'invalid_utf8');
  const deep = await raw('/v1/chat/completions', `{"a":${'['.repeat(100000)}${']'.repeat(100000)}}`);
  assert.equal(deep.status, 400);
  const huge = await raw('/v1/chat/completions', `{"pad":"${'x'.repeat(10 * 1024 * 1024)}"}`);
  assert.equal(huge.status, 413);
  assert.equal(huge.json.error.code, 'request_too_large');
  await healthy();
});

async function metric(name) {
  const page = await (await fetch(`${server.baseURL}/metrics`, { headers: { Authorization: `Bearer ${API_KEY}` } })).text();
  const line = page.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} not in /metrics`);
  return Number(line.split(' ')[1]);
}

test('a client that disconnects mid-stream frees its slot', async () => {
  const generatedBefore = await metric('moed_generation_tokens_total');
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    { model: MODEL, messages, max_tokens: 400, stream: true }, { signal: controller.signal });
  let seen = 0;
  try {
    for await (const chunk of stream) {  // eslint-disable-line no-unused-vars
      if (++seen === 2) controller.abort();
    }
  } catch (e) {
    assert.equal(e.name, 'AbortError');  // the client ends the iteration or throws, by version
  }
  assert.equal(seen, 2);
  // With one slot, the next request can only run once the aborted one was cancelled.
  const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 2 });
  assert.equal(r.usage.completion_tokens, 2);
  // Had the aborted request run on, it would have generated its 400 tokens first.
  const generated = (await metric('moed_generation_tokens_total')) - generatedBefore;
  assert.ok(generated < 400, `${generated} tokens generated: the aborted request was not cancelled`);
});

test('a full queue answers 429 with Retry-After', async () => {
  const requests = Array.from({ length: 6 }, () => client.chat.completions
    .create({ model: MODEL, messages, max_tokens: 64 })
    .then(() => null, (e) => e));
  const errors = (await Promise.all(requests)).filter(Boolean);
  assert.ok(errors.length >= 1, 'one slot and a queue of one cannot take six requests at once');
  for (const e of errors) {
    assert.ok(e instanceof OpenAI.RateLimitError, String(e));
    assert.equal(e.headers.get('retry-after'), '5');
  }
});

test('SIGTERM drains: streams finish, new requests get 503, exit 0', async () => {
  const stream = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 48, stream: true });
  const iterator = stream[Symbol.asyncIterator]();
  await iterator.next();  // the stream is running
  server.proc.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 50));
  const e = await expectApiError(client.chat.completions.create({ model: MODEL, messages, max_tokens: 1 }), 503);
  assert.ok(e.headers.get('retry-after'));
  let finish = null;
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
    finish = next.value.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, 'length');
  const { code } = await server.exited;
  assert.equal(code, 0);
});
