// The gateway's client library, an ES module for browsers and Node >= 20:
//
//   import { Connection, StompSession } from '/gateway-client.js';   // a page
//   import { Connection, StompSession } from './gateway-client.mjs';  // Node (needs `ws`)
//
// Connection is the transport (WebSocket, or the gateway's HTTP fallback when WebSocket is
// blocked) with reconnect, failover and backoff; StompSession is STOMP on top of it with
// subscriptions that resume where they left off. The pieces live in client/.
export { Connection, fallbackOnAnyFailure } from './client/connection.mjs';
export { StompSession } from './client/stomp-session.mjs';
export { Backoff, DEFAULT_BACKOFF } from './client/backoff.mjs';
export { SseParser, SseDecoder } from './client/sse.mjs';
export { parsePosition, PositionTracker } from './client/position.mjs';
export { webSocketAdapter } from './client/ws-adapter.mjs';
