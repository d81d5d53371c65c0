/**
 * @module Espruino storage shim: the ledger's append-only file on Espruino's Storage (StorageFile), with the
 * semantics of agent/ports/platform.ts AppendFile (append, read, replace; appends acknowledged once written).
 *
 * Written in the JavaScript Espruino runs (docs/DEVICES.md "Espruino's language"): var, function declarations
 * placed before their first top-level use, no comments inside function bodies.
 *
 * Format. StorageFile detects the end of a file by erased flash (0xFF), so raw CBOR, which may hold 0xFF, cannot be
 * stored as it is. Each append becomes one line: base64 of the bytes, then "\n". A last line without "\n" is an
 * append cut by a power loss (a torn tail): read() drops it. Flash cannot take it back, so the next append first
 * seals it with "!\n" ("!" is no base64 character) and later reads skip that sealed line. Any other line that is
 * not base64 is damage: opening rejects with code STORAGE_DAMAGED and the line's byte offset, it never skips it.
 *
 * Replace. Storage has no rename, so a file lives in one of two StorageFiles, NAME.a and NAME.b. replace() erases
 * the other one, writes the new content there, and only then a last line "#gen N" with a generation number one
 * higher than the current one; appends follow that line. open picks the file with the highest complete
 * generation and erases the other. A replace cut short leaves no "#gen" line in its file, which open ignores.
 */

var GEN_PREFIX = '#gen ';
var SEALED_TAIL = '!\n';

function storageError(code, message) {
  var e = new Error(message);
  e.code = code;
  return e;
}

function bytesToBinary(bytes) {
  var s = '';
  for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

function binaryToBytes(text) {
  var out = new Uint8Array(text.length);
  for (var i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 255;
  return out;
}

/**
 * Espruino's RegExp has no {m,n} and no "?" (it reads them as plain characters, so a pattern using them never
 * matches): the up to two "=" of padding are stripped by hand and the rest checked with "*" only.
 */
function isBase64Line(line) {
  if (line.length === 0 || line.length % 4 !== 0) return false;
  var end = line.length;
  if (line.charAt(end - 1) === '=') end--;
  if (line.charAt(end - 1) === '=') end--;
  return /^[A-Za-z0-9+\/]*$/.test(line.slice(0, end));
}

function readLines(file) {
  var lines = [];
  var line = file.readLine();
  while (line !== undefined) {
    lines.push(line);
    line = file.readLine();
  }
  return lines;
}

function slotState(Storage, name) {
  var file = Storage.open(name, 'r');
  var lines = readLines(file);
  var gen = -1;
  var genAt = -1;
  for (var i = 0; i < lines.length; i++) {
    if (lines[i].indexOf(GEN_PREFIX) === 0 && lines[i].charAt(lines[i].length - 1) === '\n') {
      gen = parseInt(lines[i].slice(GEN_PREFIX.length), 10);
      genAt = i;
    }
  }
  return { name: name, lines: lines, gen: gen, genAt: genAt };
}

function decodeSlot(slot) {
  var parts = [];
  var total = 0;
  var offset = 0;
  var torn = false;
  for (var i = 0; i < slot.lines.length; i++) {
    var line = slot.lines[i];
    var complete = line.charAt(line.length - 1) === '\n';
    var body = complete ? line.slice(0, line.length - 1) : line;
    if (i === slot.genAt) {
      offset += line.length;
      continue;
    }
    if (!complete) {
      if (i !== slot.lines.length - 1)
        throw storageError('STORAGE_DAMAGED', slot.name + ': line at byte offset ' + offset + ' has no end');
      torn = true;
      break;
    }
    if (line.length >= SEALED_TAIL.length && line.slice(line.length - SEALED_TAIL.length) === SEALED_TAIL) {
      offset += line.length;
      continue;
    }
    if (!isBase64Line(body))
      throw storageError('STORAGE_DAMAGED', slot.name + ': line at byte offset ' + offset + ' is not base64');
    var bytes = binaryToBytes(atob(body));
    parts.push(bytes);
    total += bytes.length;
    offset += line.length;
  }
  var out = new Uint8Array(total);
  var at = 0;
  for (var j = 0; j < parts.length; j++) {
    out.set(parts[j], at);
    at += parts[j].length;
  }
  return { bytes: out, torn: torn };
}

function AppendFile(Storage, name) {
  this.Storage = Storage;
  this.name = name;
  this.closed = false;
  var a = slotState(Storage, name + '.a');
  var b = slotState(Storage, name + '.b');
  var fresh = a.gen < 0 && b.gen < 0;
  var current = a.gen >= b.gen ? a : b;
  var other = current === a ? b : a;
  if (fresh) {
    Storage.open(current.name, 'w').erase();
    Storage.open(current.name, 'a').write(GEN_PREFIX + '0\n');
    current = slotState(Storage, current.name);
  }
  if (other.lines.length > 0) Storage.open(other.name, 'w').erase();
  var decoded = decodeSlot(current);
  this.slot = current.name;
  this.gen = current.gen;
  this.content = decoded.bytes;
  this.needsNewline = decoded.torn;
}

AppendFile.prototype.check = function () {
  if (this.closed) throw storageError('STORAGE_IO', this.name + ' is closed');
};

AppendFile.prototype.size = function () {
  var self = this;
  return new Promise(function (resolve) {
    self.check();
    resolve(self.content.length);
  });
};

AppendFile.prototype.read = function () {
  var self = this;
  return new Promise(function (resolve) {
    self.check();
    resolve(new Uint8Array(self.content));
  });
};

AppendFile.prototype.append = function (bytes) {
  var self = this;
  return new Promise(function (resolve) {
    self.check();
    if (!(bytes instanceof Uint8Array)) throw storageError('BAD_ARGUMENT', '"bytes" expected Uint8Array');
    if (bytes.length === 0) {
      resolve();
      return;
    }
    var line = (self.needsNewline ? SEALED_TAIL : '') + btoa(bytesToBinary(bytes)) + '\n';
    self.Storage.open(self.slot, 'a').write(line);
    self.needsNewline = false;
    var grown = new Uint8Array(self.content.length + bytes.length);
    grown.set(self.content, 0);
    grown.set(bytes, self.content.length);
    self.content = grown;
    resolve();
  });
};

AppendFile.prototype.replace = function (bytes) {
  var self = this;
  return new Promise(function (resolve) {
    self.check();
    if (!(bytes instanceof Uint8Array)) throw storageError('BAD_ARGUMENT', '"bytes" expected Uint8Array');
    var target = self.slot === self.name + '.a' ? self.name + '.b' : self.name + '.a';
    self.Storage.open(target, 'w').erase();
    var file = self.Storage.open(target, 'a');
    if (bytes.length > 0) file.write(btoa(bytesToBinary(bytes)) + '\n');
    file.write(GEN_PREFIX + (self.gen + 1) + '\n');
    self.Storage.open(self.slot, 'w').erase();
    self.slot = target;
    self.gen = self.gen + 1;
    self.content = new Uint8Array(bytes);
    self.needsNewline = false;
    resolve();
  });
};

AppendFile.prototype.close = function () {
  this.closed = true;
  return Promise.resolve();
};

/**
 * The Storage shim: openAppendFile(name) resolves to an AppendFile. Names are at most 24 characters, so that
 * "NAME.a" fits StorageFile's 27 (firmware 2v05 and later; the last character numbers its chunks).
 */
function espruinoStorage(Storage) {
  var store = Storage || require('Storage');
  return {
    openAppendFile: function (name) {
      return new Promise(function (resolve) {
        if (typeof name !== 'string' || name.length === 0 || name.length > 24)
          throw storageError('BAD_ARGUMENT', 'file name must be 1 to 24 characters');
        resolve(new AppendFile(store, name));
      });
    }
  };
}

exports.espruinoStorage = espruinoStorage;
