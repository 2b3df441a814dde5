import { digest } from "./exchange-hash.js"
import type { HashName } from "./types.js"

const letterCode = { A: 0x41, B: 0x42, C: 0x43, D: 0x44, E: 0x45, F: 0x46 } as const

/**
 * Derives one key or IV (RFC 4253 §7.2): HASH(K || H || letter || session_id), extended by
 * HASH(K || H || K1 || ... ) while more bytes are needed. `K` is already encoded (mpint or string).
 */
export function deriveKey(
  hash: HashName,
  K: Uint8Array,
  H: Uint8Array,
  sessionId: Uint8Array,
  letter: "A" | "B" | "C" | "D" | "E" | "F",
  length: number
): Uint8Array {
  const blocks = [digest(hash, K, H, Uint8Array.of(letterCode[letter]), sessionId)]
  let have = blocks[0]!.length
  while (have < length) {
    const next = digest(hash, K, H, ...blocks)
    blocks.push(next)
    have += next.length
  }
  const out = new Uint8Array(length)
  let offset = 0
  for (const b of blocks) {
    out.set(b.subarray(0, length - offset), offset)
    offset += Math.min(b.length, length - offset)
  }
  return out
}
