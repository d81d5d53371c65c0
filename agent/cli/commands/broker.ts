/** @module `kin broker`: run L0's services — MQTT broker over mutual TLS, fleet CA, invites, ledger intake — until a signal. */
import { startL0 } from '../../../broker/l0.ts'
import { requireString, usageError, type CommandSpec } from '../args.ts'

function parsePort(text: string): number {
  const port = Number(text)
  if (!/^\d+$/.test(text) || !Number.isInteger(port) || port < 0 || port > 65535) throw usageError(`--port expects a port number 0..65535 (0: any free port), got "${text}"`)
  return port
}

/** `kin broker`. */
export const broker: CommandSpec = {
  name: 'broker',
  usage: 'kin broker --home DIR [--host 127.0.0.1] [--port 8883] [--json]',
  summary: "Run L0's services on the home made by 'kin init': the MQTT broker (devices log in with their fleet certificate, pairing sessions with a one-time code), the fleet CA, invites and the ledger intake. Logs JSON lines on stderr; stops cleanly on SIGINT or SIGTERM.",
  options: {
    home: { type: 'string', help: "L0's home directory (made by 'kin init')" },
    host: { type: 'string', help: 'address to listen on', default: '127.0.0.1' },
    port: { type: 'string', help: 'TCP port for MQTT over TLS (0: any free port)', default: '8883' },
  },
  async run(args) {
    const home = requireString(args, 'home', "L0's home, e.g. --home ./l0")
    const host = String(args.values.host)
    const port = parsePort(String(args.values.port))
    const stop = new Promise<void>(resolve => {
      process.once('SIGINT', () => resolve())
      process.once('SIGTERM', () => resolve())
    })
    const services = await startL0({ home, host, port })
    const where = { ok: true, host: services.host, port: services.port, cn: services.cn, fleet: services.fleet, url: `mqtts://${services.host}:${services.port}` }
    if (args.json) process.stdout.write(JSON.stringify(where) + '\n')
    else process.stdout.write(`L0 of fleet ${services.fleet} listening on ${where.url} (cn ${services.cn}); stop with Ctrl-C\n`)
    await stop
    await services.close()
    return 0
  },
}
