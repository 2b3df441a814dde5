/**
 * Blowfish with the "eksblowfish" key schedule steps bcrypt builds on (OpenBSD blf.c:
 * Blowfish_expandstate / Blowfish_expand0state). Only what bcrypt_pbkdf needs: encryption of
 * whole 64-bit blocks and the salted key expansion.
 */

/** 18 P-array words then four 256-word S-boxes: the fractional hex digits of pi, as Blowfish defines them. */
let piState: Uint32Array | undefined

function initialState(): Uint32Array {
  if (piState === undefined) {
    const words = 18 + 4 * 256
    const guardBits = 64n
    const bits = BigInt(words * 32) + guardBits
    const one = 1n << bits
    // Machin: pi = 16·atan(1/5) − 4·atan(1/239), in fixed point with `bits` fraction bits
    const atanInverse = (x: bigint): bigint => {
      let sum = 0n
      let term = one / x
      const x2 = x * x
      for (let n = 1n, positive = true; term !== 0n; n += 2n, positive = !positive) {
        sum += positive ? term / n : -(term / n)
        term /= x2
      }
      return sum
    }
    const fraction = (16n * atanInverse(5n) - 4n * atanInverse(239n) - 3n * one) >> guardBits
    const hex = fraction.toString(16).padStart(words * 8, "0")
    piState = new Uint32Array(words)
    for (let i = 0; i < words; i++) piState[i] = parseInt(hex.slice(i * 8, i * 8 + 8), 16)
  }
  return piState
}

/** The 32-bit big-endian words of `bytes` read cyclically, as Blowfish_stream2word does. */
function cyclicWords(bytes: Uint8Array, count: number): Uint32Array {
  const out = new Uint32Array(count)
  let j = 0
  for (let i = 0; i < count; i++) {
    let w = 0
    for (let k = 0; k < 4; k++) {
      w = (w << 8) | bytes[j]!
      j = j + 1 === bytes.length ? 0 : j + 1
    }
    out[i] = w
  }
  return out
}

/** Encrypts the 64-bit block in words[at], words[at + 1] in place (OpenBSD's BLFRND formulation). */
function encipher(P: Uint32Array, S: Uint32Array, words: Uint32Array, at: number): void {
  let l = words[at]! ^ P[0]!
  let r = words[at + 1]!
  for (let i = 1; i <= 16; i += 2) {
    r ^= (((S[l >>> 24]! + S[256 | ((l >>> 16) & 0xff)]!) ^ S[512 | ((l >>> 8) & 0xff)]!) + S[768 | (l & 0xff)]!) ^ P[i]!
    l ^= (((S[r >>> 24]! + S[256 | ((r >>> 16) & 0xff)]!) ^ S[512 | ((r >>> 8) & 0xff)]!) + S[768 | (r & 0xff)]!) ^ P[i + 1]!
  }
  words[at] = r ^ P[17]!
  words[at + 1] = l
}

export class Blowfish {
  private readonly p = new Uint32Array(18)
  private readonly s = new Uint32Array(1024)
  private readonly block = new Uint32Array(2)

  /** Starts from the initial pi state, before any key is mixed in. */
  constructor() {
    const init = initialState()
    this.p.set(init.subarray(0, 18))
    this.s.set(init.subarray(18))
  }

  /**
   * Mixes `key` into the P-array, then re-derives P and S by encrypting a running block that is
   * XORed with `data` (read cyclically) before each encryption; without `data` this is
   * Blowfish_expand0state, otherwise Blowfish_expandstate.
   */
  expand(key: Uint8Array, data?: Uint8Array): void {
    const { p: P, s: S, block } = this
    const keyWords = cyclicWords(key, 18)
    for (let i = 0; i < 18; i++) P[i]! ^= keyWords[i]!
    const dataWords = data === undefined ? undefined : cyclicWords(data, 18 + 1024)
    block[0] = 0
    block[1] = 0
    for (let i = 0; i < 18 + 1024; i += 2) {
      if (dataWords !== undefined) {
        block[0]! ^= dataWords[i]!
        block[1]! ^= dataWords[i + 1]!
      }
      encipher(P, S, block, 0)
      const table = i < 18 ? P : S
      const at = i < 18 ? i : i - 18
      table[at] = block[0]!
      table[at + 1] = block[1]!
    }
  }

  /** Encrypts consecutive 64-bit blocks held as pairs of words, in place (ECB). */
  encryptWords(words: Uint32Array): void {
    for (let i = 0; i < words.length; i += 2) encipher(this.p, this.s, words, i)
  }
}
