/** @module The examples `kin <command> --help` shows, one table for every command, keyed by the command's name. */

/** Example command lines, each with what it does, per command name. */
export const COMMAND_EXAMPLES: Readonly<Record<string, ReadonlyArray<readonly [string, string]>>> = {
  init: [
    [
      'kin init --home ./l0 --fleet smith.home.arpa',
      "create L0: the fleet root CA, L0's identity and the genesis event",
    ],
  ],
  broker: [
    ['kin broker --home ./l0 --port 8883', "run L0's broker, fleet CA and miner on 127.0.0.1:8883"],
    [
      'kin broker --home ./l0 --host 0.0.0.0 --name l0.home.arpa --address 192.168.1.10',
      "on every address; L0's certificates name l0.home.arpa and 192.168.1.10 for mosquitto_pub -h and other clients",
    ],
    ['kin broker --home ./l0 --export-mosquitto ./mosquitto', 'write a Mosquitto configuration, ACL and CRL instead'],
  ],
  invite: [
    [
      'kin invite --home ./l0 --broker mqtts://127.0.0.1:8883 --role member --name "owner\'s phone"',
      'a one-time code for a member',
    ],
    [
      'kin invite --home ./phone --role guest --valid 3d --name "mother\'s phone"',
      'a guest for three days, invited by the phone (its broker comes from its config)',
    ],
  ],
  enroll: [
    [
      'kin enroll --home ./phone --code abcd-efgh-ijkl-mnop --broker mqtts://127.0.0.1:8883',
      'enroll this device with the code its parent printed',
    ],
  ],
  serve: [
    ['kin serve --home ./lock --port 9443', "answer access requests over mutual TLS and follow L0's ledger"],
    ['kin serve --home ./lock --port 9443 --offline', 'the same cut off from L0: requesters send the proofs it lacks'],
    [
      'kin serve --home ./lock --port 9443 --probe 30s',
      'behind a NATS cluster: a session a broker reload left deaf is found within 30 s',
    ],
  ],
  repair: [
    ['kin repair --home ./phone', 'rebuild a damaged ledger from L0; the damaged file is kept as ledger.damaged-TIME'],
    ['kin repair --home ./phone --json', 'the same, with the dropped events as JSON'],
  ],
  access: [
    ['kin access --home ./phone --target 127.0.0.1:9443 --action unlock', 'ask the lock to unlock, over mutual TLS'],
    ['kin access --home ./phone --inbox <lock CN> --action unlock', 'ask a device without TLS over its MQTT inbox'],
  ],
  check: [
    ['kin check --home ./lock --peer guest.pem --action unlock', 'decide on a certificate, as the lock would'],
    [
      'kin check --home ./lock --peer guest.pem --bundle guest.bundle',
      'decide offline with the proofs the guest carries',
    ],
  ],
  renew: [
    ['kin renew --home ./phone', 'a fresh certificate for the same key, before the current one expires'],
    [
      'kin renew --home ./lock --json',
      'the same, answering with the new serial, validity and the head that recorded it',
    ],
  ],
  rekey: [
    [
      'kin rekey --home ./phone',
      'a fresh TLS key of the same type and a certificate for it; the old key is refused from now on',
    ],
    [
      'kin rekey --home ./lock --key rsa2048 --json',
      'change to an RSA-2048 key, answering with the new serial and the rekey event',
    ],
    [
      'kin rekey "front-door lock" --home ./phone',
      'after the lock was stolen and revoked: a one-time code that gives its name, role and place to a replacement',
    ],
    [
      'kin rekey <lock CN> --home ./phone --ttl 30m --json',
      "the same by CN, the code as JSON; the replacement runs 'kin enroll --home ./new-lock --code CODE' and gets the lock's CN",
    ],
  ],
  revoke: [
    [
      'kin revoke --home ./laptop <CN> --reason compromised --subtree',
      'revoke a stolen device and everything it enrolled',
    ],
    ['kin revoke --home ./phone <guest CN> --reason retired', "end a guest's stay"],
  ],
  sync: [
    ['kin sync --home ./lock', "catch up with L0's ledger once"],
    ['kin sync --home ./lock --follow', 'keep following it until interrupted'],
  ],
  'policy show': [
    [
      'kin policy show --home ./lock',
      'the policy in force on the lock: each layer, highest first, and the limits that result',
    ],
    ['kin policy show --home ./phone "front-door lock" --json', 'the same for another device the phone knows, as JSON'],
  ],
  'policy set': [
    [
      'kin policy set --home ./phone "front-door lock" --file lock-policy.json',
      "sign the lock's policy (e.g. guests unlock 08:00–20:00 UTC) and hand it to L0",
    ],
  ],
  report: [
    [
      'kin report --home ./phone --out fleet.html',
      'draw the fleet this phone knows: tree, ledger timeline, heads and its audited decisions',
    ],
    [
      'kin report --home ./l0 --out fleet.html --force',
      "the same from L0's home, with every head the miner signed, replacing an older page",
    ],
  ],
  status: [
    [
      'kin status --home ./lock',
      'who this device is, when its certificate expires, its head, broker and agent; exit 1 when it was revoked',
    ],
    ['kin status --home ./lock --json', 'the same as one JSON document, times in seconds'],
  ],
  devices: [['kin devices --home ./phone', 'the fleet as a tree with names, roles, expiry and revocations']],
  show: [
    [
      'kin show "front door" --home ./phone',
      'one device by its friendly name: lineage up to L0, certificates, revocations, policies',
    ],
    ['kin show <CN> --home ./phone --json', 'the same by CN, as JSON'],
  ],
  delegate: [
    [
      'kin delegate "garden gate" --home ./l0 --out gate.secret',
      'at flashing: register the Espruino board with L0 and write its secret for the flasher (0600)',
    ],
    ['kin delegate <CN> --home ./l0 --out gate.secret --force --json', 'flash it again with a new secret, as JSON'],
  ],
  'ledger show': [['kin ledger show --home ./lock', "every event of the home's ledger, one line each"]],
  'ledger verify': [
    ['kin ledger verify --home ./lock', 'check every event of the ledger again (exit 1 when one fails)'],
  ],
  'ledger bundle': [
    ['kin ledger bundle <guest CN> --home ./phone --out guest.bundle', 'the proofs a guest carries to an offline lock'],
    [
      'kin ledger bundle <guest CN> --home ./phone --out guest.bundle --force',
      'write it again over the bundle of an earlier run',
    ],
  ],
  'sim house': [
    ['kin sim house --report house.html', 'play the house on a live fleet and draw it'],
    ['kin sim house --keep ./house --force', 'keep the homes in ./house, even though it holds files already'],
  ],
  'sim attacks': [['kin sim attacks --json', 'run every attack and control; one JSON line per row']],
  'sim fleet': [
    ['kin sim fleet --devices 100 --kill-broker --partition 5', '100 devices, L0 killed mid-run, five partitioned'],
    [
      'kin sim fleet --devices 10000 --depth 2 --fanout 200',
      '10,000 devices: 49 members with the whole ledger, the leaves on the bundle tier',
    ],
  ],
}
