/**
 * @module The delegated tier's view of the ledger (DESIGN.md "Small devices: three tiers", PROTOCOL.md §11.6): heads L0
 * sends this device MACed under the ledger key it shares with L0, with RFC 9162 inclusion proofs of the events about
 * the device and its ancestors. Checked with SHA-256 only, kept in Storage, and asked by verdict.js whether a peer
 * is revoked.
 *
 * Message (binary, big-endian; broker/delegated-wire.ts writes it):
 *   1 ‖ treeSize(4) ‖ root(32) ‖ headTime(4) ‖ count(1) ‖ entries ‖ HMAC-SHA256(ledger key, all before)(32)
 *   entry = leafIndex(4) ‖ eventLength(2) ‖ event ‖ pathLength(1) ‖ path hashes(32 each)
 * Checked cheapest first: size (DELEGATED_OVERSIZE), shape (DELEGATED_FORMAT), MAC (DELEGATED_MAC), the head
 * against the one held (DELEGATED_HEAD_OLD: fewer events; DELEGATED_HEAD_FORK: as many, another root), then each
 * entry: its proof leads to the head's root (DELEGATED_PROOF), it is an authorize, revoke or policy event
 * (DELEGATED_FORMAT), about this device or an ancestor it knows (DELEGATED_NOT_LINEAGE). A message is taken whole or
 * not at all. Ancestors are learnt from authorize events, so L0 sends the device's own authorize first, then its
 * parent's, and so on up.
 *
 * Events are read at fixed offsets (PROTOCOL.md §4.1: 0x88, version, type, subject and issuer as 10-byte strings):
 * an event proven in the tree was validated whole by the miner, so its shape is the ledger's.
 *
 * Storage: one text line per record in the AppendFile "kin-ledger" (storage.js): "h <size> <root> <time>" for the
 * head, "e <id> <type> <subject> <issuer> <subtree>" per event (labels and the root in base64, id its first 9 bytes
 * in base64): btoa is native, where a hex loop cost the interpreter about 65 µs a byte.
 * Once the file passes COMPACT_BYTES it is rewritten with the head and the events only.
 */

var VERSION = 1;
var MAX_BYTES = 2048;
var HEADER_BYTES = 42;
var MAC_BYTES = 32;
var HASH_BYTES = 32;
var MAX_ENTRIES = 8;
var MAX_DEPTH = 16;
var TYPE_AUTHORIZE = 1;
var TYPE_REVOKE = 3;
var TYPE_POLICY = 5;
var BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
var VERDICT_KEY_LABEL = 'kinship/delegated/verdict/v1';
var LEDGER_KEY_LABEL = 'kinship/delegated/ledger/v1';
var RECORDS_FILE = 'kin-ledger';
var COMPACT_BYTES = 1024;

function ledgerError(code, message) {
  var e = new Error(message);
  e.code = code;
  return e;
}

function binaryOf(data) {
  if (typeof data === 'string') return data;
  if (typeof E !== 'undefined' && typeof E.toString === 'function') return E.toString(data);
  var s = '';
  for (var i = 0; i < data.length; i++) s += String.fromCharCode(data[i]);
  return s;
}

function digest(hash, text) {
  return binaryOf(new Uint8Array(hash(text)));
}

function u32(s, at) {
  return ((s.charCodeAt(at) * 256 + s.charCodeAt(at + 1)) * 256 + s.charCodeAt(at + 2)) * 256 + s.charCodeAt(at + 3);
}

/** The label of CN `cn` (<16 base32 characters>.<fleet>) as base64 of its 10 bytes, else undefined. */
function labelKey(cn) {
  if (typeof cn !== 'string' || cn.indexOf('.') !== 16) return undefined;
  var value = 0;
  var bits = 0;
  var out = '';
  for (var i = 0; i < 16; i++) {
    var v = BASE32.indexOf(cn.charAt(i));
    if (v < 0) return undefined;
    value = value * 32 + v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      var b = Math.floor(value / (1 << bits));
      out += String.fromCharCode(b);
      value = value - b * (1 << bits);
    }
  }
  return btoa(out);
}

/** Where the CBOR unsigned integer at `at` ends, else -1 (PROTOCOL.md §2: arguments of 0, 1, 2 or 4 bytes). */
function uintEnd(s, at) {
  var h = s.charCodeAt(at);
  if (h < 24) return at + 1;
  if (h === 24) return at + 2;
  if (h === 25) return at + 3;
  if (h === 26) return at + 5;
  return -1;
}

/**
 * Type, subject, issuer and (revoke) subtree flag of an event, else undefined. A revoke's body follows its two links
 * and its time: [reason, effective, subtree].
 */
function readEvent(s) {
  if (
    s.length < 26 ||
    s.charCodeAt(0) !== 0x88 ||
    s.charCodeAt(1) !== 1 ||
    s.charCodeAt(3) !== 0x4a ||
    s.charCodeAt(14) !== 0x4a
  )
    return undefined;
  var type = s.charCodeAt(2);
  var subtree = false;
  if (type === TYPE_REVOKE) {
    if (s.charCodeAt(25) !== 0x82 || s.charCodeAt(26) !== 0x58 || s.charCodeAt(60) !== 0x58) return undefined;
    var at = uintEnd(s, 94);
    if (at < 0 || s.charCodeAt(at) !== 0x83) return undefined;
    at = uintEnd(s, at + 2);
    if (at < 0) return undefined;
    subtree = s.charCodeAt(at) === 0xf5;
  }
  return { type: type, subject: btoa(s.substr(4, 10)), issuer: btoa(s.substr(15, 10)), subtree: subtree };
}

/** RFC 9162 §2.1.3.2: the root that `path` leads to from leaf hash `leaf` at `index` of `size`, else undefined. */
function rootOf(hash, leaf, index, size, path) {
  if (index >= size) return undefined;
  var fn = index;
  var sn = size - 1;
  var r = leaf;
  for (var i = 0; i < path.length; i += HASH_BYTES) {
    if (sn === 0) return undefined;
    var p = path.substr(i, HASH_BYTES);
    if (fn % 2 === 1 || fn === sn) {
      r = digest(hash, '\x01' + p + r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = fn / 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = digest(hash, '\x01' + r + p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : undefined;
}

/** The two keys derived from the secret written at flashing: { verdictKey, ledgerKey } (broker/delegated-wire.ts). */
function delegatedKeys(crypto, secret) {
  return {
    verdictKey: crypto.hmacSha256(secret, VERDICT_KEY_LABEL),
    ledgerKey: crypto.hmacSha256(secret, LEDGER_KEY_LABEL)
  };
}

/** The topics of device `cn`: L0's messages (`head`) and the boot request (`req`), kin/<fid>/ledger/delegated/<label>/…. */
function delegatedTopics(fleet, cn) {
  var base = 'kin/' + fleet.split('.').join('_') + '/ledger/delegated/' + cn.slice(0, cn.length - fleet.length - 1);
  return { head: base + '/head', req: base + '/req' };
}

function DelegatedLedger(options, file) {
  this.self = labelKey(options.self);
  if (this.self === undefined) throw ledgerError('BAD_ARGUMENT', 'self must be the device CN');
  this.hash = options.hash || require('crypto').SHA256;
  this.crypto = options.crypto;
  this.keyed = options.crypto.hmacKey(options.key);
  this.file = file;
  this.head = undefined;
  this.events = {};
  this.parents = {};
  this.revoked = {};
  this.queue = Promise.resolve();
}

DelegatedLedger.prototype.apply = function (line) {
  var f = line.split(' ');
  if (f[0] === 'h' && f.length === 4) {
    this.head = { size: parseInt(f[1], 10), root: f[2], time: parseInt(f[3], 10) };
    return;
  }
  if (f[0] !== 'e' || f.length !== 6) throw ledgerError('STORAGE_DAMAGED', RECORDS_FILE + ' holds "' + line + '"');
  this.events[f[1]] = line;
  var type = parseInt(f[2], 10);
  if (type === TYPE_AUTHORIZE && f[3] !== f[4]) this.parents[f[3]] = f[4];
  if (type === TYPE_REVOKE) this.revoked[f[3]] = f[5] === '1' ? 2 : Math.max(this.revoked[f[3]] || 0, 1);
};

DelegatedLedger.prototype.load = function (bytes) {
  if (bytes.length === 0) return;
  var lines = binaryOf(bytes).split('\n');
  for (var i = 0; i < lines.length; i++) if (lines[i].length > 0) this.apply(lines[i]);
};

/** Whether `label` is this device or an ancestor it knows, looking in `pending` (this message's authorizes) first. */
DelegatedLedger.prototype.inLineage = function (label, pending) {
  var at = this.self;
  for (var i = 0; at !== undefined && i < MAX_DEPTH; i++) {
    if (at === label) return true;
    at = pending[at] !== undefined ? pending[at] : this.parents[at];
  }
  return false;
};

/** Checks message `s` (a binary string) whole; returns what to keep, or throws a coded error. */
DelegatedLedger.prototype.check = function (s) {
  if (s.length > MAX_BYTES)
    throw ledgerError('DELEGATED_OVERSIZE', 'a message of ' + s.length + ' bytes exceeds ' + MAX_BYTES);
  if (s.length < HEADER_BYTES + MAC_BYTES || s.charCodeAt(0) !== VERSION)
    throw ledgerError('DELEGATED_FORMAT', 'not a version 1 delegated head message');
  var end = s.length - MAC_BYTES;
  if (!this.crypto.sameSecret(binaryOf(this.keyed.mac(s.substr(0, end))), s.substr(end)))
    throw ledgerError('DELEGATED_MAC', "the message is not MACed with this device's ledger key");
  var size = u32(s, 1);
  var root = s.substr(5, HASH_BYTES);
  var rootKey = btoa(root);
  var head = this.head;
  if (head !== undefined && size < head.size)
    throw ledgerError('DELEGATED_HEAD_OLD', 'a head of ' + size + ' events; this device holds one of ' + head.size);
  if (head !== undefined && size === head.size && rootKey !== head.root)
    throw ledgerError('DELEGATED_HEAD_FORK', 'another root for the ' + size + ' events this device holds a head of');
  var count = s.charCodeAt(HEADER_BYTES - 1);
  if (count > MAX_ENTRIES) throw ledgerError('DELEGATED_FORMAT', count + ' entries');
  var at = HEADER_BYTES;
  var pending = {};
  var lines = [];
  for (var n = 0; n < count; n++) {
    if (at + 6 > end) throw ledgerError('DELEGATED_FORMAT', 'entry ' + n + ' is cut short');
    var index = u32(s, at);
    var pathAt = at + 6 + s.charCodeAt(at + 4) * 256 + s.charCodeAt(at + 5);
    if (pathAt + 1 > end) throw ledgerError('DELEGATED_FORMAT', 'entry ' + n + ' is cut short');
    var next = pathAt + 1 + s.charCodeAt(pathAt) * HASH_BYTES;
    if (next > end) throw ledgerError('DELEGATED_FORMAT', 'entry ' + n + ' is cut short');
    var event = s.substr(at + 6, pathAt - at - 6);
    var id = digest(this.hash, event);
    if (
      rootOf(this.hash, digest(this.hash, '\x00' + id), index, size, s.substr(pathAt + 1, next - pathAt - 1)) !== root
    ) {
      throw ledgerError(
        'DELEGATED_PROOF',
        'entry ' + n + ": the proof does not lead from this event to the head's root"
      );
    }
    var e = readEvent(event);
    if (e === undefined || (e.type !== TYPE_AUTHORIZE && e.type !== TYPE_REVOKE && e.type !== TYPE_POLICY))
      throw ledgerError('DELEGATED_FORMAT', 'entry ' + n + ' is not an authorize, revoke or policy event');
    if (!this.inLineage(e.subject, pending))
      throw ledgerError(
        'DELEGATED_NOT_LINEAGE',
        'entry ' + n + ' is about ' + e.subject + ', not this device or an ancestor it knows'
      );
    if (e.type === TYPE_AUTHORIZE && e.subject !== e.issuer) pending[e.subject] = e.issuer;
    lines.push(['e', btoa(id.substr(0, 9)), e.type, e.subject, e.issuer, e.subtree ? 1 : 0].join(' '));
    at = next;
  }
  if (at !== end) throw ledgerError('DELEGATED_FORMAT', 'bytes after the last entry');
  return { head: ['h', size, rootKey, u32(s, 5 + HASH_BYTES)].join(' '), size: size, events: lines };
};

/** Takes a checked message: its head and its new events, written to Storage before they count. */
DelegatedLedger.prototype.keep = function (checked) {
  var self = this;
  var text = '';
  var added = 0;
  if (this.head === undefined || checked.size > this.head.size) text += checked.head + '\n';
  for (var i = 0; i < checked.events.length; i++) {
    var line = checked.events[i];
    if (this.events[line.split(' ')[1]] !== undefined) continue;
    text += line + '\n';
    added++;
  }
  if (text.length === 0) return Promise.resolve({ treeSize: checked.size, added: 0 });
  return this.file
    .append(this.crypto.toBytes(text))
    .then(function () {
      var lines = text.split('\n');
      for (var j = 0; j < lines.length; j++) if (lines[j].length > 0) self.apply(lines[j]);
      return self.file.size();
    })
    .then(function (bytes) {
      if (bytes > COMPACT_BYTES) return self.compact();
    })
    .then(function () {
      return { treeSize: checked.size, added: added };
    });
};

DelegatedLedger.prototype.compact = function () {
  var head = this.head;
  var text = ['h', head.size, head.root, head.time].join(' ') + '\n';
  for (var id in this.events) text += this.events[id] + '\n';
  return this.file.replace(this.crypto.toBytes(text));
};

/**
 * Checks a message from L0 (bytes or a binary string) and keeps what it proves: resolves with { treeSize, added }
 * once written, rejects with the coded refusal (nothing kept). Messages are taken one after the other, each checked
 * against what the ones before it left: a message may need the ancestors the previous one taught.
 */
DelegatedLedger.prototype.receive = function (payload) {
  var self = this;
  var text = binaryOf(payload);
  var run = this.queue.then(function () {
    return self.keep(self.check(text));
  });
  this.queue = run.then(undefined, function () {});
  return run;
};

/**
 * Why device `cn` must not be let in, if a revocation this device holds says so: it was revoked, or an ancestor of
 * it that this device knows was revoked with its subtree. Undefined otherwise.
 */
DelegatedLedger.prototype.revocationOf = function (cn) {
  var label = labelKey(cn);
  if (label === undefined) return undefined;
  if (this.revoked[label] !== undefined) return cn + ' is revoked';
  var at = this.parents[label];
  for (var i = 0; at !== undefined && i < MAX_DEPTH; i++) {
    if (this.revoked[at] === 2) return 'an ancestor of ' + cn + ' (label ' + at + ') is revoked with its subtree';
    at = this.parents[at];
  }
  return undefined;
};

/** The boot request: the size of the head held (0 for none). */
DelegatedLedger.prototype.request = function () {
  return 'kin-ledger-req-1 ' + (this.head === undefined ? 0 : this.head.size);
};

/**
 * Follows L0 on an open transport session: subscribes to this device's head topic, asks for the latest head (boot),
 * and hands every result to onResult(error, { treeSize, added }).
 */
DelegatedLedger.prototype.follow = function (session, fleet, cn, onResult) {
  var self = this;
  var topics = delegatedTopics(fleet, cn);
  session.onMessage(function (topic, payload) {
    if (topic !== topics.head) return;
    self.receive(payload).then(
      function (r) {
        onResult(undefined, r);
      },
      function (e) {
        onResult(e, undefined);
      }
    );
  });
  return session.subscribe([topics.head]).then(function () {
    return session.publish(topics.req, self.request());
  });
};

/**
 * Opens the ledger view of device options.self: options.key is the ledger key (delegatedKeys), options.crypto
 * espruinoCrypto(), options.storage espruinoStorage(); options.hash defaults to require("crypto").SHA256. Resolves
 * once what Storage holds is loaded.
 */
function openDelegatedLedger(options) {
  return options.storage.openAppendFile(RECORDS_FILE).then(function (file) {
    var ledger = new DelegatedLedger(options, file);
    return file.read().then(function (bytes) {
      ledger.load(bytes);
      return ledger;
    });
  });
}

exports.openDelegatedLedger = openDelegatedLedger;
exports.delegatedKeys = delegatedKeys;
exports.delegatedTopics = delegatedTopics;
exports.labelKey = labelKey;
exports.MAX_BYTES = MAX_BYTES;
