/** @module Escaping for the HTML report: every string from a run (CNs, names, codes) is untrusted. */

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** Text or attribute value safe inside HTML and inline SVG (both quote styles). */
export function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, c => ENTITIES[c]!)
}

/** A number for an SVG attribute: finite, at most two decimals (NaN and infinities become 0). */
export function num(value: number): string {
  if (!Number.isFinite(value)) return '0'
  return String(Math.round(value * 100) / 100)
}

/** A figure for people: thousands grouped, at most three significant decimals. */
export function figure(value: number | string): string {
  if (typeof value === 'string') return value
  if (!Number.isFinite(value)) return String(value)
  const abs = Math.abs(value)
  const digits = abs >= 100 || Number.isInteger(value) ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3
  return value.toLocaleString('en-US', { maximumFractionDigits: digits })
}

const ROLES = new Set(['admin', 'member', 'device', 'guest'])

/** CSS class of a role; an unknown role (untrusted) never reaches a class name. */
export function roleClass(role: string): string {
  return ROLES.has(role) ? `role-${role}` : 'role-other'
}

const EVENT_TYPES = ['genesis', 'authorize', 'certified', 'revoke', 'rekey', 'policy'] as const

/** The event types the timeline has a lane for, in lane order. */
export const TIMELINE_TYPES: readonly string[] = EVENT_TYPES

/** CSS class of an event type; unknown types share one class. */
export function typeClass(type: string): string {
  return (EVENT_TYPES as readonly string[]).includes(type) ? `ev-${type}` : 'ev-other'
}
