// The pattern IVR tutorials use in Node.js: randomBytes for the nonce,
// createCipheriv/setAAD/update/final/getAuthTag, hex output. Prints one
// line per size: "node <size> <median ns per seal>". Run by benches/compare.sh.
'use strict';
const crypto = require('crypto');

const key = Buffer.alloc(32, 0x42);
const aad = Buffer.from('call=CA-1001;field=pin');

function sealHex(pt) {
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(pt), c.final()]);
  return Buffer.concat([nonce, ct, c.getAuthTag()]).toString('hex');
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

for (const size of process.argv.slice(2).map(Number)) {
  const pt = Buffer.alloc(size, 0x5a);
  // Iterations per sample chosen so a sample takes about 20 ms.
  const iters = Math.max(3, Math.floor(20e6 / (2000 + size * 3)));
  for (let i = 0; i < iters; i++) sealHex(pt); // warm up
  const samples = [];
  for (let s = 0; s < 30; s++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) sealHex(pt);
    samples.push(Number(process.hrtime.bigint() - t0) / iters);
  }
  console.log(`node ${size} ${median(samples).toFixed(1)}`);
}
