// A webtorrent bittorrent-dht node that only answers queries, for bench/throughput.py.
//
//   node bench/bdht_server.js --host 127.0.0.1 --port 0 [--max-seconds 900]
//
// Prints {"port": P, "pid": PID} once bound. No bootstrap (the library's default is the
// public routers, which a benchmark must never reach). Exits when stdin closes, on
// SIGTERM, or after --max-seconds, whichever comes first.

import DHT from 'bittorrent-dht'

const opts = { host: '127.0.0.1', port: 0, maxSeconds: 900 }
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i += 2) {
  const flag = argv[i]
  const val = argv[i + 1]
  if (val === undefined) throw new Error(`missing value for ${flag}`)
  if (flag === '--host') opts.host = val
  else if (flag === '--port') opts.port = Number(val)
  else if (flag === '--max-seconds') opts.maxSeconds = Number(val)
  else throw new Error(`unknown flag ${flag}`)
}

const dht = new DHT({ bootstrap: false })
// listen() in the same tick as the constructor, so no send binds the socket to 0.0.0.0.
dht.listen(opts.port, opts.host)

function shutdown () {
  const force = setTimeout(() => process.exit(0), 1000)
  force.unref()
  try {
    dht.destroy(() => process.exit(0))
  } catch (err) {
    process.exit(0)
  }
}

dht.on('listening', () => {
  process.stdout.write(JSON.stringify({ port: dht.address().port, pid: process.pid }) + '\n')
})
dht.on('error', (err) => {
  process.stderr.write(`error: ${err && err.message ? err.message : err}\n`)
  process.exit(2)
})
dht.on('warning', () => {})

setTimeout(shutdown, opts.maxSeconds * 1000).unref()
process.stdin.on('end', shutdown)
process.stdin.on('error', shutdown)
process.stdin.resume()
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
