// A webtorrent bittorrent-dht node driven over stdin/stdout with JSON lines, for mldht's
// interop tests (tests/interop/bdht.py is the Python side).
//
//   node tests/interop/bdht_peer.js --host 127.0.N.1 --port P [--bootstrap ip:port ...]
//        [--id HEX40] [--timeout-ms 2000] [--max-seconds 300]
//
// Prints {"event":"listening","id":HEX,"host":H,"port":P} once bound, {"event":"ready"} once
// its bootstrap lookup is over, and one reply line per command line. A command is one JSON
// object {"rid": ANY, "cmd": NAME, ...args}; its reply is {"rid": SAME, "ok": true, ...} or
// {"rid": SAME, "ok": false, "error": TEXT, "code": KRPC_CODE_OR_NULL}.
//
// Values (puts) are given as one of v_hex (a byte string), v_str (a UTF-8 byte string) or
// v_bencoded_hex (any bencoded value); values read back come as v_bencoded_hex, plus v_hex
// when the value is a byte string.
//
// The bootstrap list is empty unless given: the library's default is the public routers,
// which tests must never reach. The process exits by itself when stdin closes (so a crashed
// test never leaves it running) and after --max-seconds.

import crypto from 'node:crypto'
import readline from 'node:readline'
import bencode from 'bencode'
import DHT from 'bittorrent-dht'

function parseArgs (argv) {
  const opts = { host: '127.0.0.1', port: 0, bootstrap: [], id: null, timeoutMs: 2000, maxSeconds: 300 }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const val = argv[i + 1]
    if (val === undefined) throw new Error(`missing value for ${flag}`)
    i++
    if (flag === '--host') opts.host = val
    else if (flag === '--port') opts.port = Number(val)
    else if (flag === '--bootstrap') opts.bootstrap.push(val)
    else if (flag === '--id') opts.id = val
    else if (flag === '--timeout-ms') opts.timeoutMs = Number(val)
    else if (flag === '--max-seconds') opts.maxSeconds = Number(val)
    else throw new Error(`unknown flag ${flag}`)
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error('bad --port')
  if (opts.id !== null && !/^[0-9a-fA-F]{40}$/.test(opts.id)) throw new Error('--id must be 40 hex digits')
  return opts
}

function send (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

// --- ed25519 through Node's built-in crypto (RFC 8032 keys: 32-byte seed, 32-byte public key)

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

function privateKeyFromSeed (seed) {
  if (seed.length !== 32) throw new Error('ed25519 seed must be 32 bytes')
  return crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' })
}

function publicKeyBytes (privateKey) {
  const spki = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
  return spki.subarray(spki.length - 32)
}

// bittorrent-dht calls verify(sig, message, publicKey) for every mutable item it stores or
// reads; without a verify function it answers every mutable put with error 400.
function verify (sig, message, k) {
  try {
    if (!Buffer.isBuffer(k) || k.length !== 32 || !Buffer.isBuffer(sig) || sig.length !== 64) return false
    const pub = crypto.createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, k]), format: 'der', type: 'spki' })
    return crypto.verify(null, message, pub, sig)
  } catch (err) {
    return false
  }
}

// --- values

// bencode 4 decodes byte strings to Uint8Array; k-rpc-socket encodes with bencode 2, which
// only knows Buffer. Turn every Uint8Array back into a Buffer.
function toBuffers (x) {
  if (x instanceof Uint8Array) return Buffer.from(x.buffer, x.byteOffset, x.byteLength)
  if (Array.isArray(x)) return x.map(toBuffers)
  if (x !== null && typeof x === 'object') {
    const out = {}
    for (const key of Object.keys(x)) out[key] = toBuffers(x[key])
    return out
  }
  return x
}

function valueFromArgs (args) {
  if (typeof args.v_hex === 'string') return Buffer.from(args.v_hex, 'hex')
  if (typeof args.v_str === 'string') return Buffer.from(args.v_str, 'utf8')
  if (typeof args.v === 'string') return Buffer.from(args.v, 'utf8')
  if (typeof args.v_bencoded_hex === 'string') return toBuffers(bencode.decode(Buffer.from(args.v_bencoded_hex, 'hex')))
  throw new Error('give the value as v_hex, v_str or v_bencoded_hex')
}

function describeValue (v) {
  const out = { v_bencoded_hex: Buffer.from(bencode.encode(v)).toString('hex') }
  if (v instanceof Uint8Array) out.v_hex = Buffer.from(v).toString('hex')
  return out
}

function hexArg (args, name, len) {
  const val = args[name]
  if (typeof val !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(val)) throw new Error(`${name} must be hex`)
  const buf = Buffer.from(val, 'hex')
  if (len !== undefined && buf.length !== len) throw new Error(`${name} must be ${len} bytes`)
  return buf
}

function seconds (args, name, dflt) {
  const val = args[name] === undefined ? dflt : Number(args[name])
  if (!(val > 0)) throw new Error(`${name} must be a positive number of seconds`)
  return val
}

function sha1 (buf) {
  return crypto.createHash('sha1').update(buf).digest()
}

function errorReply (err) {
  const code = err && typeof err.code === 'number' ? err.code : null
  return { ok: false, error: String(err && err.message ? err.message : err), code }
}

// --- the node

const opts = parseArgs(process.argv.slice(2))
const dhtOpts = {
  bootstrap: opts.bootstrap.length ? opts.bootstrap : false,
  verify,
  timeout: opts.timeoutMs
}
if (opts.id) dhtOpts.nodeId = opts.id
const dht = new DHT(dhtOpts)
// listen() must be called in the same tick as the constructor: the bootstrap lookup starts
// on the next tick, and a send from an unbound socket would bind it to 0.0.0.0.
dht.listen(opts.port, opts.host)

let closing = false
function shutdown (code) {
  if (closing) return
  closing = true
  const force = setTimeout(() => process.exit(code), 1000)
  force.unref()
  try {
    dht.destroy(() => process.exit(code))
  } catch (err) {
    process.exit(code)
  }
}

dht.on('listening', () => {
  const addr = dht.address()
  send({ event: 'listening', id: dht.nodeId.toString('hex'), host: addr.address, port: addr.port })
})
dht.on('ready', () => send({ event: 'ready' }))
dht.on('error', (err) => {
  send({ event: 'error', error: String(err && err.message ? err.message : err) })
  shutdown(2)
})
// Malformed datagrams and stray replies end up here; they are not failures of the node.
dht.on('warning', (err) => process.stderr.write(`warning: ${err && err.message ? err.message : err}\n`))

const lifetime = setTimeout(() => {
  send({ event: 'max-lifetime' })
  shutdown(3)
}, opts.maxSeconds * 1000)
lifetime.unref()

process.stdout.on('error', () => shutdown(0)) // the reader is gone
process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))

// Every command answers exactly once: `reply` ignores later calls, so a callback that
// arrives after the deadline reply is dropped.
const commands = {
  ping (args, reply) {
    reply({})
  },

  addNode (args, reply, deadline) {
    const node = { host: String(args.ip), port: Number(args.port) }
    if (args.id) {
      dht.addNode({ id: hexArg(args, 'id', 20), ...node })
      return reply({ id: args.id.toLowerCase() })
    }
    // dht.addNode() pings without telling us the outcome; _sendPing is the same call with
    // its callback (pinned: bittorrent-dht ~11.0.12).
    deadline(seconds(args, 'timeout', 5), () => reply(errorReply(new Error('ping timed out'))))
    dht._sendPing(node, (err, found) => {
      if (err) return reply(errorReply(err))
      dht.addNode(found)
      reply({ id: found.id.toString('hex') })
    })
  },

  nodes (args, reply) {
    const nodes = dht._rpc.nodes.toArray().map((n) => ({ id: n.id.toString('hex'), ip: n.host, port: n.port }))
    reply({ nodes })
  },

  announce (args, reply, deadline) {
    const infoHash = hexArg(args, 'infohash', 20)
    const port = args.port === undefined ? 0 : Number(args.port) // 0: implied_port=1
    deadline(seconds(args, 'timeout', 30), () => reply(errorReply(new Error('announce timed out'))))
    dht.announce(infoHash, port, (err, hits) => {
      if (err) return reply(errorReply(err))
      reply({ hits: hits || 0 })
    })
  },

  lookup (args, reply, deadline) {
    const infoHash = hexArg(args, 'infohash', 20)
    const hex = infoHash.toString('hex')
    const seen = new Map()
    // A peer may come from the node's own store (from: null) and from several nodes.
    function onpeer (peer, ih, from) {
      if (Buffer.from(ih).toString('hex') !== hex) return
      const key = `${peer.host}:${peer.port}`
      if (!seen.has(key)) seen.set(key, { ip: peer.host, port: peer.port, from: [] })
      const source = from ? `${from.address || from.host}:${from.port}` : null
      const froms = seen.get(key).from
      if (!froms.includes(source)) froms.push(source)
    }
    function finish (extra) {
      dht.removeListener('peer', onpeer)
      if (abort) abort()
      reply({ peers: [...seen.values()], ...extra })
    }
    dht.on('peer', onpeer)
    deadline(seconds(args, 'timeout', 10), () => finish({ timed_out: true, visited: null }))
    const abort = dht.lookup(infoHash, (err, visited) => {
      if (err) {
        dht.removeListener('peer', onpeer)
        return reply(errorReply(err))
      }
      finish({ timed_out: false, visited })
    })
  },

  putImmutable (args, reply, deadline) {
    const v = valueFromArgs(args)
    deadline(seconds(args, 'timeout', 30), () => reply(errorReply(new Error('put timed out'))))
    const target = dht.put({ v }, (err, hash, hits) => {
      if (err) return reply(errorReply(err))
      reply({ target: Buffer.from(hash).toString('hex'), hits: hits || 0 })
    })
    if (!target) reply(errorReply(new Error('put returned no target')))
  },

  getImmutable (args, reply, deadline) {
    const target = hexArg(args, 'target', 20)
    deadline(seconds(args, 'timeout', 10), () => reply({ found: false, timed_out: true }))
    // cache: false makes it ask the network even for an item this node stores itself.
    dht.get(target, { cache: Boolean(args.cache) }, (err, res) => {
      if (err) return reply(errorReply(err))
      if (!res) return reply({ found: false, timed_out: false })
      reply({ found: true, timed_out: false, ...describeValue(res.v) })
    })
  },

  putMutable (args, reply, deadline) {
    const priv = privateKeyFromSeed(hexArg(args, 'seed_hex', 32))
    const k = publicKeyBytes(priv)
    const salt = args.salt_hex ? hexArg(args, 'salt_hex') : null
    const seq = Number(args.seq)
    if (!Number.isSafeInteger(seq)) throw new Error('seq must be an integer')
    const put = {
      k,
      v: valueFromArgs(args),
      seq,
      sign: (buf) => crypto.sign(null, buf, priv)
    }
    // An empty Buffer is truthy in bittorrent-dht's `if (opts.salt)`: pass none instead.
    if (salt && salt.length) put.salt = salt
    if (args.cas !== undefined && args.cas !== null) put.cas = Number(args.cas)
    deadline(seconds(args, 'timeout', 30), () => reply(errorReply(new Error('put timed out'))))
    dht.put(put, (err, hash, hits) => {
      if (err) return reply(errorReply(err))
      reply({ target: Buffer.from(hash).toString('hex'), pubkey: k.toString('hex'), hits: hits || 0 })
    })
  },

  getMutable (args, reply, deadline) {
    const k = hexArg(args, 'pubkey_hex', 32)
    const salt = args.salt_hex ? hexArg(args, 'salt_hex') : Buffer.alloc(0)
    const target = sha1(Buffer.concat([k, salt]))
    const getOpts = { cache: Boolean(args.cache), verify }
    if (salt.length) getOpts.salt = salt
    deadline(seconds(args, 'timeout', 10), () => reply({ found: false, timed_out: true }))
    dht.get(target, getOpts, (err, res) => {
      if (err) return reply(errorReply(err))
      if (!res) return reply({ found: false, timed_out: false })
      reply({
        found: true,
        timed_out: false,
        seq: res.seq,
        k_hex: Buffer.from(res.k).toString('hex'),
        sig_hex: Buffer.from(res.sig).toString('hex'),
        ...describeValue(res.v)
      })
    })
  },

  quit (args, reply) {
    reply({})
    shutdown(0)
  }
}

function handle (line) {
  if (!line.trim()) return
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    return send({ rid: null, ...errorReply(new Error(`not JSON: ${err.message}`)) })
  }
  const rid = msg.rid === undefined ? null : msg.rid
  let done = false
  let timer = null
  const reply = (body) => {
    if (done) return
    done = true
    if (timer) clearTimeout(timer)
    send({ rid, ok: true, ...body })
  }
  const deadline = (secs, onTimeout) => {
    timer = setTimeout(() => {
      timer = null
      onTimeout()
    }, secs * 1000)
  }
  const fn = commands[msg.cmd]
  if (!fn) return reply(errorReply(new Error(`unknown command ${msg.cmd}`)))
  try {
    fn(msg, reply, deadline)
  } catch (err) {
    reply(errorReply(err))
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', handle)
rl.on('close', () => shutdown(0)) // stdin closed: the driver is gone
