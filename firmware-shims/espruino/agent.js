/**
 * @module The Espruino agent: asks its verifier for a verdict on each access and acts only on one that verdict.js
 * accepts. Topics follow DESIGN.md "MQTT topics" (no level holds a dot: the fleet domain with . as _, devices by the
 * label of their CN <label>.<fleet>): the request goes to the verifier's inbox under the device's own label,
 * kin/<fid>/dev/<verifier label>/inbox/<device label>, and the verdict is read only where the verifier's session
 * writes it, kin/<fid>/dev/<device label>/inbox/<verifier label> (the broker lets a session write only under its own
 * label).
 *
 * Wiring on a device (names as in docs/DEVICES.md "Flashing an Espruino board"):
 *   var c = require('kin-crypto').espruinoCrypto();
 *   var clock = require('kin-clock').espruinoClock();
 *   var keys = require('kin-ledger').delegatedKeys(c, SECRET);
 *   var view = ... require('kin-ledger').openDelegatedLedger({ self: CN, key: keys.ledgerKey, crypto: c, storage: ... })
 *   var verdicts = new (require('kin-verdict').DelegatedVerdicts)({ self: CN, key: keys.verdictKey, crypto: c,
 *     clock: clock, ledger: view, verifier: VERIFIER_CN });
 *   require('kin-transport').espruinoTransport().connect(BROKER).then(function (session) {
 *     view.follow(session, FLEET, CN, function (err, head) {});
 *     var agent = require('kin-agent').espruinoAgent({ fleet: FLEET, self: CN, verifier: VERIFIER_CN, session: session,
 *       verdicts: verdicts, onVerdict: function (err, v) { if (!err && v.allow && v.action === 'unlock') openDoor(); } });
 *     setWatch(function () { agent.ask('unlock', 'button'); }, BTN, { repeat: true, edge: 'rising' });
 *   });
 */

// The label of CN `cn` of fleet `fleet` (agent/gossip/topics.ts deviceLevel); a name of another fleet is refused.
function labelOf(fleet, cn) {
  var suffix = '.' + fleet;
  var label = cn.slice(-suffix.length) === suffix ? cn.slice(0, cn.length - suffix.length) : '';
  if (label.length === 0 || /[.\/+#]/.test(label))
    throw new Error('CERT_NAMES: ' + cn + ' is not a device name of fleet ' + fleet);
  return label;
}

/** The topic in device `cn`'s inbox that device `sender` writes to (both CNs of fleet domain `fleet`). */
function inboxOf(fleet, cn, sender) {
  return 'kin/' + fleet.split('.').join('_') + '/dev/' + labelOf(fleet, cn) + '/inbox/' + labelOf(fleet, sender);
}

function binaryOf(bytes) {
  var s = '';
  for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/**
 * Starts the agent on an open transport session. onVerdict(error, verdict) is called for every line on the inbox
 * that claims to be a verdict: with the verdict when it passed every check, with the error (its code says which
 * check failed) otherwise. Other messages on the inbox are not for this agent and are left alone.
 */
function espruinoAgent(options) {
  var own = inboxOf(options.fleet, options.self, options.verifier);
  var theirs = inboxOf(options.fleet, options.verifier, options.self);
  var verdicts = options.verdicts;
  var session = options.session;
  session.onMessage(function (topic, payload) {
    if (topic !== own) return;
    var line = binaryOf(payload);
    if (line.indexOf('kin-verdict-') !== 0) return;
    var verdict;
    try {
      verdict = verdicts.accept(line);
    } catch (e) {
      options.onVerdict(e, undefined);
      return;
    }
    options.onVerdict(undefined, verdict);
  });
  var ready = session.subscribe([own]);
  return {
    inbox: own,
    ask: function (action, peerHint) {
      return ready.then(function () {
        var request = verdicts.request(action, peerHint);
        return session.publish(theirs, request.line).then(function () {
          return request.nonce;
        });
      });
    }
  };
}

exports.espruinoAgent = espruinoAgent;
exports.inboxOf = inboxOf;
