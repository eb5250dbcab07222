'use strict';
// HS256 JSON Web Tokens for the tests, signed with node:crypto (RFC 7519 / RFC 7515 compact
// form: base64url header, claims and HMAC-SHA256 signature).

const crypto = require('node:crypto');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** A token for `sub` with `roles`, expiring `expIn` seconds from now (whole seconds). */
function hs256(secret, { sub, roles = [], expIn = 300, ...extra }) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = b64url(JSON.stringify({ sub, roles, iat: now, exp: now + expIn, ...extra }));
  const sig = crypto.createHmac('sha256', secret).update(`${header}.${claims}`).digest();
  return `${header}.${claims}.${b64url(sig)}`;
}

/** The `exp` claim of `token`, in unix seconds (no verification). */
function expOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).exp;
}

module.exports = { hs256, expOf };
