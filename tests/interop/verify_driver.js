// Drives examples/http_service.rs (the Verify v2 twin) with the official
// `twilio` npm client, unchanged but for its `httpClient` option, which
// sends the client's requests to the local server instead of
// verify.twilio.com. Every Verify call and error code the twin serves is
// exercised; any difference from what the client expects fails the run.
//
// Environment: VERIFY_PORT, VERIFY_OUTBOX (the server's outbox file),
// VERIFY_ACCOUNT_SID, VERIFY_AUTH_TOKEN, VERIFY_SERVICE_SID.
"use strict";
const fs = require("fs");
const http = require("http");
const qs = require("querystring");
const assert = require("assert/strict");
const twilio = require("twilio");

const port = Number(process.env.VERIFY_PORT);
const outbox = process.env.VERIFY_OUTBOX;
const accountSid = process.env.VERIFY_ACCOUNT_SID;
const authToken = process.env.VERIFY_AUTH_TOKEN;
const serviceSid = process.env.VERIFY_SERVICE_SID;

// The client's HTTP client interface: request(opts) resolves to
// {statusCode, body, headers}. Only the host changes.
class LocalHttpClient {
  request(opts) {
    const url = new URL(opts.uri);
    assert.equal(url.host, "verify.twilio.com");
    if (opts.params) {
      for (const [k, v] of Object.entries(opts.params)) url.searchParams.append(k, v);
    }
    const headers = { ...(opts.headers || {}) };
    if (opts.username && opts.password) {
      headers.Authorization =
        "Basic " + Buffer.from(`${opts.username}:${opts.password}`).toString("base64");
    }
    let body;
    if (opts.data) {
      body = qs.stringify(opts.data);
      headers["Content-Length"] = Buffer.byteLength(body);
    }
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: "127.0.0.1", port, method: opts.method.toUpperCase(),
          path: url.pathname + url.search, headers, timeout: 10000 },
        (res) => {
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => resolve({ statusCode: res.statusCode,
            body: Buffer.concat(chunks).toString("utf8"), headers: res.headers }));
        });
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", reject);
      if (body) req.write(body);
      req.end();
    });
  }
}

const client = twilio(accountSid, authToken, { httpClient: new LocalHttpClient() });
const service = client.verify.v2.services(serviceSid);

function lastCodeFor(to) {
  const lines = fs.readFileSync(outbox, "utf8").trim().split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const f = lines[i].split(" ");
    // "<unix time> sms <to> <code>"
    if (f[f.length - 2] === to) return f[f.length - 1];
  }
  throw new Error("no code in the outbox for a number");
}
const wrongOf = (code) => code.split("").map((d) => String((Number(d) + 1) % 10)).join("");

async function rejects(promise, status, code, what) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof twilio.RestException, `${what}: a RestException, got ${e}`);
    assert.equal(e.status, status, `${what}: status`);
    assert.equal(e.code, code, `${what}: code`);
    assert.equal(e.moreInfo, `https://www.twilio.com/docs/errors/${code}`, `${what}: more_info`);
    console.log(`ok: ${what} -> ${status} ${code}`);
    return e;
  }
  throw new Error(`${what}: expected ${status} ${code}, the call succeeded`);
}

function looksLikeVerification(v, to, status) {
  assert.match(v.sid, /^VE[0-9a-f]{32}$/);
  assert.equal(v.serviceSid, serviceSid);
  assert.equal(v.accountSid, accountSid);
  assert.equal(v.to, to);
  assert.equal(v.channel, "sms");
  assert.equal(v.status, status);
  assert.equal(v.valid, status === "approved");
  assert.ok(v.dateCreated instanceof Date && !isNaN(v.dateCreated), "date_created");
  assert.ok(v.dateUpdated instanceof Date && !isNaN(v.dateUpdated), "date_updated");
  assert.ok(Math.abs(v.dateCreated - Date.now()) < 120000, "date_created is now");
  assert.ok(v.dateUpdated >= v.dateCreated);
  assert.equal(v.url, `https://verify.twilio.com/v2/Services/${serviceSid}/Verifications/${v.sid}`);
}

async function main() {
  // Create, then check by To: a wrong code, then the right one.
  const to = "+15550100199";
  const v = await service.verifications.create({ to: "+1 (555) 010-0199", channel: "sms" });
  looksLikeVerification(v, to, "pending");
  assert.equal(v.sendCodeAttempts.length, 1);
  const code = lastCodeFor(to);
  assert.match(code, /^[0-9]{6}$/);
  let c = await service.verificationChecks.create({ to, code: wrongOf(code) });
  assert.equal(c.status, "pending");
  assert.equal(c.valid, false);
  assert.equal(c.sid, v.sid);
  c = await service.verificationChecks.create({ to, code });
  assert.equal(c.status, "approved");
  assert.equal(c.valid, true);
  assert.equal(c.sid, v.sid);
  assert.equal(c.to, to);
  assert.ok(c.dateUpdated instanceof Date);
  console.log("ok: create, check by To (wrong, right)");
  await rejects(service.verificationChecks.create({ to, code }), 404, 20404, "a spent code");

  // Fetch without spending an attempt; check by VerificationSid.
  const to2 = "+15550100277";
  const v2 = await service.verifications.create({ to: to2, channel: "sms" });
  const code2 = lastCodeFor(to2);
  for (let i = 0; i < 3; i++) {
    const f = await service.verifications(v2.sid).fetch();
    looksLikeVerification(f, to2, "pending");
    assert.equal(f.sid, v2.sid);
  }
  const byNumber = await service.verifications(to2).fetch();
  assert.equal(byNumber.sid, v2.sid);
  c = await service.verificationChecks.create({ verificationSid: v2.sid, code: code2 });
  assert.equal(c.status, "approved");
  assert.equal(c.to, to2, "a check by id says which number it was for");
  const f2 = await service.verifications(v2.sid).fetch();
  looksLikeVerification(f2, to2, "approved");
  console.log("ok: fetch (three times, and by number), check by VerificationSid");

  // Cancel, then approve out of band.
  const to3 = "+15550100388";
  const v3 = await service.verifications.create({ to: to3, channel: "sms" });
  const code3 = lastCodeFor(to3);
  const canceled = await service.verifications(v3.sid).update({ status: "canceled" });
  looksLikeVerification(canceled, to3, "canceled");
  await rejects(service.verificationChecks.create({ to: to3, code: code3 }), 404, 20404,
    "a check on a canceled verification");
  await rejects(service.verifications(v3.sid).update({ status: "canceled" }), 404, 20404,
    "cancel twice");
  const v4 = await service.verifications.create({ to: to3, channel: "sms" });
  const approved = await service.verifications(v4.sid).update({ status: "approved" });
  looksLikeVerification(approved, to3, "approved");
  console.log("ok: cancel, approve");

  // 20404: unknown ids.
  await rejects(service.verifications("VE00112233445566778899aabbccddeeff").fetch(), 404, 20404,
    "fetch an unknown verification");
  await rejects(service.verifications("nothing").fetch(), 404, 20404, "fetch a malformed SID");
  await rejects(service.verificationChecks.create({
    verificationSid: "VE00112233445566778899aabbccddeeff", code: "123456" }), 404, 20404,
    "check an unknown verification");
  await rejects(client.verify.v2.services("VA" + "1".repeat(32)).verifications
    .create({ to, channel: "sms" }), 404, 20404, "another service");

  // 60200: bad parameters, never echoed.
  const bad = await rejects(service.verifications.create({ to: "555-0199", channel: "sms" }),
    400, 60200, "a national number");
  assert.ok(!bad.message.includes("555"), "the error echoes the input");
  await rejects(service.verifications.create({ to, channel: "carrier-pigeon" }), 400, 60200,
    "an unknown channel");
  await rejects(service.verificationChecks.create({ code: "123456" }), 400, 60200,
    "a check naming no verification");
  await rejects(service.verifications(v4.sid).update({ status: "pending" }), 400, 60200,
    "an update to another status");

  // 60202: the sixth check after five wrong codes.
  const to5 = "+15550100455";
  await service.verifications.create({ to: to5, channel: "sms" });
  const code5 = lastCodeFor(to5);
  for (let i = 0; i < 5; i++) {
    c = await service.verificationChecks.create({ to: to5, code: wrongOf(code5) });
    assert.equal(c.status, "pending");
  }
  await rejects(service.verificationChecks.create({ to: to5, code: code5 }), 429, 60202,
    "max check attempts");
  const locked = await service.verifications(to5).fetch();
  assert.equal(locked.status, "max_attempts_reached");

  // 60203: the sixth send to one number in its window.
  const to6 = "+15550100566";
  for (let i = 0; i < 5; i++) await service.verifications.create({ to: to6, channel: "sms" });
  await rejects(service.verifications.create({ to: to6, channel: "sms" }), 429, 60203,
    "max send attempts");

  // 20429: the service's end_user_ip_address rate limit (3 a minute).
  const rateLimits = { end_user_ip_address: "198.51.100.7" };
  for (let i = 0; i < 3; i++) {
    await service.verifications.create({ to: `+1555020070${i}`, channel: "sms", rateLimits });
  }
  await rejects(service.verifications.create({ to: "+15550200709", channel: "sms", rateLimits }),
    429, 20429, "a rate limit's bucket");
  await rejects(service.verifications.create({ to: "+15550200709", channel: "sms",
    rateLimits: { unknown_limit: "x" } }), 400, 60200, "an unknown rate limit");

  // 60605: a country the service does not send to.
  await rejects(service.verifications.create({ to: "+88212345678", channel: "sms" }), 403, 60605,
    "geo permissions");

  // 60410: a pumping run over one range; another range still gets codes.
  let sent = 0;
  let blocked;
  for (let i = 0; i < 60 && !blocked; i++) {
    try {
      await service.verifications.create({ to: "+1555034" + String(i).padStart(4, "0"),
        channel: "sms" });
      sent++;
    } catch (e) {
      blocked = e;
    }
  }
  assert.ok(blocked, "the range was never blocked");
  assert.equal(blocked.status, 403);
  assert.equal(blocked.code, 60410);
  assert.equal(sent, 50, "the range's sends before the block");
  await rejects(service.verifications.create({ to: "+15550340999", channel: "sms" }), 403, 60410,
    "a blocked range");
  const other = await service.verifications.create({ to: "+15550350001", channel: "sms" });
  assert.equal(other.status, "pending");
  console.log("ok: a pumping run is blocked at 50 sends to its range; other ranges still served");

  // 20003: wrong credentials.
  const stranger = twilio(accountSid, authToken + "x", { httpClient: new LocalHttpClient() });
  await rejects(stranger.verify.v2.services(serviceSid).verifications.create({ to, channel: "sms" }),
    401, 20003, "a wrong auth token");
  const otherAccount = twilio("AC" + "f".repeat(32), authToken, { httpClient: new LocalHttpClient() });
  await rejects(otherAccount.verify.v2.services(serviceSid).verifications(v2.sid).fetch(),
    401, 20003, "another account SID");

  console.log("verify_driver: every call answered as the twilio client expects");
}

main().catch((e) => {
  console.error("verify_driver FAILED:", e && e.stack ? e.stack : e);
  process.exit(1);
});
