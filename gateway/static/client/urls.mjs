// The two spellings of one endpoint: ws(s):// for the upgrade, http(s):// for the fallback.
// Relative URLs ('/ws') resolve against the page, so a page can name its own gateway.

export function absolute(url) {
  const base = typeof location !== 'undefined' && location.href ? location.href : undefined;
  return new URL(url, base);
}

export function wsUrl(url) {
  const u = absolute(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.href;
}

export function httpUrl(url) {
  const u = absolute(url);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  else if (u.protocol === 'wss:') u.protocol = 'https:';
  return u.href;
}

/** `path` (absolute or relative to `base`) with `base`'s query (credentials) and `extra` added. */
export function withQuery(path, base, extra = {}) {
  const b = new URL(base);
  const u = new URL(path, b);
  for (const [k, v] of b.searchParams) if (!u.searchParams.has(k)) u.searchParams.append(k, v);
  for (const [k, v] of Object.entries(extra)) if (v != null) u.searchParams.set(k, String(v));
  return u.href;
}
