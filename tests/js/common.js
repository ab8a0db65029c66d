'use strict'
// Shared helpers for the third-party harness scripts (server.js, client.js, ping.js).
// Every script prints JSON lines on stdout; anything else a library prints goes to stderr.

const nbt = require('prismarine-nbt')

// Libraries sometimes console.log/console.debug; keep stdout for our JSON lines only.
const rawWrite = process.stdout.write.bind(process.stdout)
console.log = (...args) => process.stderr.write(args.map(String).join(' ') + '\n')
console.info = console.log
console.debug = console.log

function emit (obj) {
  rawWrite(JSON.stringify(obj, (key, val) => (typeof val === 'bigint' ? val.toString() : val)) + '\n')
}

function parseConfig (argv) {
  const arg = argv[2]
  if (!arg) return {}
  try {
    return JSON.parse(arg)
  } catch (e) {
    process.stderr.write(`expected one JSON object as the only argument, got ${JSON.stringify(arg)}: ${e.message}\n`)
    process.exit(64)
  }
}

// Fallback flattening of a JSON chat component (text + extra + translate keys).
function flattenComponent (c) {
  if (c === null || c === undefined) return ''
  if (typeof c === 'string' || typeof c === 'number' || typeof c === 'boolean') return String(c)
  if (Array.isArray(c)) return c.map(flattenComponent).join('')
  let out = ''
  if (c.text !== undefined) out += String(c.text)
  else if (c[''] !== undefined) out += String(c[''])
  else if (c.translate !== undefined) {
    out += String(c.translate)
    if (Array.isArray(c.with) && c.with.length) out += ' ' + c.with.map(flattenComponent).join(' ')
  }
  if (Array.isArray(c.extra)) out += c.extra.map(flattenComponent).join('')
  return out
}

// Normalise a chat reason as minecraft-protocol hands it over: a JSON string (login state,
// and play state before 1.20.3) or a parsed NBT compound (1.20.3+ configuration/play state).
// Returns { json: <component or null>, text: <plain text>, valid: <bool> }; valid is false
// when a string reason was not JSON at all (vanilla expects a JSON chat component there).
function describeReason (reason, version) {
  let json = null
  let valid = true
  if (typeof reason === 'string') {
    try {
      json = JSON.parse(reason)
    } catch {
      json = reason
      valid = false
    }
  } else if (reason && typeof reason === 'object' && reason.type !== undefined && reason.value !== undefined) {
    json = nbt.simplify(reason)
  } else {
    json = reason ?? null
  }
  let text
  try {
    // prismarine-chat is what mineflayer & co use to render chat: this is the text a
    // minecraft-protocol based client would display.
    const ChatMessage = require('prismarine-chat')(version)
    text = new ChatMessage(json).toString()
  } catch {
    text = flattenComponent(json)
  }
  return { json, text, valid }
}

function onExitSignals (fn) {
  process.on('SIGTERM', fn)
  process.on('SIGINT', fn)
  process.stdin.on('end', fn)
  process.stdin.on('close', fn)
  process.stdin.on('error', fn)
  process.stdin.resume()
}

module.exports = { emit, parseConfig, describeReason, flattenComponent, onExitSignals }
