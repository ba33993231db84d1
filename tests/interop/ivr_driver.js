// Drives examples/ivr_server.rs as the telephony provider would, with
// requests signed by the official `twilio` npm package: a verified call,
// a wrong PIN, a forged signature, replayed deliveries, an envelope moved
// to another call, an envelope replayed into the back end, and an
// envelope past its deadline. BASE is the server's URL, TOKEN its Auth
// Token, TTL_SECS its envelope lifetime. Prints one line per check; exits
// non-zero on the first failure.
'use strict';
const crypto = require('crypto');
const { getExpectedTwilioSignature } = require('twilio/lib/webhooks/webhooks');

const base = process.env.BASE;
const token = process.env.TOKEN;
const ttl = Number(process.env.TTL_SECS);

// Call ids without the digits the tests type: [a-f0] only.
const callSid = () =>
  'CA' + [...crypto.randomBytes(32)].map((b) => 'abcdef0'[b % 7]).join('');

async function post(path, params, { signWith = token, signature } = {}) {
  const url = base + path;
  const sig = signature ?? getExpectedTwilioSignature(signWith, url, params);
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': sig,
    },
    body: new URLSearchParams(params).toString(),
  });
  return { status: res.status, text: await res.text() };
}

function check(what, ok, got) {
  if (!ok) {
    console.error(`FAIL: ${what}: ${JSON.stringify(got)}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const action = (twiml) => (/action="([^"]+)"/.exec(twiml) || [])[1];
const params = (call, digits) => ({
  CallSid: call,
  From: '+15550100199',
  To: '+15550100100',
  ...(digits === undefined ? {} : { Digits: digits }),
});
const verified = (r) => r.status === 200 && r.text.includes('You are verified');
const refused = (r) => r.status === 200 && r.text.includes('could not verify');

// One call up to the last-four gather: returns that gather's action URL.
async function upToLast4(call, pin) {
  const voice = await post('/voice', params(call));
  check(`${call.slice(0, 8)} /voice gathers the PIN`, voice.status === 200 && action(voice.text) === '/gather/pin', voice);
  const r = await post('/gather/pin', params(call, pin));
  const next = action(r.text);
  check(`${call.slice(0, 8)} PIN sealed into the next action URL`, r.status === 200 && /^\/gather\/last4\?pin=[0-9a-f]+$/.test(next || ''), r);
  // An expiring envelope of four bytes: 36 + 4 bytes, 80 hex digits.
  check('the action URL carries an envelope, not the PIN', /^\/gather\/last4\?pin=[0-9a-f]{80}$/.test(next), next);
  return next;
}

(async () => {
  // A verified call.
  const a = callSid();
  const aLast4 = await upToLast4(a, '1234');
  const done = await post(aLast4, params(a, '4321'));
  check('1234 / 4321 verified', verified(done), done);

  // Replays of signed deliveries: refused before any handler.
  let r = await post('/gather/pin', params(a, '1234'));
  check('replayed PIN delivery refused (403, Replayed)', r.status === 403 && r.text.includes('already accepted'), r);
  r = await post(aLast4, params(a, '4321'));
  check('replayed last-four delivery refused', r.status === 403, r);
  r = await post('/gather/pin', params(a, '5678'));
  check('another PIN for the same call and gather refused (one delivery per call and URL)', r.status === 403 && r.text.includes('already accepted'), r);

  // A forged signature (another account's token) and a tampered body.
  const b = callSid();
  r = await post('/gather/pin', params(b, '1234'), { signWith: 'not-the-token' });
  check('forged signature refused (403, 20403)', r.status === 403 && r.text.includes('"code":20403'), r);
  const sig = getExpectedTwilioSignature(token, base + '/gather/pin', params(b, '1234'));
  const tampered = await fetch(base + '/gather/pin', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': sig },
    body: new URLSearchParams(params(b, '9999')).toString(),
  });
  check('tampered digits refused', tampered.status === 403, tampered.status);

  // A wrong PIN.
  const c = callSid();
  r = await post(await upToLast4(c, '9999'), params(c, '4321'));
  check('wrong PIN not verified', refused(r), r);

  // Call E's PIN envelope moved into call D's last-four gather.
  const d = callSid();
  const e = callSid();
  await upToLast4(d, '1234');
  const eLast4 = await upToLast4(e, '1234');
  r = await post(eLast4, params(d, '4321'));
  check("an envelope moved to another call is refused", refused(r), r);

  // Call A's PIN envelope, already opened, sent to the back end again
  // through a new (so admitted) delivery URL.
  r = await post(aLast4 + '&attempt=2', params(a, '4321'));
  check('an envelope opened once is refused the second time', refused(r), r);

  // An envelope kept past its deadline.
  const f = callSid();
  const fLast4 = await upToLast4(f, '1234');
  await new Promise((resolve) => setTimeout(resolve, (ttl + 1.5) * 1000));
  r = await post(fLast4, params(f, '4321'));
  check('an expired envelope is refused', refused(r), r);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
