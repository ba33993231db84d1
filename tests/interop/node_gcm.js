// AES-256-GCM with Node's own crypto module, for tests/interop.rs.
// Reads lines "seal KEY AAD PLAINTEXT", "open KEY AAD ENVELOPE" or
// "aad NAME VALUE [NAME VALUE ...]" (all hex, "-" for empty) and prints one
// hex line (or "ERR") per input line.
// Envelope layout: nonce(12) || ciphertext || tag(16).
// Aad layout: per field, len(name) u64 BE || name || len(value) u64 BE || value.
'use strict';
const crypto = require('crypto');
const readline = require('readline');

const hex = (s) => Buffer.from(s === '-' ? '' : s, 'hex');
const out = (b) => (b.length ? b.toString('hex') : '-');

function seal(key, aad, pt) {
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(pt), c.final()]);
  return Buffer.concat([nonce, ct, c.getAuthTag()]);
}

function open(key, aad, env) {
  const nonce = env.subarray(0, 12);
  const tag = env.subarray(env.length - 16);
  const ct = env.subarray(12, env.length - 16);
  const d = crypto.createDecipheriv('aes-256-gcm', key, nonce);
  d.setAuthTag(tag);
  d.setAAD(aad);
  return Buffer.concat([d.update(ct), d.final()]);
}

function u64(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

function aad(parts) {
  return Buffer.concat(parts.map(hex).flatMap((x) => [u64(x.length), x]));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [op, ...args] = line.trim().split(' ');
  try {
    let r;
    if (op === 'aad') {
      r = aad(args);
    } else {
      const [k, a, data] = args.map(hex);
      r = op === 'seal' ? seal(k, a, data) : open(k, a, data);
    }
    console.log(out(r));
  } catch (e) {
    console.log('ERR');
  }
});
