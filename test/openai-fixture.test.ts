// The scripted OpenAI API's pure parts (test/fixtures/openai.ts), which the real-Codex end-to-end relies on:
// WebSocket framing both ways, which tool call the script makes, and when it answers what.
import t from 'tap';
import { offeredTools, script, shellCall, wsFrame, wsParse } from './fixtures/openai.js';

/** A client frame: masked, as RFC 6455 requires of clients. */
function clientFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  const len = payload.length;
  const head = len < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | len]) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (len >= 126) {
    head[0] = (fin ? 0x80 : 0) | opcode;
    head[1] = 0x80 | (len < 65536 ? 126 : 127);
    if (len < 65536) head.writeUInt16BE(len, 2);
    else head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, mask, masked]);
}

t.test('websocket frames: every length encoding, masked and not, split anywhere', async (t) => {
  for (const len of [0, 5, 125, 126, 200, 65535, 65536, 70_000]) {
    const payload = Buffer.alloc(len, 'x');
    const server = wsParse(wsFrame(0x1, payload));
    t.equal(server.frames.length, 1, `server frame of ${len} bytes`);
    t.ok(server.frames[0]!.payload.equals(payload));
    const client = wsParse(clientFrame(0x1, payload));
    t.ok(client.frames[0]!.payload.equals(payload), `masked client frame of ${len} bytes`);
  }
  const two = Buffer.concat([clientFrame(0x1, Buffer.from('{"a":'), false), clientFrame(0x0, Buffer.from('1}'))]);
  for (const cut of [1, 2, 5, 7, 12, two.length - 1]) {
    const first = wsParse(two.subarray(0, cut));
    const second = wsParse(Buffer.concat([first.rest, two.subarray(cut)]));
    const frames = [...first.frames, ...second.frames];
    t.same(
      frames.map((f) => [f.fin, f.opcode]),
      [
        [false, 1],
        [true, 0],
      ],
      `a fragmented message cut at ${cut}`,
    );
    t.equal(Buffer.concat(frames.map((f) => f.payload)).toString(), '{"a":1}');
    t.equal(second.rest.length, 0);
  }
});

t.test('the shell call follows the tools Codex offers', async (t) => {
  const codeMode = {
    input: [
      {
        type: 'additional_tools',
        tools: [
          {
            type: 'namespace',
            name: 'functions',
            tools: [
              { type: 'custom', name: 'exec' },
              { type: 'function', name: 'wait' },
            ],
          },
        ],
      },
    ],
  };
  t.same(offeredTools(codeMode), [
    { name: 'exec', type: 'custom', namespace: 'functions' },
    { name: 'wait', type: 'function', namespace: 'functions' },
  ]);
  const exec = shellCall(offeredTools(codeMode), `echo "a'b"`, 'c1');
  t.match(exec, { type: 'custom_tool_call', name: 'exec', call_id: 'c1' });
  t.equal(
    exec.input,
    `const r = await tools.exec_command({ cmd: ${JSON.stringify(`echo "a'b"`)} });\ntext(JSON.stringify(r));\n`,
    'JavaScript calling exec_command, the command JSON-quoted',
  );
  const fn = shellCall(offeredTools({ tools: [{ type: 'function', name: 'exec_command' }] }), 'ls', 'c2');
  t.match(fn, { type: 'function_call', name: 'exec_command', arguments: '{"cmd":"ls"}' });
  t.match(shellCall([], 'ls', 'c3'), { type: 'function_call', name: 'shell', arguments: '{"command":["bash","-lc","ls"]}' });
});

t.test('the script: warm-up, the call, then the final message', async (t) => {
  const cfg = { command: 'true', finalMessage: 'done' };
  const warm = script({ type: 'response.create', generate: false, input: [] }, 1, cfg);
  t.equal(warm.kind, 'warmup');
  t.same(
    warm.events.map((e) => e.type),
    ['response.created', 'response.completed'],
  );
  const call = script({ input: [{ type: 'message', role: 'user' }] }, 2, cfg);
  t.equal(call.kind, 'call');
  t.equal(call.events.at(-1)!.type, 'response.completed');
  t.match(call.events.at(-1), { response: { id: 'resp_2', status: 'completed', usage: { total_tokens: Number } } });
  for (const type of ['custom_tool_call_output', 'function_call_output']) {
    const fin = script({ input: [{ type, call_id: 'call_2', output: 'ok' }] }, 3, cfg);
    t.equal(fin.kind, 'final', `after a ${type}`);
    t.match(
      fin.events.find((e) => e.type === 'response.output_item.done'),
      { item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'done' }] } },
    );
  }
});
