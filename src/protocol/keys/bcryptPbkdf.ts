/**
 * bcrypt_pbkdf, the key derivation of encrypted openssh-key-v1 files (OpenBSD bcrypt_pbkdf.c):
 * PBKDF2-like iteration with SHA-512 pre-hashing and a Blowfish-based core hash, whose output
 * bytes are spread across the key with a stride so that every output block depends on all rounds.
 */
import { createHash } from "node:crypto"
import { Blowfish } from "./blowfish.js"

const MAGIC = new TextEncoder().encode("OxychromaticBlowfishSwatDynamite")
const HASH_SIZE = 32

function sha512(...parts: ReadonlyArray<Uint8Array>): Uint8Array {
  const h = createHash("sha512")
  for (const p of parts) h.update(p)
  return h.digest()
}

function bcryptHash(sha2pass: Uint8Array, sha2salt: Uint8Array): Uint8Array {
  const state = new Blowfish()
  state.expand(sha2pass, sha2salt)
  for (let i = 0; i < 64; i++) {
    state.expand(sha2salt)
    state.expand(sha2pass)
  }
  const words = new Uint32Array(HASH_SIZE / 4)
  const view = new DataView(MAGIC.buffer, MAGIC.byteOffset, MAGIC.length)
  for (let i = 0; i < words.length; i++) words[i] = view.getUint32(i * 4)
  for (let i = 0; i < 64; i++) state.encryptWords(words)
  // the words come out little-endian, unlike everything else in Blowfish
  const out = new Uint8Array(HASH_SIZE)
  const outView = new DataView(out.buffer)
  for (let i = 0; i < words.length; i++) outView.setUint32(i * 4, words[i]!, true)
  return out
}

/** Derives `keyLength` bytes (1..1024) from a passphrase and salt with `rounds` (≥ 1) iterations. */
export function bcryptPbkdf(passphrase: Uint8Array, salt: Uint8Array, keyLength: number, rounds: number): Uint8Array {
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError("bcrypt_pbkdf needs at least one round")
  if (!Number.isInteger(keyLength) || keyLength < 1 || keyLength > HASH_SIZE * HASH_SIZE) {
    throw new RangeError("bcrypt_pbkdf key length must be 1..1024")
  }
  const stride = Math.ceil(keyLength / HASH_SIZE)
  const perBlock = Math.ceil(keyLength / stride)
  const sha2pass = sha512(passphrase)
  const key = new Uint8Array(keyLength)
  const counter = new Uint8Array(4)
  for (let block = 0; block * perBlock < keyLength; block++) {
    new DataView(counter.buffer).setUint32(0, block + 1)
    let tmp = bcryptHash(sha2pass, sha512(salt, counter))
    const out = Uint8Array.from(tmp)
    for (let round = 1; round < rounds; round++) {
      tmp = bcryptHash(sha2pass, sha512(tmp))
      for (let i = 0; i < HASH_SIZE; i++) out[i]! ^= tmp[i]!
    }
    for (let i = 0; i < perBlock; i++) {
      const dest = i * stride + block
      if (dest >= keyLength) break
      key[dest] = out[i]!
    }
  }
  return key
}
