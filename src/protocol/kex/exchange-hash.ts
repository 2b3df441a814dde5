import { createHash } from "node:crypto"
import { message, SshWriter } from "../wire/writer.js"
import type { ExchangeInputs, HashName } from "./types.js"

export function digest(hash: HashName, ...parts: ReadonlyArray<Uint8Array>): Uint8Array {
  const h = createHash(hash)
  for (const p of parts) h.update(p)
  return new Uint8Array(h.digest())
}

/** Identification lines are decoded as Latin-1 by the transport, so each char is one byte again. */
function latin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff
  return out
}

/**
 * The exchange hash H = HASH(V_C || V_S || I_C || I_S || K_S || method fields || K).
 * `methodFields` and `K` are already encoded the way the method defines them.
 */
export function exchangeHash(
  hash: HashName,
  inputs: ExchangeInputs,
  hostKey: Uint8Array,
  methodFields: Uint8Array,
  K: Uint8Array
): Uint8Array {
  const w = new SshWriter(1024)
  w.string(latin1(inputs.clientVersion))
  w.string(latin1(inputs.serverVersion))
  w.string(inputs.clientKexInit)
  w.string(inputs.serverKexInit)
  w.string(hostKey)
  w.raw(methodFields)
  w.raw(K)
  return digest(hash, w.finish())
}

/** K as an mpint from an unsigned big-endian secret (RFC 4253 §8, RFC 5656 §4, RFC 8731 §3.1). */
export function mpintSecret(secret: Uint8Array): Uint8Array {
  return message((w) => w.mpintFromUnsigned(secret), secret.length + 8)
}
