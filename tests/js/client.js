'use strict'
// A real minecraft-protocol client (offline mode) for the third-party test harness.
//
//   node client.js '{"host":"127.0.0.1","port":25565,"username":"Steve","version":"1.20.4",
//                    "handshakeHost":"mc.example.com","timeoutMs":10000}'
//
// Config keys:
//   host, port      where the TCP connection goes (no DNS/SRV lookup is made)
//   handshakeHost   serverHost written in the handshake (minecraft-protocol's `fakeHost`);
//                   defaults to host
//   handshakePort   serverPort written in the handshake; defaults to port
//   username        offline-mode username (default "HarnessPlayer")
//   version         Minecraft version (default: versions.json)
//   timeoutMs       overall deadline (default 10000)
//   stayMs          after reaching play state, stay connected this long before leaving (default 0)
//
// Prints exactly ONE JSON line, the outcome, then exits:
//   {"event":"login","username":...,"uuid":...,"state":"play"}          exit 0
//       the client received Join Game ("login" packet) in the PLAY state: what a real
//       client needs to show the world. It then disconnects cleanly.
//   {"event":"kicked","state":"login"|"configuration"|"play","reason":<raw reason>,
//    "reasonJson":<parsed component>,"reasonIsJson":<false if a string reason was not JSON>,
//    "text":<plain text as prismarine-chat renders it>}                   exit 0
//   {"event":"end","reason":...,"state":...}   connection closed without a kick    exit 0
//   {"event":"error","message":...,"state":...}                                    exit 0
//   {"event":"timeout","state":...}                                                exit 0
// A crash of the script itself exits non-zero with no outcome line.

const { emit, parseConfig, describeReason } = require('./common')
const net = require('net')
const mc = require('minecraft-protocol')

const cfg = parseConfig(process.argv)
const host = cfg.host || '127.0.0.1'
const port = Number(cfg.port)
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('client.js: "port" is required\n')
  process.exit(64)
}
const version = cfg.version || require('./versions.json').default
const handshakeHost = cfg.handshakeHost ?? host
const timeoutMs = cfg.timeoutMs ?? 10000

let done = false
let client = null

function stateName () {
  return client ? String(client.state) : 'none'
}

function finish (outcome) {
  if (done) return
  done = true
  emit(outcome)
  clearTimeout(deadline)
  try {
    if (client) client.end('harness client done')
  } catch {}
  // Give the FIN a moment to go out, then leave regardless of what the socket does.
  const sock = client && client.socket
  if (sock && !sock.destroyed) {
    sock.once('close', () => process.exit(0))
    setTimeout(() => process.exit(0), 500).unref()
  } else {
    process.exit(0)
  }
}

const deadline = setTimeout(() => finish({ event: 'timeout', state: stateName(), timeoutMs }), timeoutMs)

try {
  client = mc.createClient({
    host,
    port: cfg.handshakePort ?? port,
    fakeHost: handshakeHost,
    username: cfg.username || 'HarnessPlayer',
    version,
    auth: 'offline',
    hideErrors: true,
    keepAlive: true,
    // Connect exactly where we were told: no DNS, no SRV.
    connect: (c) => c.setSocket(net.connect(port, host))
  })
} catch (e) {
  finish({ event: 'error', message: String(e && e.message ? e.message : e), state: 'none' })
}

if (client) {
  const onKick = (packet) => {
    const { json, text, valid } = describeReason(packet.reason, version)
    finish({ event: 'kicked', state: stateName(), reason: packet.reason, reasonJson: json, reasonIsJson: valid, text })
  }
  // prepend: minecraft-protocol's version check also listens to 'disconnect' and would
  // otherwise turn "Outdated client" kicks into an 'error' first.
  client.prependListener('disconnect', onKick) // LOGIN and CONFIGURATION state disconnect
  client.prependListener('kick_disconnect', onKick) // PLAY state disconnect

  client.on('login', () => {
    // Join Game received in the PLAY state.
    const outcome = { event: 'login', username: client.username, uuid: client.uuid, state: stateName() }
    if (cfg.stayMs) setTimeout(() => finish(outcome), cfg.stayMs)
    else finish(outcome)
  })
  client.on('error', (err) => {
    finish({ event: 'error', message: String(err && err.message ? err.message : err), code: err && err.code ? err.code : null, state: stateName() })
  })
  client.on('end', (reason) => {
    finish({ event: 'end', reason: reason ?? null, state: stateName() })
  })
}
