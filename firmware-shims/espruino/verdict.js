/**
 * @module Delegated access verdicts: what an Espruino device checks instead of Ed25519 and RSA (docs/DEVICES.md
 * "What the Espruino agent does instead"). A nearby verifier that runs the full agent takes the access decision in
 * the device's name; the device accepts a verdict only with a valid HMAC-SHA256 under the key it shares with that
 * verifier, for itself, for a challenge it issued, unused and unexpired, and for the action it asked about.
 *
 * Wire format (ASCII, fields separated by "|", none may contain "|" or a line break; MAC = lowercase hex of
 * HMAC-SHA256(key, everything before the last "|")):
 *   request  kin-request-1|<device CN>|<nonce hex, 16 bytes>|<action>|<peer hint>|<device time>|<MAC>
 * The nonce is 4 bytes of a counter kept in Storage (big-endian), then 12 random bytes. E.hwRand() repeats its
 * sequence after every boot on some builds (Linux: an unseeded rand()) and is weak on some boards, so randomness
 * alone could issue a challenge again after a reboot and let a recorded ALLOW verdict be replayed; the counter is
 * written to flash before any value it covers is used, so no nonce repeats under one key, reboots included.
 *   verdict  kin-verdict-1|<device CN>|<nonce hex>|<peer CN>|<action>|<1 allow, 0 deny>|<code>|<verifier time>|<MAC>
 * The device publishes the request to the verifier's inbox topic and receives the verdict on its own.
 */

var REQUEST_TAG = 'kin-request-1';
var VERDICT_TAG = 'kin-verdict-1';
var NONCE_BYTES = 16;
var COUNTER_BYTES = 4;
var COUNTER_MAX = 4294967295;

function verdictError(code, message) {
  var e = new Error(message);
  e.code = code;
  return e;
}

function plainField(value) {
  return typeof value === 'string' && value.length > 0 && value.length <= 253 && !/[|\r\n]/.test(value);
}

/**
 * A counter that survives reboots: Storage file `name` holds a ceiling, reserved `step` values at a time and
 * written (Storage.write returns true once it is in flash) before any value below it is handed out. A reboot
 * skips what was reserved and unused; a value is never handed out twice. Flash sees one write per `step` nonces.
 */
function StoredCounter(store, name, step) {
  var saved = store.read(name);
  var value = saved === undefined ? 0 : parseInt(saved, 10);
  if (!(value >= 0 && value <= COUNTER_MAX))
    throw verdictError('STORAGE_DAMAGED', 'nonce counter ' + name + ' holds "' + saved + '"');
  this.store = store;
  this.name = name;
  this.step = step || 16;
  this.value = value;
  this.ceiling = value;
}

StoredCounter.prototype.next = function () {
  if (this.value >= this.ceiling) {
    var ceiling = Math.min(this.value + this.step, COUNTER_MAX + 1);
    if (this.value > COUNTER_MAX) throw verdictError('STORAGE_IO', 'nonce counter ' + this.name + ' is used up');
    if (this.store.write(this.name, String(ceiling)) !== true)
      throw verdictError('STORAGE_IO', 'nonce counter ' + this.name + ' was not written');
    this.ceiling = ceiling;
  }
  this.value++;
  return this.value - 1;
};

function counterBytes(n) {
  var out = new Uint8Array(COUNTER_BYTES);
  for (var i = COUNTER_BYTES - 1; i >= 0; i--) {
    out[i] = n % 256;
    n = Math.floor(n / 256);
  }
  return out;
}

/**
 * The device's side. `crypto` is espruinoCrypto(), `clock` espruinoClock(); `key` the 32 bytes shared with the
 * verifier (written over USB when the device is flashed); `ttl` how many seconds a challenge stays open;
 * `counter` the nonce counter, by default a StoredCounter in require("Storage") file "kin-nonce". The key's HMAC
 * pads are computed here, once. With `ledger` (ledger.js openDelegatedLedger) and `verifier` (its CN), an ALLOW
 * that contradicts a revocation the device holds is refused (checkRevocations).
 */
function DelegatedVerdicts(options) {
  if (!plainField(options.self)) throw verdictError('BAD_ARGUMENT', 'self must be the device CN');
  if (!(options.key instanceof Uint8Array) || options.key.length < 32)
    throw verdictError('BAD_ARGUMENT', 'key must be at least 32 bytes');
  this.crypto = options.crypto;
  this.clock = options.clock;
  this.keyed = options.crypto.hmacKey(options.key);
  this.counter = options.counter || new StoredCounter(require('Storage'), 'kin-nonce');
  this.self = options.self;
  this.ttl = options.ttl || 30;
  this.pending = {};
  this.ledger = options.ledger;
  this.verifier = options.verifier;
}

DelegatedVerdicts.prototype.mac = function (text) {
  return this.keyed.hex(text);
};

/** A fresh challenge for `action` (and a hint who asks): the request line to publish to the verifier. */
DelegatedVerdicts.prototype.request = function (action, peerHint) {
  if (!plainField(action)) throw verdictError('BAD_ARGUMENT', 'action must be a plain word');
  var hint = peerHint === undefined ? '-' : String(peerHint);
  if (!plainField(hint)) throw verdictError('BAD_ARGUMENT', 'peer hint must not hold "|" or line breaks');
  var count = this.counter.next();
  var nonce =
    this.crypto.toHex(counterBytes(count)) + this.crypto.toHex(this.crypto.randomBytes(NONCE_BYTES - COUNTER_BYTES));
  var now = this.clock.now();
  this.pending[nonce] = { action: action, issued: now };
  var body = [REQUEST_TAG, this.self, nonce, action, hint, String(now)].join('|');
  return { nonce: nonce, line: body + '|' + this.mac(body) };
};

/**
 * Checks a verdict line. Returns { allow, code, peer, action, time } for a verdict that passes every check, and
 * throws otherwise: VERDICT_FORMAT, VERDICT_MAC (not from the verifier), VERDICT_NOT_MINE, VERDICT_UNKNOWN_CHALLENGE
 * (never issued, or already used: a replay), VERDICT_EXPIRED, VERDICT_ACTION, VERDICT_REVOKED. A challenge is used up by the first
 * verdict that names it with a valid MAC, allow or deny.
 */
DelegatedVerdicts.prototype.accept = function (line) {
  var text = typeof line === 'string' ? line : '';
  var fields = text.split('|');
  if (fields.length !== 9 || fields[0] !== VERDICT_TAG)
    throw verdictError('VERDICT_FORMAT', 'not a kin-verdict-1 line');
  var body = fields.slice(0, 8).join('|');
  if (!this.crypto.sameSecret(this.mac(body), fields[8]))
    throw verdictError('VERDICT_MAC', "the verdict is not MACed with this device's verifier key");
  if (fields[1] !== this.self) throw verdictError('VERDICT_NOT_MINE', 'the verdict is for ' + fields[1]);
  var challenge = this.pending[fields[2]];
  if (challenge === undefined) throw verdictError('VERDICT_UNKNOWN_CHALLENGE', 'no open challenge ' + fields[2]);
  delete this.pending[fields[2]];
  if (this.clock.now() - challenge.issued > this.ttl) throw verdictError('VERDICT_EXPIRED', 'the challenge expired');
  if (fields[4] !== challenge.action)
    throw verdictError(
      'VERDICT_ACTION',
      'the verdict is for "' + fields[4] + '", the challenge for "' + challenge.action + '"'
    );
  if (fields[5] !== '1' && fields[5] !== '0') throw verdictError('VERDICT_FORMAT', 'allow must be 1 or 0');
  var time = parseInt(fields[7], 10);
  if (!this.clock.trusted() && this.clock.adopt(time)) this.pending = {};
  if (fields[5] === '1' && this.ledger !== undefined) this.checkRevocations(fields[3]);
  return { allow: fields[5] === '1', code: fields[6], peer: fields[3], action: fields[4], time: time };
};

/**
 * An ALLOW for `peer` that contradicts a revocation the ledger view (ledger.js) holds is refused VERDICT_REVOKED: the
 * peer or an ancestor of it revoked, this device itself, or the verifier that signed the verdict.
 */
DelegatedVerdicts.prototype.checkRevocations = function (peer) {
  var why = this.ledger.revocationOf(peer) || this.ledger.revocationOf(this.self);
  if (why === undefined && this.verifier !== undefined) why = this.ledger.revocationOf(this.verifier);
  if (why !== undefined)
    throw verdictError('VERDICT_REVOKED', 'an ALLOW that contradicts a revocation this device holds: ' + why);
};

/** Drops challenges older than the lifetime (call now and then; accept() checks expiry itself). */
DelegatedVerdicts.prototype.expire = function () {
  var now = this.clock.now();
  var keep = {};
  for (var nonce in this.pending) {
    if (now - this.pending[nonce].issued <= this.ttl) keep[nonce] = this.pending[nonce];
  }
  this.pending = keep;
};

exports.DelegatedVerdicts = DelegatedVerdicts;
exports.StoredCounter = StoredCounter;
exports.REQUEST_TAG = REQUEST_TAG;
exports.VERDICT_TAG = VERDICT_TAG;
