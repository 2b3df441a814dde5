import { createPrivateKey, createPublicKey, diffieHellman } from "node:crypto"
import { kexFailure } from "./errors.js"
import type { RandomBytes } from "./types.js"

export const X25519_KEY_LENGTH = 32

// Raw X25519 keys go into node:crypto as JWK (RFC 8037): ten times faster than a DER import,
// which runs OpenSSL 3's decoder framework (~0.7 ms a key pair, a good part of a handshake).
// For a private key node:crypto derives the public half from `d` and ignores `x`.
const privateJwk = (raw: Uint8Array) => ({ kty: "OKP", crv: "X25519", d: Buffer.from(raw).toString("base64url"), x: "" })
const publicJwk = (raw: Uint8Array) => ({ kty: "OKP", crv: "X25519", x: Buffer.from(raw).toString("base64url") })

export interface X25519KeyPair {
  readonly publicKey: Uint8Array
  /** The raw 32-byte shared secret; fails on a malformed peer key or an all-zero result (RFC 7748 §6.1). */
  agree(peerPublic: Uint8Array): Uint8Array
}

export function x25519KeyPair(random: RandomBytes): X25519KeyPair {
  const privateKey = createPrivateKey({ key: privateJwk(random(X25519_KEY_LENGTH)), format: "jwk" })
  const publicKey = new Uint8Array(Buffer.from(privateKey.export({ format: "jwk" }).x ?? "", "base64url"))
  return {
    publicKey,
    agree(peerPublic) {
      if (peerPublic.length !== X25519_KEY_LENGTH) {
        throw kexFailure(`X25519 public key must be ${X25519_KEY_LENGTH} bytes, got ${peerPublic.length}`)
      }
      let shared: Uint8Array
      try {
        const peer = createPublicKey({ key: publicJwk(peerPublic), format: "jwk" })
        shared = new Uint8Array(diffieHellman({ privateKey, publicKey: peer }))
      } catch {
        throw kexFailure("X25519 key agreement failed (low-order peer key?)")
      }
      if (shared.every((b) => b === 0)) throw kexFailure("X25519 shared secret is all zeros (low-order peer key)")
      return shared
    }
  }
}
