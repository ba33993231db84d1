// AES-256-GCM with Node's own crypto module, for tests/interop.rs.
// Reads lines "seal KEY AAD PLAINTEXT", "open KEY AAD ENVELOPE" or
// "aad NAME VALUE [NAME VALUE ...]" (all hex, "-" for empty) and prints one
// hex line (or "ERR") per input line.
// Envelope layout: nonce(12) || ciphertext || tag(16).
// Aad layout: per field, len(name) u64 BE || name || len(value) u64 BE || value.
// Also "openexp KEY AAD ENVELOPE NOW" (an expiring envelope: expiry(8 BE) ||
// envelope, AAD = Aad("pinseal/expires"=expiry, "aad"=AAD), ERR once NOW >=
// expiry) and "pseudonym ROOT PURPOSE INPUT" (see src/pseudonym.rs).
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

function aadOf(fields) {
  return Buffer.concat(fields.flatMap((x) => [u64(x.length), x]));
}

function aad(parts) {
  return aadOf(parts.map(hex));
}

function openExpiring(key, ad, env, now) {
  if (env.length < 8 + 28) throw new Error('short');
  const expiry = env.subarray(0, 8);
  const pt = open(key, aadOf([Buffer.from('pinseal/expires'), expiry, Buffer.from('aad'), ad]), env.subarray(8));
  if (BigInt(now) >= expiry.readBigUInt64BE()) throw new Error('expired');
  return pt;
}

function pseudonym(root, purpose, value) {
  const info = Buffer.concat([Buffer.from('pinseal/v1/pseudonym/'), purpose]);
  const k = Buffer.from(crypto.hkdfSync('sha256', root, Buffer.alloc(0), info, 32));
  const keyId = crypto.createHash('sha256').update(Buffer.concat([Buffer.from('pinseal/v1/key-id'), k])).digest('hex').slice(0, 8);
  const tag = crypto.createHmac('sha256', k).update(value).digest().subarray(0, 16);
  return 'ps1.' + keyId + '.' + tag.toString('base64url');
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [op, ...args] = line.trim().split(' ');
  try {
    let r;
    if (op === 'aad') {
      r = aad(args);
    } else if (op === 'pseudonym') {
      console.log(pseudonym(...args.map(hex)));
      return;
    } else if (op === 'openexp') {
      r = openExpiring(hex(args[0]), hex(args[1]), hex(args[2]), args[3]);
    } else {
      const [k, a, data] = args.map(hex);
      r = op === 'seal' ? seal(k, a, data) : open(k, a, data);
    }
    console.log(out(r));
  } catch (e) {
    console.log('ERR');
  }
});
