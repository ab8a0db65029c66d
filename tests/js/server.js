'use strict'
// A real minecraft-protocol server for the third-party test harness.
//
//   node server.js '{"version":"1.20.4","motd":"hi","maxPlayers":20,"port":0}'
//
// Config keys (all optional):
//   version      Minecraft version string (default: see DEFAULT_VERSION); false = any version
//   host         bind address (default 127.0.0.1)
//   port         TCP port (default 0 = ephemeral)
//   motd         plain-text MOTD (status "description" is {"text": motd})
//   description  full chat component (object) for the status "description"; overrides motd there
//   maxPlayers   players.max in status (default 20)
//   favicon      "data:image/png;base64,..." string put verbatim in status "favicon"
//   kickOnLogin  string or chat component: disconnect every player during the LOGIN state
//                (after login_start, before login success) with this reason
//   kickOnLoginRaw  true: send the kickOnLogin string verbatim as the reason field instead
//                of {"text": ...} (to see what clients make of a reason that is not JSON)
//
// stdout, one JSON object per line:
//   {"event":"listening","port":N,"version":...,"protocol":...}   exactly once, first
//   {"event":"ping","handshakeHost":...,"handshakePort":...,"protocol":...}
//   {"event":"legacy_ping","payload":...}
//   {"event":"login","username":...,"uuid":...,"handshakeHost":...,"handshakePort":...,"protocol":...}
//   {"event":"kick","username":...,"handshakeHost":...,"reason":...}       (kickOnLogin)
//   {"event":"join","username":...}     the client finished configuration; join game was sent
//   {"event":"disconnect","username":...,"reason":...}
//   {"event":"client_error","message":...}
//   {"event":"error","message":...}     server-level error (e.g. listen failed), then exit 1
// Exits on SIGTERM/SIGINT or when stdin closes.

const { emit, parseConfig, onExitSignals } = require('./common')
const mc = require('minecraft-protocol')
const states = require('minecraft-protocol/src/states')

const DEFAULT_VERSION = require('./versions.json').default

const cfg = parseConfig(process.argv)
const version = cfg.version === undefined || cfg.version === null ? DEFAULT_VERSION : cfg.version
const kickOnLogin = cfg.kickOnLogin ?? null

const options = {
  host: cfg.host || '127.0.0.1',
  port: cfg.port ?? 0,
  'online-mode': false,
  version,
  motd: cfg.motd ?? 'A Minecraft Server',
  maxPlayers: cfg.maxPlayers ?? 20,
  hideErrors: true,
  errorHandler: (client, err) => {
    emit({ event: 'client_error', username: client.username ?? null, message: String(err && err.message ? err.message : err) })
    client.end(String(err && err.message ? err.message : err))
  },
  beforePing: (response, client) => {
    if (cfg.description !== undefined) response.description = cfg.description
    if (cfg.favicon) response.favicon = cfg.favicon
    else delete response.favicon
    emit({
      event: 'ping',
      handshakeHost: client.serverHost ?? null,
      handshakePort: client.serverPort ?? null,
      protocol: client.protocolVersion ?? null
    })
    return response
  }
}

let server
try {
  server = mc.createServer(options)
} catch (e) {
  emit({ event: 'error', message: String(e && e.message ? e.message : e) })
  process.exit(1)
}

const mcData = require('minecraft-data')(server.version)

// Runs before minecraft-protocol's own plugins see the connection.
server.prependListener('connection', (client) => {
  client.once('legacy_server_list_ping', (packet) => {
    emit({ event: 'legacy_ping', payload: packet.payload ?? null })
  })
  if (kickOnLogin !== null) {
    client.prependOnceListener('login_start', (packet) => {
      client.kickedByHarness = true
      const raw = cfg.kickOnLoginRaw === true && typeof kickOnLogin === 'string'
      const reason = typeof kickOnLogin === 'string' && !raw ? { text: kickOnLogin } : kickOnLogin
      emit({
        event: 'kick',
        username: packet.username,
        handshakeHost: client.serverHost ?? null,
        handshakePort: client.serverPort ?? null,
        protocol: client.protocolVersion ?? null,
        reason
      })
      // In the LOGIN state this writes a login "disconnect" packet (JSON text) and ends.
      client.end(typeof kickOnLogin === 'string' ? kickOnLogin : 'kicked', raw ? kickOnLogin : JSON.stringify(reason))
      // minecraft-protocol's login plugin will still try to answer login_start:
      // swallow its writes so nothing follows the disconnect packet.
      client.write = () => {}
      client.writeRaw = () => {}
    })
  }
})

server.on('login', (client) => {
  if (client.kickedByHarness) return
  emit({
    event: 'login',
    username: client.username,
    uuid: client.uuid,
    handshakeHost: client.serverHost ?? null,
    handshakePort: client.serverPort ?? null,
    protocol: client.protocolVersion ?? null
  })
  client.once('end', (reason) => {
    emit({ event: 'disconnect', username: client.username, reason: reason ?? null })
  })
})

server.on('playerJoin', (client) => {
  if (client.kickedByHarness) return
  if (client.state !== states.PLAY) return
  try {
    client.write('login', {
      // Pre-1.16 join game packets are not in minecraft-data's loginPacket sample.
      dimension: 0,
      difficulty: 0,
      levelType: 'default',
      ...mcData.loginPacket,
      enforceSecureChat: false,
      enforcesSecureChat: false,
      entityId: client.id + 1,
      isHardcore: false,
      gameMode: 0,
      previousGameMode: 1,
      hashedSeed: [0, 0],
      maxPlayers: server.maxPlayers,
      viewDistance: 10,
      reducedDebugInfo: false,
      enableRespawnScreen: true,
      isDebug: false,
      isFlat: false
    })
    emit({ event: 'join', username: client.username })
  } catch (e) {
    emit({ event: 'client_error', username: client.username, message: 'writing join game: ' + String(e && e.message ? e.message : e) })
    client.end('harness server failed to write join game')
  }
})

server.on('error', (err) => {
  emit({ event: 'error', message: String(err && err.message ? err.message : err) })
  process.exit(1)
})

server.on('listening', () => {
  const addr = server.socketServer.address()
  emit({
    event: 'listening',
    host: addr.address,
    port: addr.port,
    version: server.mcversion.minecraftVersion,
    protocol: server.mcversion.version
  })
})

let stopping = false
onExitSignals(() => {
  if (stopping) return
  stopping = true
  try {
    for (const id of Object.keys(server.clients)) server.clients[id].socket?.destroy()
    server.socketServer?.close()
  } catch {}
  process.exit(0)
})
