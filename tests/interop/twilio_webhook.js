// The official `twilio` helper library's webhook functions, for
// tests/webhook.rs. Every field is hex of UTF-8; one answer per line:
//   sign TOKEN URL PARAMS_JSON [ALG]  -> getExpectedTwilioSignature(...)
//   check TOKEN SIGNATURE URL PARAMS_JSON [SETTINGS]
//       -> validateRequest(..., getSignatureAlgorithm(SETTINGS))
// ALG is HMAC_SHA1 or HMAC_SHA256; SETTINGS the
// X-Twilio-Webhooks-Signature-Settings header (TOKEN is then the shared
// key's secret).
//   checkbody TOKEN SIGNATURE URL BODY    -> validateRequestWithBody(...)
// PARAMS_JSON maps each name to a string, or to an array of strings for a
// name sent several times.
'use strict';
const readline = require('readline');
const twilio = require('twilio');
const webhooks = require('twilio/lib/webhooks/webhooks');

const text = (h) => Buffer.from(h === '-' ? '' : h, 'hex').toString('utf8');

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [op, ...args] = line.trim().split(' ');
  try {
    const a = args.map(text);
    if (op === 'sign') {
      console.log(webhooks.getExpectedTwilioSignature(a[0], a[1], JSON.parse(a[2]), a[3] || undefined));
    } else if (op === 'check') {
      const algorithm = webhooks.getSignatureAlgorithm(a[4] || undefined);
      console.log(String(twilio.validateRequest(a[0], a[1], a[2], JSON.parse(a[3]), algorithm)));
    } else if (op === 'checkbody') {
      console.log(String(twilio.validateRequestWithBody(a[0], a[1], a[2], a[3])));
    } else {
      console.log('ERR');
    }
  } catch (e) {
    console.log('ERR ' + e.name);
  }
});
