/**
 * ssh-keygen's `-V validity_interval` syntax: `[from:]to`, each side `always`/`forever`,
 * `YYYYMMDD[HHMM[SS]]` (local time, or UTC with a `Z` suffix), `0x` hex seconds, or a time
 * relative to now (`+52w`, `-1d`, `+1h30m`).
 */
import { KeyError } from "./errors.js"
import { FOREVER } from "./certificateEncoding.js"

const UNIT_SECONDS: Record<string, number> = { "": 1, s: 1, m: 60, h: 3600, d: 86400, w: 604800 }

function relativeSeconds(spec: string): number | undefined {
  if (!/^(?:\d+[smhdw]?)+$/i.test(spec)) return undefined
  let total = 0
  for (const [, amount, unit] of spec.matchAll(/(\d+)([smhdw]?)/gi)) total += Number(amount) * UNIT_SECONDS[unit!.toLowerCase()]!
  return total
}

/** `YYYYMMDD[HHMM[SS]]` in local time (UTC with a `Z` suffix) as seconds since the epoch; undefined when malformed. */
export function parseAbsoluteTime(spec: string): bigint | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?(Z?)$/i.exec(spec)
  if (m === null) return undefined
  const [, y, mo, d, h, mi, s, z] = m
  const parts = [Number(y), Number(mo) - 1, Number(d), Number(h ?? 0), Number(mi ?? 0), Number(s ?? 0)] as const
  const ms = z ? Date.UTC(...parts) : new Date(...parts).getTime()
  const check = new Date(ms)
  const [cy, cmo, cd] = z ? [check.getUTCFullYear(), check.getUTCMonth(), check.getUTCDate()] : [check.getFullYear(), check.getMonth(), check.getDate()]
  if (cy !== parts[0] || cmo !== parts[1] || cd !== parts[2] || parts[3] > 23 || parts[4] > 59 || parts[5] > 59) return undefined
  return BigInt(Math.floor(ms / 1000))
}

function timeOf(spec: string, now: bigint, side: "from" | "to"): bigint {
  const lower = spec.toLowerCase()
  if (side === "from" && lower === "always") return 0n
  if (side === "to" && lower === "forever") return FOREVER
  if (/^0x[0-9a-f]{1,16}$/i.test(spec)) return BigInt(spec)
  if (spec.startsWith("+") || spec.startsWith("-")) {
    const seconds = relativeSeconds(spec.slice(1))
    if (seconds !== undefined) {
      const t = spec.startsWith("+") ? now + BigInt(seconds) : now - BigInt(seconds)
      return t < 0n ? 0n : t
    }
  }
  const absolute = parseAbsoluteTime(spec)
  if (absolute !== undefined) return absolute
  throw new KeyError("unsupported-format", `invalid ${side === "from" ? "start" : "end"} time ${JSON.stringify(spec.slice(0, 40))} in validity interval`)
}

/**
 * Parses a validity interval into certificate times (seconds since the epoch). A single time
 * is the end, starting now. `now` is in milliseconds since the epoch.
 */
export function parseValidityInterval(spec: string, now: number): { readonly validAfter: bigint; readonly validBefore: bigint } {
  const nowSeconds = BigInt(Math.floor(now / 1000))
  const colon = spec.indexOf(":")
  const validAfter = colon < 0 ? nowSeconds : timeOf(spec.slice(0, colon), nowSeconds, "from")
  const validBefore = timeOf(colon < 0 ? spec : spec.slice(colon + 1), nowSeconds, "to")
  if (validBefore <= validAfter) throw new KeyError("unsupported-format", `validity interval ${JSON.stringify(spec)} ends before it starts`)
  return { validAfter, validBefore }
}
