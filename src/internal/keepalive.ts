import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { DisconnectReason, ProtocolError } from "../protocol/wire/errors.js"
import type { Driver } from "./driver.js"

/**
 * keepalive@openssh.com every `interval`; after `countMax` unanswered ones the connection is
 * ended with a "timeout" error (OpenSSH's ServerAliveInterval / ClientAliveInterval).
 * Undefined when keepalives are off.
 */
export function keepalive(
  driver: Driver,
  interval: Duration.DurationInput | undefined,
  countMax = 3
): Effect.Effect<void> | undefined {
  const ms = interval === undefined ? 0 : Duration.toMillis(interval)
  if (ms <= 0) return undefined
  let unanswered = 0
  const tick = Effect.sync(() => {
    if (unanswered >= countMax) {
      driver.run((e) =>
        e.transport.abort(new ProtocolError("timeout", `no answer to ${countMax} keepalives`, DisconnectReason.CONNECTION_LOST))
      )
      return
    }
    unanswered++
    driver.globalRequest("keepalive@openssh.com", undefined, () => {
      unanswered = 0
    })
  })
  return Effect.asVoid(Effect.repeat(tick, { schedule: Schedule.spaced(ms), until: () => driver.closed }))
}
