'use strict'
// A status ("server list") ping through minecraft-protocol's ping().
//
//   node ping.js '{"host":"127.0.0.1","port":25565,"handshakeHost":"mc.example.com",
//                  "version":"1.20.4","timeoutMs":5000}'
//
// host/port: where the TCP connection goes; handshakeHost/handshakePort: what the handshake
// carries (default host/port). Prints ONE JSON line:
//   {"event":"status","response":<status JSON as the server sent it>,"latency":ms}
//   {"event":"error","message":...}
//   {"event":"timeout"}

const { emit, parseConfig } = require('./common')
const net = require('net')
const mc = require('minecraft-protocol')

const cfg = parseConfig(process.argv)
const host = cfg.host || '127.0.0.1'
const port = Number(cfg.port)
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('ping.js: "port" is required\n')
  process.exit(64)
}
const timeoutMs = cfg.timeoutMs ?? 5000

let done = false
function finish (outcome) {
  if (done) return
  done = true
  emit(outcome)
  process.exit(0)
}
setTimeout(() => finish({ event: 'timeout', timeoutMs }), timeoutMs)

mc.ping({
  // ping() writes options.host/options.port into the handshake...
  host: cfg.handshakeHost ?? host,
  port: cfg.handshakePort ?? port,
  version: cfg.version || require('./versions.json').default,
  closeTimeout: timeoutMs,
  noPongTimeout: Math.min(timeoutMs, 2000),
  // ...while the TCP connection goes exactly here.
  connect: (c) => c.setSocket(net.connect(port, host))
}).then((response) => {
  const latency = response.latency ?? null
  delete response.latency // added by minecraft-protocol, not part of the server's JSON
  finish({ event: 'status', response, latency })
}, (err) => {
  finish({ event: 'error', message: String(err && err.message ? err.message : err), code: err && err.code ? err.code : null })
})
