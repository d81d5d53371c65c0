/**
 * @module Espruino transport shim: a session with the fleet's broker through Espruino's MQTT module
 * (require("MQTT"), modules/MQTT.js), optionally over Espruino's TLS socket (require("tls"), mbedTLS).
 *
 * What the module gives, and what it does not (docs/DEVICES.md): MQTT 3.1.1 with user name and password; payloads
 * are 8-bit strings, converted here to and from Uint8Array; QoS 1 packets are sent but PUBACKs are not awaited, so
 * publish() resolves once the packet is written, not once the broker holds it (at most once, in effect). The
 * module has no TLS of its own: given `tls` options ({ ca, key, cert }, DER as binary strings) this shim opens a
 * TLS socket and hands it to the module, which is how a device would log in with its fleet certificate; that path
 * exists only on boards built with USE_TLS (Espruino WiFi) and has not been run on hardware.
 *
 * The shim opens the socket itself (require("net") or require("tls")) and hands it to the module, because the
 * module gets three things wrong that a device must not: it reads the CONNACK return code one byte too far, so a
 * refused login is reported as "connected" (the shim reads the CONNACK from the socket first and refuses with the
 * broker's code); when it cannot open a socket it emits "error" like a refusal (the shim codes socket failures
 * itself: BROKER_UNREACHABLE, or BROKER_IDENTITY for TLS); and mbedTLS reports a failed handshake as an uncaught
 * exception from the idle loop (the shim takes it, see guard). Espruino's TLS does not check the broker's
 * certificate at all (libs/network/network.c sets MBEDTLS_SSL_VERIFY_NONE; `ca` is loaded and not used): the
 * device's certificate lets the broker check the device, not the other way round (docs/DEVICES.md). Its publish takes options ({ qos: 1 }); a
 * bare number is ignored and sends at QoS 0. The backoff between reconnections grows until a login is accepted.
 */

function binaryOf(data) {
  if (typeof data === 'string') return data;
  var s = '';
  for (var i = 0; i < data.length; i++) s += String.fromCharCode(data[i]);
  return s;
}

function bytesOf(text) {
  var out = new Uint8Array(text.length);
  for (var i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 255;
  return out;
}

var CONNACK_NAMES = [
  'ACCEPTED',
  'UNACCEPTABLE_PROTOCOL_VERSION',
  'IDENTIFIER_REJECTED',
  'SERVER_UNAVAILABLE',
  'BAD_USER_NAME_OR_PASSWORD',
  'NOT_AUTHORIZED'
];

function transportError(code, message, detail) {
  var e = new Error(message);
  e.code = code;
  if (detail !== undefined) e.detail = detail;
  return e;
}

function describe(error) {
  if (error === undefined) return 'the connection closed';
  if (typeof error === 'string') return error;
  return (error.message || 'error') + (error.code !== undefined ? ' (' + error.code + ')' : '');
}

function Session(modules, options) {
  this.modules = modules;
  this.options = options;
  this.connected = false;
  this.closed = false;
  this.settled = false;
  this.attempt = undefined;
  this.guarded = undefined;
  this.messageListeners = [];
  this.statusListeners = [];
  this.filters = [];
  this.retryMs = 1000;
  this.mqtt = modules.MQTT.create(options.host, {
    client_id: options.clientId,
    port: options.port || 1883,
    username: options.username,
    password: options.password,
    keep_alive: options.keepAlive || 60
  });
}

Session.prototype.status = function (state, why) {
  for (var i = 0; i < this.statusListeners.length; i++) this.statusListeners[i](state, why);
};

Session.prototype.fail = function (attempt, error) {
  if (attempt.over || this.closed) return;
  attempt.over = true;
  var self = this;
  if (this.guarded !== undefined)
    setTimeout(function () {
      if (self.attempt === attempt) self.unguard();
    }, 1000);
  if (attempt.socket !== undefined) {
    try {
      attempt.socket.end();
    } catch (e) {
      attempt.endError = e;
    }
  }
  if (!this.settled) {
    this.settled = true;
    this.rejectStart(error);
    return;
  }
  this.status(error.code === 'BROKER_REFUSED' ? 'refused' : 'offline', error.code);
  this.retry();
};

Session.prototype.retry = function () {
  var self = this;
  setTimeout(function () {
    if (!self.closed) self.open();
  }, this.retryMs);
  this.retryMs = Math.min(this.retryMs * 2, 60000);
};

Session.prototype.watch = function (attempt, socket) {
  var self = this;
  var head = '';
  socket.on('data', function (data) {
    if (attempt.acked || attempt.over) return;
    head += data;
    if (head.length < 4) return;
    attempt.acked = true;
    var code = head.charCodeAt(0) === 0x20 ? head.charCodeAt(3) : -1;
    if (code === 0) return;
    var name = CONNACK_NAMES[code] || (code < 0 ? 'no CONNACK' : 'return code ' + code);
    self.fail(attempt, transportError('BROKER_REFUSED', 'broker refused the session: ' + name, { returnCode: code }));
  });
  socket.on('error', function (error) {
    attempt.error = error;
  });
  socket.on('close', function () {
    if (attempt.accepted) return;
    if (!self.options.tls) {
      self.fail(
        attempt,
        transportError('BROKER_UNREACHABLE', 'broker unreachable: ' + describe(attempt.error), attempt.error)
      );
      return;
    }
    setTimeout(function () {
      self.fail(
        attempt,
        transportError(
          'BROKER_IDENTITY',
          'TLS session with the broker failed: ' + describe(attempt.tlsError || attempt.error),
          attempt.tlsError || attempt.error
        )
      );
    }, 10);
  });
};

/**
 * mbedTLS reports a failed handshake from the interpreter's idle loop, where no try/catch reaches: it becomes an
 * "Uncaught InternalError: mbedtls_ssl_handshake returned ..." after the socket closed. While a TLS attempt is
 * open (and a second after it ends) this listener takes those into the attempt's error; any other uncaught
 * exception is printed as the interpreter would have.
 */
Session.prototype.guard = function (attempt) {
  var proc = this.modules.process;
  if (!proc || typeof proc.on !== 'function') return;
  this.unguard();
  var listener = function (e) {
    var text = e !== undefined && e !== null && e.message !== undefined ? String(e.message) : String(e);
    if (text.indexOf('mbedtls') >= 0 || text.indexOf('SSL') >= 0) {
      attempt.tlsError = e;
      return;
    }
    print('Uncaught ' + (e !== undefined && e !== null && e.stack !== undefined ? e.stack : text));
  };
  proc.on('uncaughtException', listener);
  this.guarded = listener;
};

Session.prototype.unguard = function () {
  if (this.guarded === undefined) return;
  this.modules.process.removeListener('uncaughtException', this.guarded);
  this.guarded = undefined;
};

function flat(text) {
  if (typeof text !== 'string' || typeof E === 'undefined' || typeof E.toFlatString !== 'function') return text;
  return E.toFlatString(text);
}

Session.prototype.open = function () {
  var self = this;
  var opts = this.options;
  var attempt = { over: false, acked: false, accepted: false, tcp: false, error: undefined, socket: undefined };
  this.attempt = attempt;
  var settings = { host: opts.host, port: opts.port || 1883 };
  var lib = this.modules.net;
  if (opts.tls) {
    lib = this.modules.tls;
    settings.ca = flat(opts.tls.ca);
    settings.key = flat(opts.tls.key);
    settings.cert = flat(opts.tls.cert);
    this.guard(attempt);
  }
  try {
    attempt.socket = lib.connect(settings, function () {
      attempt.tcp = true;
      try {
        self.mqtt.connect(attempt.socket);
      } catch (e) {
        attempt.error = e;
        self.fail(
          attempt,
          transportError(opts.tls ? 'BROKER_IDENTITY' : 'BROKER_UNREACHABLE', 'broker session failed: ' + describe(e))
        );
      }
    });
  } catch (e) {
    attempt.socket = undefined;
    var noSocket = !opts.tls || String(e.message).indexOf('socket') >= 0;
    this.fail(
      attempt,
      transportError(
        noSocket ? 'BROKER_UNREACHABLE' : 'BROKER_IDENTITY',
        'cannot open a session with the broker: ' + describe(e)
      )
    );
    return;
  }
  this.watch(attempt, attempt.socket);
};

Session.prototype.start = function () {
  var self = this;
  return new Promise(function (resolve, reject) {
    self.rejectStart = reject;
    self.mqtt.on('connected', function () {
      var attempt = self.attempt;
      if (attempt === undefined || attempt.over || self.closed) return;
      attempt.accepted = true;
      self.unguard();
      self.connected = true;
      self.retryMs = 1000;
      for (var i = 0; i < self.filters.length; i++) self.mqtt.subscribe(self.filters[i], { qos: 1 });
      if (!self.settled) {
        self.settled = true;
        resolve(self);
      } else {
        self.status('online');
      }
    });
    self.mqtt.on('disconnected', function () {
      var attempt = self.attempt;
      var was = self.connected;
      self.connected = false;
      if (self.closed || attempt === undefined || attempt.over) return;
      if (!attempt.accepted) {
        self.fail(attempt, transportError('BROKER_TIMEOUT', 'the broker did not answer the login'));
        return;
      }
      attempt.over = true;
      if (was) self.status('offline');
      self.retry();
    });
    self.mqtt.on('error', function (message) {
      self.status('error', message);
    });
    self.mqtt.on('publish', function (pub) {
      var payload = bytesOf(pub.message);
      for (var i = 0; i < self.messageListeners.length; i++) self.messageListeners[i](pub.topic, payload);
    });
    self.open();
  });
};

Session.prototype.publish = function (topic, payload) {
  var self = this;
  return new Promise(function (resolve) {
    if (!self.connected) {
      var e = new Error('not connected to the broker');
      e.code = 'BROKER_CLOSED';
      throw e;
    }
    self.mqtt.publish(topic, binaryOf(payload), { qos: 1 });
    resolve();
  });
};

Session.prototype.subscribe = function (filters) {
  var self = this;
  return new Promise(function (resolve) {
    for (var i = 0; i < filters.length; i++) {
      if (self.filters.indexOf(filters[i]) < 0) self.filters.push(filters[i]);
      if (self.connected) self.mqtt.subscribe(filters[i], { qos: 1 });
    }
    resolve();
  });
};

Session.prototype.onMessage = function (listener) {
  var list = this.messageListeners;
  list.push(listener);
  return function () {
    var at = list.indexOf(listener);
    if (at >= 0) list.splice(at, 1);
  };
};

Session.prototype.onStatus = function (listener) {
  var list = this.statusListeners;
  list.push(listener);
  return function () {
    var at = list.indexOf(listener);
    if (at >= 0) list.splice(at, 1);
  };
};

Session.prototype.end = function () {
  this.closed = true;
  this.connected = false;
  this.unguard();
  this.mqtt.disconnect();
  this.status('closed');
  return Promise.resolve();
};

/**
 * The transport shim: connect(options) resolves to a session once the broker accepted it (CONNACK 0) and rejects
 * with code BROKER_REFUSED (a CONNACK refusal; detail.returnCode), BROKER_UNREACHABLE (no socket), BROKER_IDENTITY
 * (the TLS session failed) or BROKER_TIMEOUT (no CONNACK) otherwise; a session that drops later reconnects with
 * backoff and subscribes again, reporting 'offline', 'refused' and 'online' to onStatus listeners. options: { host,
 * port, clientId, username, password, keepAlive, tls }. `modules` defaults to Espruino's own MQTT, net and tls
 * modules; tests pass stand-ins.
 */
function espruinoTransport(modules) {
  var mods = modules || { MQTT: require('MQTT'), net: require('net'), tls: undefined, process: process };
  return {
    connect: function (options) {
      if (options.tls && !mods.tls) mods.tls = require('tls');
      return new Session(mods, options).start();
    }
  };
}

exports.espruinoTransport = espruinoTransport;
