/**
 * @module Espruino crypto shim: SHA-256 from Espruino's native crypto library (require("crypto").SHA256, mbedTLS),
 * HMAC-SHA256 (RFC 2104) built on it with the key's pads computed once (hmacKey), constant-time comparison, and
 * random bytes from E.hwRand().
 *
 * Not a full CryptoProvider (agent/ports/platform.ts): Espruino has no native Ed25519, and tweetnacl in Espruino's
 * interpreter takes tens of seconds per signature check, so this device does not verify ledger signatures itself
 * (docs/DEVICES.md "What the Espruino agent does instead"). Its library is in Espruino Pico and Espruino WiFi
 * firmware; other boards need a build with USE_CRYPTO.
 */

var HMAC_BLOCK = 64;

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  var out = new Uint8Array(data.length);
  for (var i = 0; i < data.length; i++) out[i] = data.charCodeAt(i) & 255;
  return out;
}

function sha256With(hash, data) {
  return new Uint8Array(hash(toBytes(data)));
}

function binaryOf(data) {
  if (typeof data === 'string') return data;
  if (typeof E !== 'undefined' && typeof E.toString === 'function') return E.toString(data);
  var s = '';
  for (var i = 0; i < data.length; i++) s += String.fromCharCode(data[i]);
  return s;
}

/**
 * HMAC-SHA256 (RFC 2104) with the key's two padded blocks computed once, as binary strings the native hash takes
 * as they are. Per message that leaves two native hashes and one 32-character conversion; deriving the pads on
 * every call cost about 20 times more in Espruino's interpreter (docs/DEVICES.md "Budget").
 */
function KeyedMac(hash, key) {
  var k = toBytes(key);
  if (k.length > HMAC_BLOCK) k = sha256With(hash, k);
  var inner = '';
  var outer = '';
  for (var i = 0; i < HMAC_BLOCK; i++) {
    var b = i < k.length ? k[i] : 0;
    inner += String.fromCharCode(b ^ 0x36);
    outer += String.fromCharCode(b ^ 0x5c);
  }
  this.hash = hash;
  this.inner = inner;
  this.outer = outer;
}

KeyedMac.prototype.mac = function (message) {
  var innerDigest = binaryOf(new Uint8Array(this.hash(this.inner + binaryOf(message))));
  return new Uint8Array(this.hash(this.outer + innerDigest));
};

KeyedMac.prototype.hex = function (message) {
  return toHex(this.mac(message));
};

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  var diff = 0;
  for (var i = 0; i < a.length; i++) diff = diff | (a[i] ^ b[i]);
  return diff === 0;
}

function byteHex(b) {
  return (b < 16 ? '0' : '') + b.toString(16);
}

/** Lowercase hex, four bytes per step (each step costs the interpreter about as much as one byte would). */
function toHex(bytes) {
  var view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  var out = '';
  var i = 0;
  for (; i + 4 <= bytes.length; i += 4) out += ('0000000' + view.getUint32(i, false).toString(16)).slice(-8);
  for (; i < bytes.length; i++) out += byteHex(bytes[i]);
  return out;
}

/**
 * Whether two strings (a MAC computed here and one received) are equal, in time that says nothing about where they
 * differ: it compares SHA-256 digests of both, so a difference anywhere changes the whole digest (the double-HMAC
 * comparison, with two native hashes instead of an interpreted loop per character).
 */
function sameSecret(hash, a, b) {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  return binaryOf(new Uint8Array(hash(a))) === binaryOf(new Uint8Array(hash(b)));
}

function fromHex(text) {
  if (typeof text !== 'string' || text.length % 2 !== 0 || !/^[0-9a-f]*$/.test(text)) return undefined;
  var out = new Uint8Array(text.length / 2);
  for (var i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
  return out;
}

/**
 * The crypto shim. `hash` and `random32` default to Espruino's require("crypto").SHA256 and E.hwRand(); tests pass
 * stand-ins. E.hwRand() reads noise from the chip (the nRF52's hardware generator on Puck.js); its quality is the
 * board's.
 */
function espruinoCrypto(hash, random32) {
  var sha = hash || require('crypto').SHA256;
  var rand =
    random32 ||
    function () {
      return E.hwRand();
    };
  return {
    name: 'espruino',
    sha256: function (data) {
      return sha256With(sha, data);
    },
    hmacSha256: function (key, message) {
      return new KeyedMac(sha, key).mac(message);
    },
    hmacKey: function (key) {
      return new KeyedMac(sha, key);
    },
    equalBytes: equalBytes,
    sameSecret: function (a, b) {
      return sameSecret(sha, a, b);
    },
    toHex: toHex,
    fromHex: fromHex,
    toBytes: toBytes,
    randomBytes: function (length) {
      var out = new Uint8Array(length);
      var r = 0;
      for (var i = 0; i < length; i++) {
        if (i % 4 === 0) r = rand();
        out[i] = (r >>> ((i % 4) * 8)) & 255;
      }
      return out;
    }
  };
}

exports.espruinoCrypto = espruinoCrypto;
