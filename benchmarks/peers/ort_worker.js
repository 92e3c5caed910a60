// ONNX Runtime peer (npm onnxruntime-node): a long-lived worker that times forward passes.
//
// Started by harness.py as `node ort_worker.js MODELS_DIR THREADS`. Reads one JSON request per
// line on stdin and answers one JSON line on stdout:
//   {"cmd": "info"} -> versions and session options
//   {"cmd": "run", "model": "bert-base", "policy": "all", "batch": 1, "seq": 16,
//    "warmup": 2, "iters": 10} -> {"times_ms": [...]}
// The first request for a model creates its session (intraOpNumThreads = THREADS,
// interOpNumThreads = 1, graphOptimizationLevel 'all', sequential execution), checks its output
// against the PyTorch reference that export_onnx.py saved, and warms it up.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const ort = require('onnxruntime-node');

const modelsDir = process.argv[2];
const threads = Number(process.argv[3]);
const sessionOptions = {
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  executionMode: 'sequential',
  executionProviders: ['cpu'],
};
const manifest = JSON.parse(fs.readFileSync(path.join(modelsDir, 'manifest.json'), 'utf8'));
const sessions = new Map();

function readF32(file) {
  const buf = fs.readFileSync(file);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

async function session(model, policy) {
  const key = `${model}-${policy}`;
  if (sessions.has(key)) return sessions.get(key);
  const rssBefore = process.memoryUsage().rss;
  const t0 = process.hrtime.bigint();
  const s = await ort.InferenceSession.create(path.join(modelsDir, `${key}.onnx`), sessionOptions);
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  // Sanity check: same output as PyTorch on the saved reference input.
  const [b, n] = manifest.check_shape;
  const xin = readF32(path.join(modelsDir, `${key}.in.bin`));
  const ref = readF32(path.join(modelsDir, `${key}.out.bin`));
  const d = xin.length / (b * n);
  const out = (await s.run({ x: new ort.Tensor('float32', xin, [b, n, d]) })).y.data;
  let maxDiff = 0;
  for (let i = 0; i < ref.length; i++) maxDiff = Math.max(maxDiff, Math.abs(out[i] - ref[i]));
  if (!(maxDiff < 1e-3)) throw new Error(`${key}: ONNX Runtime differs from PyTorch by ${maxDiff}`);
  const entry = {
    s, d, loadMs, maxDiff,
    rssMiB: (process.memoryUsage().rss - rssBefore) / 2 ** 20,
  };
  sessions.set(key, entry);
  return entry;
}

async function handle(req) {
  if (req.cmd === 'info') {
    return { onnxruntime: ort.env.versions, node: process.versions.node, threads, sessionOptions };
  }
  if (req.cmd === 'run') {
    const fresh = !sessions.has(`${req.model}-${req.policy}`);
    const e = await session(req.model, req.policy);
    const x = new Float32Array(req.batch * req.seq * e.d);
    for (let i = 0; i < x.length; i++) x[i] = Math.random() * 2 - 1;
    const feeds = { x: new ort.Tensor('float32', x, [req.batch, req.seq, e.d]) };
    // A new session's first runs are slow (allocation, kernel selection): warm it up longer.
    const warmup = req.warmup + (fresh ? 3 : 0);
    for (let i = 0; i < warmup; i++) await e.s.run(feeds);
    const times = [];
    let y;
    for (let i = 0; i < req.iters; i++) {
      const t0 = process.hrtime.bigint();
      y = await e.s.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    if (y.y.dims.join() !== [req.batch, req.seq, e.d].join()) throw new Error('bad output shape');
    const reply = { times_ms: times };
    if (fresh) reply.session = { load_ms: e.loadMs, max_abs_diff_vs_torch: e.maxDiff, rss_mib: e.rssMiB };
    return reply;
  }
  return { error: `unknown command ${req.cmd}` };
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    let reply;
    try {
      reply = await handle(JSON.parse(line));
    } catch (err) {
      reply = { error: String(err && err.stack ? err.stack : err) };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  }
}

main();
