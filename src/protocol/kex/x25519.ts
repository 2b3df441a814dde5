import { createPrivateKey, createPublicKey, diffieHellman } from "node:crypto"
import { concatBytes } from "../wire/writer.js"
import { kexFailure } from "./errors.js"
import type { RandomBytes } from "./types.js"

export const X25519_KEY_LENGTH = 32

// node:crypto imports raw X25519 keys only through DER: these are the fixed PKCS#8 and SPKI headers (RFC 8410).
const PKCS8_PREFIX = Uint8Array.from(Buffer.from("302e020100300506032b656e04220420", "hex"))
const SPKI_PREFIX = Uint8Array.from(Buffer.from("302a300506032b656e032100", "hex"))

export interface X25519KeyPair {
  readonly publicKey: Uint8Array
  /** The raw 32-byte shared secret; fails on a malformed peer key or an all-zero result (RFC 7748 §6.1). */
  agree(peerPublic: Uint8Array): Uint8Array
}

export function x25519KeyPair(random: RandomBytes): X25519KeyPair {
  const privateKey = createPrivateKey({ key: Buffer.from(concatBytes(PKCS8_PREFIX, random(X25519_KEY_LENGTH))), format: "der", type: "pkcs8" })
  const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" })
  const publicKey = new Uint8Array(spki.subarray(spki.length - X25519_KEY_LENGTH))
  return {
    publicKey,
    agree(peerPublic) {
      if (peerPublic.length !== X25519_KEY_LENGTH) {
        throw kexFailure(`X25519 public key must be ${X25519_KEY_LENGTH} bytes, got ${peerPublic.length}`)
      }
      let shared: Uint8Array
      try {
        const peer = createPublicKey({ key: Buffer.from(concatBytes(SPKI_PREFIX, peerPublic)), format: "der", type: "spki" })
        shared = new Uint8Array(diffieHellman({ privateKey, publicKey: peer }))
      } catch {
        throw kexFailure("X25519 key agreement failed (low-order peer key?)")
      }
      if (shared.every((b) => b === 0)) throw kexFailure("X25519 shared secret is all zeros (low-order peer key)")
      return shared
    }
  }
}
