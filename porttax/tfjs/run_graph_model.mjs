// Run a TensorFlow.js graph model (model.json + weight shards) in Node.js on the pure-JS CPU backend,
// serving requests from porttax over stdin/stdout.
//
//   node run_graph_model.mjs NODE_MODULES_DIR MODEL_DIR
//
// The model is read from disk with a custom IOHandler (plain `fs`): tfjs-node is not used, because its
// install downloads libtensorflow from Google storage, and porttax measures the JavaScript kernels a
// browser-free TF.js user gets. Every weight path must stay inside MODEL_DIR.
//
// Protocol, both ways: frames of [u32 little-endian header length][JSON header][payload]. The header
// lists tensors as {name, dtype, shape, bytes}; the payload holds their raw little-endian buffers in
// that order. After loading, this process sends one frame {ok, inputs, outputs, backend, tfjs}; then
// for each request {tensors: [...], outputs: [names]} it answers {ok, tensors, ms} or {ok: false,
// error}. stdout carries frames only: console output goes to stderr.

import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

for (const level of ["log", "info", "warn", "debug"]) {
  console[level] = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
}

const [modulesDir, modelDir] = process.argv.slice(2);
if (!modulesDir || !modelDir) {
  process.stderr.write("usage: node run_graph_model.mjs NODE_MODULES_DIR MODEL_DIR\n");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(modulesDir), "package.json"));
const tf = require("@tensorflow/tfjs-core");
require("@tensorflow/tfjs-backend-cpu");
const tfconv = require("@tensorflow/tfjs-converter");

const TYPED = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };

function send(header, buffers = []) {
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length, 0);
  process.stdout.write(Buffer.concat([length, json, ...buffers]));
}

function insideModelDir(root, relative) {
  const full = path.resolve(root, relative);
  if (path.isAbsolute(relative) || !full.startsWith(root + path.sep)) {
    throw new Error(`weight path ${JSON.stringify(relative)} leaves the model folder`);
  }
  return full;
}

function fileHandler(dir) {
  const root = path.resolve(dir);
  return {
    load: async () => {
      const modelJSON = JSON.parse(await readFile(path.join(root, "model.json"), "utf8"));
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = [];
        const shards = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const p of group.paths) {
            const bytes = await readFile(insideModelDir(root, p));
            shards.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
          }
        }
        return [specs, shards];
      });
    },
  };
}

// stdin as a byte stream read in exact-length pieces
const chunks = [];
let buffered = 0;
let wake = null;
let ended = false;
process.stdin.on("data", (chunk) => { chunks.push(chunk); buffered += chunk.length; if (wake) wake(); });
process.stdin.on("end", () => { ended = true; if (wake) wake(); });

async function readExactly(n) {
  while (buffered < n) {
    if (ended) return null;
    await new Promise((resolve) => { wake = resolve; });
    wake = null;
  }
  const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  chunks.length = 0;
  const out = all.subarray(0, n);
  if (all.length > n) chunks.push(all.subarray(n));
  buffered -= n;
  return out;
}

function toTensor(spec, bytes) {
  const Typed = TYPED[spec.dtype];
  if (!Typed) throw new Error(`input ${spec.name}: dtype ${spec.dtype} is not one TF.js takes`);
  const copy = Buffer.from(bytes); // aligned, owned memory for the typed array
  const values = new Typed(copy.buffer, copy.byteOffset, copy.byteLength / Typed.BYTES_PER_ELEMENT);
  return tf.tensor(values, spec.shape, spec.dtype);
}

async function main() {
  await tf.setBackend("cpu");
  let model;
  try {
    model = await tfconv.loadGraphModel(fileHandler(modelDir));
  } catch (err) {
    send({ ok: false, error: `cannot load the graph model: ${err.message}` });
    process.exit(1);
  }
  const describe = (t) => ({ name: t.name, dtype: t.dtype, shape: t.shape ?? null });
  send({ ok: true, inputs: model.inputs.map(describe), outputs: model.outputs.map(describe),
         backend: tf.getBackend(), tfjs: tf.version_core });
  let asyncOnly = false; // a graph with control flow or dynamic shapes runs with executeAsync only
  for (;;) {
    const size = await readExactly(4);
    if (size === null) break;
    const header = JSON.parse((await readExactly(size.readUInt32LE(0))).toString("utf8"));
    const inputs = {};
    try {
      for (const spec of header.tensors) inputs[spec.name] = toTensor(spec, await readExactly(spec.bytes));
      const start = performance.now();
      let outputs;
      if (!asyncOnly) {
        try {
          outputs = model.execute(inputs, header.outputs);
        } catch (err) {
          if (!/executeAsync/.test(err.message)) throw err;
          asyncOnly = true;
        }
      }
      if (asyncOnly) outputs = await model.executeAsync(inputs, header.outputs);
      outputs = Array.isArray(outputs) ? outputs : [outputs];
      const buffers = [];
      const tensors = [];
      for (const [i, t] of outputs.entries()) {
        const data = await t.data();
        const raw = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        tensors.push({ name: header.outputs[i], dtype: t.dtype, shape: t.shape, bytes: raw.length });
        buffers.push(raw);
      }
      const ms = performance.now() - start;
      tf.dispose(outputs);
      send({ ok: true, tensors, ms }, buffers);
    } catch (err) {
      send({ ok: false, error: err.message });
    } finally {
      tf.dispose(Object.values(inputs));
    }
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
