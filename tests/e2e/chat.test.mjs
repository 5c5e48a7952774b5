// The official openai client against the gateway over the real scheduler: chat (non-stream,
// stream with usage, tools, n, seeds, stop strings), completions, models, and 64 concurrent
// streams that each get the token count they asked for.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { API_KEY, MODEL, startServer } from './server.mjs';

let server;
let client;
const messages = [{ role: 'user', content: 'Say hello.' }];

before(async () => {
  server = await startServer();
  client = new OpenAI({ baseURL: server.apiBase, apiKey: API_KEY, maxRetries: 0 });
});

after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0, server.stderr());
});

test('models lists the served model', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
  const model = await client.models.retrieve(MODEL);
  assert.equal(model.object, 'model');
});

test('chat non-stream', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, seed: 1 });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices.length, 1);
  const message = r.choices[0].message;
  assert.equal(message.role, 'assistant');
  assert.equal(typeof message.content, 'string');
  // The template opens <think>: random weights never close it, so the text is reasoning.
  assert.equal(typeof message.reasoning_content, 'string');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 8);
});

test('the same seed gives the same text; n gives independent choices', async () => {
  const ask = (seed, n = 1) => client.chat.completions.create({
    model: MODEL, messages, max_tokens: 12, seed, n, temperature: 1.0, top_p: 0.95, top_k: 50,
  });
  const a = await ask(1234);
  const b = await ask(1234);
  assert.equal(a.choices[0].message.reasoning_content, b.choices[0].message.reasoning_content);
  const many = await ask(99, 3);
  assert.equal(many.choices.length, 3);
  assert.deepEqual(many.choices.map((c) => c.index), [0, 1, 2]);
  assert.equal(many.usage.completion_tokens, 36);
});

test('stop string ends generation before the match', async () => {
  const base = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 24, seed: 7 });
  const text = base.choices[0].message.reasoning_content;
  assert.ok(text.length >= 12, `generated text too short: ${JSON.stringify(text)}`);
  const stop = text.slice(8, 12);
  const cut = text.indexOf(stop);
  const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 24, seed: 7, stop: [stop] });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].message.reasoning_content, text.slice(0, cut).trim());
  assert.ok(r.usage.completion_tokens < 24);
});

test('chat stream with usage', async () => {
  const stream = await client.chat.completions.create({
    model: MODEL, messages, max_tokens: 6, stream: true, stream_options: { include_usage: true },
    logprobs: true, top_logprobs: 2,
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length >= 3);
  for (const c of chunks) assert.equal(c.object, 'chat.completion.chunk');
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const finishes = chunks.flatMap((c) => c.choices).map((c) => c.finish_reason).filter(Boolean);
  assert.deepEqual(finishes, ['length']);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, 6);
  const logprobs = chunks.flatMap((c) => c.choices).flatMap((c) => c.logprobs?.content ?? []);
  assert.equal(logprobs.length, 6);
  for (const lp of logprobs) assert.equal(lp.top_logprobs.length, 2);
});

test('tools reach the template and the response parses', async () => {
  const tools = [{
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather for a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  }];
  const plain = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 4 });
  const r = await client.chat.completions.create({
    model: MODEL, messages, tools, tool_choice: 'auto', max_tokens: 4,
  });
  assert.ok(r.usage.prompt_tokens > plain.usage.prompt_tokens + 50, 'the tool schema is in the prompt');
  assert.ok(['length', 'stop', 'tool_calls'].includes(r.choices[0].finish_reason));
  const calls = r.choices[0].message.tool_calls ?? [];
  for (const call of calls) JSON.parse(call.function.arguments);
  // A conversation carrying a tool call and its result renders too.
  const followUp = await client.chat.completions.create({
    model: MODEL, max_tokens: 2, tools,
    messages: [
      ...messages,
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp_c":21}' },
    ],
  });
  assert.equal(followUp.choices.length, 1);
  const none = await client.chat.completions.create({ model: MODEL, messages, tools, tool_choice: 'none', max_tokens: 2 });
  assert.equal(none.usage.prompt_tokens, plain.usage.prompt_tokens);
});

test('completions, stream and not', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 5, echo: true });
  assert.equal(r.object, 'text_completion');
  assert.ok(r.choices[0].text.startsWith('Once upon a time'));
  assert.equal(r.usage.completion_tokens, 5);
  const stream = await client.completions.create({ model: MODEL, prompt: 'Hi', max_tokens: 3, stream: true });
  let text = '';
  let finish = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.text ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, 'length');
  assert.equal(typeof text, 'string');
});

test('64 concurrent streams each get the tokens they asked for', async () => {
  const runs = Array.from({ length: 64 }, async (_, i) => {
    const n = 2 + (i % 5);
    const stream = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: `Request ${i}` }], max_tokens: n, stream: true,
      stream_options: { include_usage: true },
    });
    let usage = null;
    for await (const chunk of stream) usage = chunk.usage ?? usage;
    assert.equal(usage.completion_tokens, n, `stream ${i}`);
  });
  await Promise.all(runs);
});
