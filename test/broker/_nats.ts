/** @module Test harness for a NATS cluster on loopback: free ports, `kin broker --export-nats` files, nodes started, killed (SIGKILL) and restarted. */
import { spawn, type ChildProcess } from 'node:child_process'
import { exportNats, type NatsExport, type NatsNodePorts } from '../../broker/nats.ts'
import { startL0Client, type L0ClientServices } from '../../broker/l0-client.ts'
import { tempDir, type BrokerAddress, type L0Home } from './_fleet.ts'
import { freePort } from '../helpers/free-port.ts'

export { freePort }

/** One running (or killed) nats-server of the cluster. */
export interface NatsNode {
  readonly index: number
  readonly url: string
  readonly mqttPort: number
  child: ChildProcess
  /** Everything it logged since it was last started. */
  log(): string
}

/** The cluster: its export, its nodes, and how to stop them all. */
export interface NatsCluster {
  exported: NatsExport
  nodes: NatsNode[]
  /** SIGKILL to node `i`, resolved once it exited. */
  kill(i: number): Promise<void>
  /** Starts node `i` again with the same configuration (and its JetStream store), resolved once it serves MQTT. */
  restart(i: number): Promise<void>
  /** SIGKILL to every node still running. */
  stop(): Promise<void>
}

const DEADLINE_MS = 60_000

async function until(what: string, cond: () => boolean, node: NatsNode): Promise<void> {
  const end = Date.now() + DEADLINE_MS
  while (!cond()) {
    if (node.child.exitCode !== null)
      throw new Error(`nats-server ${node.index + 1} exited with ${node.child.exitCode} before ${what}:\n${node.log()}`)
    if (Date.now() > end)
      throw new Error(`nats-server ${node.index + 1}: no ${what} within ${DEADLINE_MS} ms:\n${node.log()}`)
    await new Promise(r => setTimeout(r, 50))
  }
}

function spawnNode(conf: string): { child: ChildProcess; log: () => string } {
  const child = spawn('nats-server', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  let text = ''
  child.stderr!.on('data', d => {
    if (text.length < 4_000_000) text += d
  })
  return { child, log: () => text }
}

/**
 * Exports an `n`-node cluster for L0's home with OS-chosen ports on 127.0.0.1 and starts every node; resolves when
 * each serves MQTT and the JetStream cluster has a metadata leader. The caller must `stop()` (a tap teardown).
 */
export async function startNatsCluster(home: string, n = 3): Promise<NatsCluster> {
  // A port the OS chose is free when chosen, not when the node binds it: another process on a busy machine may take it
  // in between. Then the cluster starts again on new ports, a bounded number of times.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(home, n)
    } catch (err) {
      if (attempt >= 3 || !/address already in use/.test((err as Error).message)) throw err
    }
  }
}

async function startOnce(home: string, n: number): Promise<NatsCluster> {
  const ports: NatsNodePorts[] = []
  for (let i = 0; i < n; i++) ports.push({ mqtt: await freePort(), client: await freePort(), route: await freePort() })
  const exported = await exportNats({ home, dir: tempDir('kin-nats-'), nodes: ports })
  const nodes: NatsNode[] = exported.nodes.map((cfg, index) => {
    const { child, log } = spawnNode(cfg.conf)
    return { index, url: exported.urls[index]!, mqttPort: cfg.mqtt, child, log }
  })
  // Any node's exit from here on ends the cluster's usefulness; stop() must still reach the others.
  const cluster: NatsCluster = {
    exported,
    nodes,
    async kill(i) {
      const node = nodes[i]!
      if (node.child.exitCode !== null || node.child.signalCode !== null) return
      const exited = new Promise(r => node.child.once('exit', r))
      node.child.kill('SIGKILL')
      await exited
    },
    async restart(i) {
      const node = nodes[i]!
      const { child, log } = spawnNode(exported.nodes[i]!.conf)
      node.child = child
      node.log = log
      await until('MQTT listener', () => /Listening for MQTT clients/.test(node.log()), node)
    },
    async stop() {
      await Promise.all(nodes.map((_, i) => cluster.kill(i)))
    },
  }
  try {
    for (const node of nodes) await until('MQTT listener', () => /Listening for MQTT clients/.test(node.log()), node)
    // The metadata leader is the cluster's: one node saying so is enough (not every node logs the election).
    await until(
      'JetStream metadata leader',
      () =>
        nodes.some(n =>
          /JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader/.test(n.log()),
        ),
      nodes[0]!,
    )
  } catch (err) {
    await cluster.stop()
    throw err
  }
  return cluster
}

/** Node `i`'s MQTT listener as a device dials it: L0's CN and the fleet root, as on L0's own broker. */
export function nodeAddress(cluster: NatsCluster, i: number, l0: Pick<L0Home, 'cn' | 'rootPem'>): BrokerAddress {
  return { host: '127.0.0.1', port: cluster.nodes[i]!.mqttPort, cn: l0.cn, rootPem: l0.rootPem }
}

/** L0's services in `home` on the cluster (its exported broker list and NATS files), their log records into `logs`. */
export function startL0OnCluster(
  home: string,
  cluster: NatsCluster,
  logs: Array<Record<string, unknown>>,
): Promise<L0ClientServices> {
  return startL0Client({
    home,
    broker: cluster.exported.urls,
    natsDir: cluster.exported.dir,
    log: r => logs.push(r as Record<string, unknown>),
  })
}
