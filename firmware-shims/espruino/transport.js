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

function Session(modules, options) {
  this.modules = modules;
  this.options = options;
  this.connected = false;
  this.closed = false;
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

Session.prototype.open = function () {
  var self = this;
  var opts = this.options;
  if (!opts.tls) {
    this.mqtt.connect();
    return;
  }
  var socket = this.modules.tls.connect({ host: opts.host, port: opts.port, ca: opts.tls.ca, key: opts.tls.key, cert: opts.tls.cert }, function () {
    self.mqtt.connect(socket);
  });
};

Session.prototype.start = function () {
  var self = this;
  return new Promise(function (resolve, reject) {
    var settled = false;
    self.mqtt.on('connected', function () {
      self.connected = true;
      self.retryMs = 1000;
      for (var i = 0; i < self.filters.length; i++) self.mqtt.subscribe(self.filters[i], { qos: 1 });
      if (!settled) {
        settled = true;
        resolve(self);
      } else {
        self.status('online');
      }
    });
    self.mqtt.on('error', function (message) {
      if (!settled) {
        settled = true;
        var e = new Error('broker refused the session: ' + message);
        e.code = 'BROKER_REFUSED';
        reject(e);
      }
    });
    self.mqtt.on('disconnected', function () {
      var was = self.connected;
      self.connected = false;
      if (self.closed) return;
      if (!settled) {
        settled = true;
        var e = new Error('broker unreachable');
        e.code = 'BROKER_UNREACHABLE';
        reject(e);
        return;
      }
      if (was) self.status('offline');
      setTimeout(function () { if (!self.closed) self.open(); }, self.retryMs);
      self.retryMs = Math.min(self.retryMs * 2, 60000);
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
    self.mqtt.publish(topic, binaryOf(payload), 1);
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
  this.mqtt.disconnect();
  this.status('closed');
  return Promise.resolve();
};

/**
 * The transport shim: connect(options) resolves to a session once the broker accepted it (CONNACK 0) and rejects
 * with code BROKER_REFUSED or BROKER_UNREACHABLE otherwise; a session that drops later reconnects with backoff and
 * subscribes again. options: { host, port, clientId, username, password, keepAlive, tls }. `modules` defaults to
 * Espruino's own MQTT and tls modules; tests pass stand-ins.
 */
function espruinoTransport(modules) {
  var mods = modules || { MQTT: require('MQTT'), tls: undefined };
  return {
    connect: function (options) {
      if (options.tls && !mods.tls) mods.tls = require('tls');
      return new Session(mods, options).start();
    }
  };
}

exports.espruinoTransport = espruinoTransport;
