/** @module `kin delegate CN|NAME`: at flashing, registers an Espruino device as delegated-tier with L0 and writes its secret for the flasher. */
import { closeSync, fchmodSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs'
import { resolve } from 'node:path'
import { KinError } from '../../agent/errors.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { delegatedKeys } from '../../broker/delegated-wire.ts'
import { DelegatedRegistry } from '../../broker/delegated.ts'
import { Home, writeFileDurable } from '../../runtime/home.ts'
import { refuseExistingFile } from '../../runtime/output-file.ts'
import { BROKER_LOCK_FILE, lockHolder } from '../../runtime/following-home.ts'
import { requireString, usageError, type CommandSpec } from '../args.ts'
import { emit } from '../output.ts'
import { findIdentity, openHomeView, shown } from '../home-view.ts'

/** Bytes of the flashing secret S (DEVICES.md "Flashing an Espruino board"): both of the device's keys derive from it. */
const SECRET_BYTES = 32

/** What the flasher's file holds: the secret for the board and, for the device's verifier, the verdict key. */
function secretFileText(fleet: string, cn: string, name: string, secret: Uint8Array, verdictKey: Uint8Array): string {
  const b64 = Buffer.from(secret).toString('base64')
  return (
    JSON.stringify(
      {
        version: 1,
        fleet,
        cn,
        name,
        secret: toHex(secret),
        secretBase64: b64,
        storageWrite: `require("Storage").write("kin.secret", atob("${b64}"))`,
        verdictKey: toHex(verdictKey),
      },
      null,
      1,
    ) + '\n'
  )
}

/** Writes `text` to `file` with mode 0600: a new file only (O_EXCL), or in place of an old one with --force (atomic). */
function writeSecretFile(file: string, text: string, force: boolean): void {
  if (force) return writeFileDurable(file, text, 0o600)
  let fd: number
  try {
    fd = openSync(file, 'wx', 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') refuseExistingFile(file, false, '--out')
    throw err
  }
  try {
    fchmodSync(fd, 0o600)
    writeSync(fd, text)
    fsyncSync(fd)
  } catch (err) {
    closeSync(fd)
    unlinkSync(file)
    throw err
  }
  closeSync(fd)
}

/** `kin delegate`. */
export const delegate: CommandSpec = {
  name: 'delegate',
  usage: 'kin delegate CN|NAME --home L0DIR --out FILE [--force] [--json]',
  summary:
    "Register a device as delegated-tier (an Espruino board) when it is flashed. On L0's home only: makes the device's 32-byte " +
    'flashing secret S, registers the ledger key derived from it in L0DIR/delegated.json, so L0 sends the device its MACed heads ' +
    '(DEVICES.md "The ledger view"), and writes S to FILE (created with mode 0600) for the flasher, with the verdict key its ' +
    'verifier holds. A running kin broker reads the registration at its next head or boot request, without a restart. The device ' +
    'is named by CN or friendly name; one L0 does not know is refused (IDENTITY_UNKNOWN), one revoked, itself or under an ' +
    "ancestor's revocation, with DELEGATED_REVOKED, an expired one with DELEGATED_NOT_VALID, a device's home with HOME_NOT_L0. " +
    'A device registered before (flashed with another secret) is refused with DELEGATED_REGISTERED, and an existing FILE with ' +
    'STORAGE_EXISTS: --force replaces both (re-flashing; the old secret then gets no more heads). Delete FILE once the board holds S. ' +
    'Boards flashed at once from several shells each stay registered: delegated.json is rewritten under L0DIR/delegated.lock ' +
    '(STORAGE_BUSY when another registration holds it 10 s).',
  options: {
    home: { type: 'string', help: "L0's home (made by 'kin init')" },
    out: { type: 'string', help: 'the file for the flasher: the secret S and the verdict key, created 0600' },
    force: {
      type: 'boolean',
      help: "replace FILE when it exists, and the device's earlier registration (re-flashing)",
    },
  },
  async run(args) {
    const dir = requireString(args, 'home', "L0's home, e.g. --home ./l0")
    const query = args.positionals[0]
    if (query === undefined || args.positionals.length > 1)
      throw usageError(
        `give one device by CN or friendly name, e.g. 'kin delegate "garden gate" --home ./l0 --out gate.secret' (put a name with spaces in quotes)`,
      )
    const out = resolve(requireString(args, 'out', 'the file for the flasher, e.g. --out gate.secret'))
    const force = args.values.force === true
    // Cheapest refusals first: the home's kind and the output file, before the ledger is read.
    const home = new Home(dir)
    const config = home.readConfig()
    if (config.l0 !== true)
      throw new KinError(
        'HOME_NOT_L0',
        `${home.dir} is a device's home; delegated-tier devices are registered on L0's home (made by 'kin init'), whose broker sends them their heads`,
        { detail: { home: home.dir } },
      )
    refuseExistingFile(out, force, '--out')

    const { state } = await openHomeView(dir)
    const cn = findIdentity(state, query)
    if (cn === config.cn) throw usageError(`${cn} is L0 itself: only a device enrolled under it can be delegated-tier`)
    const binding = state.currentBinding(cn)!
    const invalid = state.invalidAt(binding, Math.floor(Date.now() / 1000))
    if (invalid?.code === 'REVOKED' || invalid?.code === 'ANCESTOR_REVOKED')
      throw new KinError(
        'DELEGATED_REVOKED',
        invalid.code === 'REVOKED'
          ? `${cn} ("${shown(binding.name)}") is revoked in L0's ledger: enroll the board again, then register the new CN`
          : `${cn} ("${shown(binding.name)}") stands under ${invalid.ancestorCn}, whose revocation covers it: enroll the board again`,
        { detail: { cn, reason: invalid.code } },
      )
    if (invalid !== undefined)
      throw new KinError(
        'DELEGATED_NOT_VALID',
        `${cn} ("${shown(binding.name)}") does not stand in L0's ledger (${invalid.code}): renew or enroll it again first`,
        { detail: { cn, reason: invalid.code } },
      )
    const registry = new DelegatedRegistry(home.dir)
    // Checked again under the registry's lock at the end: another kin delegate may register the same device meanwhile.
    if (registry.devices().has(cn) && !force)
      throw new KinError(
        'DELEGATED_REGISTERED',
        `${cn} ("${shown(binding.name)}") is already registered in ${registry.path} with the secret it was flashed with: give --force to flash it again with a new one`,
        { detail: { cn, path: registry.path } },
      )

    const secret = nodeCrypto.randomBytes(SECRET_BYTES)
    const { verdictKey, ledgerKey } = delegatedKeys(secret)
    // The file first: a registration whose secret nobody holds would leave L0 sending heads no board can read.
    writeSecretFile(out, secretFileText(config.fleet, cn, binding.name, secret, verdictKey), force)
    let replaced: boolean
    try {
      replaced = registry.register(cn, ledgerKey, { replace: force })
    } catch (err) {
      unlinkSync(out)
      throw err
    }
    const broker = lockHolder(home, BROKER_LOCK_FILE)
    emit(
      args.json,
      {
        registered: cn,
        name: binding.name,
        kind: binding.kind,
        registry: registry.path,
        out,
        replaced,
        brokerPid: broker ?? null,
      },
      () =>
        [
          `registered ${cn} ("${shown(binding.name)}", ${shown(binding.kind)}) as a delegated-tier device in ${registry.path}${replaced ? ' (its earlier secret no longer gets heads)' : ''}`,
          `flashing secret in ${out} (0600): write it to the board's Storage with the "storageWrite" line there, give the verifier its "verdictKey", then delete the file`,
          broker === undefined
            ? `start 'kin broker --home ${dir}' and L0 answers the board's boot request with its head`
            : `L0's running broker (pid ${broker}) reads the registration at the next head or boot request: no restart needed`,
        ].join('\n'),
    )
    return 0
  },
}
