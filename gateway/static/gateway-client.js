// The URL pages import (`import { StompSession } from '/gateway-client.js'`). The module
// itself is gateway-client.mjs: Node reads a .js file without a "type": "module" package
// as CommonJS, so Node code imports the .mjs and browsers may use either name.
export * from './gateway-client.mjs';
