/**
 * @module Espruino clock shim: wall-clock seconds (agent/ports/platform.ts Clock), and a way to set it from a time
 * the device has reason to trust.
 *
 * Most Espruino boards start at 1970 after power loss (no battery-backed clock), so a freshly booted device does not
 * know the time. It reports that through trusted(): until a time arrived inside a verdict whose MAC it checked
 * (verdict.js), or someone set it over USB, the clock is the board's guess, and expiry checks made with it are
 * only as good as that guess. Challenge lifetimes (verdict.js) use differences of the same clock, which hold
 * whatever its absolute value until the time is adopted; verdict.js then drops every challenge still open.
 */

function espruinoClock(nowMs, setSeconds) {
  var read =
    nowMs ||
    function () {
      return Date.now();
    };
  var write =
    setSeconds ||
    function (seconds) {
      setTime(seconds);
    };
  var trustedSince = -1;
  return {
    now: function () {
      return Math.floor(read() / 1000);
    },
    trusted: function () {
      return trustedSince >= 0;
    },
    adopt: function (seconds) {
      if (typeof seconds !== 'number' || !(seconds > 1500000000)) return false;
      write(seconds);
      trustedSince = seconds;
      return true;
    }
  };
}

exports.espruinoClock = espruinoClock;
