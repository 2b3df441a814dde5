import { createECDH } from "node:crypto"
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js"
import { concatBytes, message } from "../wire/writer.js"
import { kexFailure } from "./errors.js"
import { digest, mpintSecret } from "./exchange-hash.js"
import { bigintToBytes, bytesToBigint, dhKeyPair, modpGroup } from "./modp.js"
import type { ModpGroupName } from "./modp.js"
import type { OneRoundScheme } from "./one-round.js"
import type { HashName, RandomBytes } from "./types.js"
import { X25519_KEY_LENGTH, x25519KeyPair } from "./x25519.js"

/** One side's ephemeral key in a plain Diffie-Hellman-style agreement. */
interface KeyAgreement {
  readonly publicKey: Uint8Array
  /** The raw shared secret, as unsigned big-endian bytes. */
  agree(peerPublic: Uint8Array): Uint8Array
}

/** Both sides make a key pair and agree; K is the shared secret as an mpint. */
function agreementScheme(hash: HashName, encoding: OneRoundScheme["encoding"], keyPair: (random: RandomBytes) => KeyAgreement): OneRoundScheme {
  return {
    hash,
    encoding,
    initiate(random) {
      const pair = keyPair(random)
      return { value: pair.publicKey, complete: (serverValue) => mpintSecret(pair.agree(serverValue)) }
    },
    respond(clientValue, random) {
      const pair = keyPair(random)
      return { value: pair.publicKey, K: mpintSecret(pair.agree(clientValue)) }
    }
  }
}

/** Fixed-group Diffie-Hellman: diffie-hellman-group{1,14,15,16,17,18}-* (RFC 4253 §8, RFC 8268). */
export function modpScheme(groupName: ModpGroupName, hash: HashName): OneRoundScheme {
  return agreementScheme(hash, "mpint", (random) => {
    const pair = dhKeyPair(modpGroup(groupName), random)
    return { publicKey: bigintToBytes(pair.publicKey), agree: (peer) => pair.agree(bytesToBigint(peer)) }
  })
}

/** curve25519-sha256 and its @libssh.org alias (RFC 8731). */
export const curve25519: OneRoundScheme = agreementScheme("sha256", "string", x25519KeyPair)

type NistCurve = "prime256v1" | "secp384r1" | "secp521r1"
const FIELD_BYTES: Record<NistCurve, number> = { prime256v1: 32, secp384r1: 48, secp521r1: 66 }

/** ecdh-sha2-nistp256/384/521 (RFC 5656 §4), uncompressed points only, as OpenSSH sends them. */
export function ecdhScheme(curve: NistCurve, hash: HashName): OneRoundScheme {
  const fieldBytes = FIELD_BYTES[curve]
  return agreementScheme(hash, "string", (random) => {
    const ecdh = createECDH(curve)
    // A random scalar at or above the group order is rejected by node; drawing again is
    // practically never needed (P-256: 2^-32) and the bound keeps a broken source from looping.
    for (let attempt = 0; ; attempt++) {
      const scalar = random(fieldBytes).slice()
      if (curve === "secp521r1") scalar[0]! &= 0x01
      try {
        ecdh.setPrivateKey(Buffer.from(scalar))
        break
      } catch {
        if (attempt >= 16) throw kexFailure(`no valid ${curve} private scalar from the random source`)
      }
    }
    return {
      publicKey: new Uint8Array(ecdh.getPublicKey()),
      agree(peer) {
        if (peer.length !== 1 + 2 * fieldBytes || peer[0] !== 0x04) {
          throw kexFailure(`${curve} public key must be an uncompressed point of ${1 + 2 * fieldBytes} bytes`)
        }
        try {
          return new Uint8Array(ecdh.computeSecret(Buffer.from(peer)))
        } catch {
          throw kexFailure(`${curve} public key is not a point on the curve`)
        }
      }
    }
  })
}

const MLKEM_PUBLIC_KEY_LENGTH = 1184
const MLKEM_CIPHERTEXT_LENGTH = 1088
const MLKEM_SEED_LENGTH = 64
const MLKEM_MESSAGE_LENGTH = 32

/** K = SHA-256(K_PQ || K_CL), encoded as a string rather than an mpint (draft-ietf-sshm-mlkem-hybrid-kex). */
export function hybridSecret(mlkemSecret: Uint8Array, x25519Secret: Uint8Array): Uint8Array {
  const k = digest("sha256", mlkemSecret, x25519Secret)
  return message((w) => w.string(k), 40)
}

/**
 * mlkem768x25519-sha256 (draft-ietf-sshm-mlkem-hybrid-kex): C_INIT = ML-KEM-768 public key || X25519 public key,
 * S_REPLY = ML-KEM-768 ciphertext || X25519 public key.
 */
export const mlkem768x25519: OneRoundScheme = {
  hash: "sha256",
  encoding: "string",
  initiate(random) {
    const kem = ml_kem768.keygen(random(MLKEM_SEED_LENGTH))
    const ecdh = x25519KeyPair(random)
    return {
      value: concatBytes(kem.publicKey, ecdh.publicKey),
      complete(reply) {
        if (reply.length !== MLKEM_CIPHERTEXT_LENGTH + X25519_KEY_LENGTH) {
          throw kexFailure(`mlkem768x25519 S_REPLY must be ${MLKEM_CIPHERTEXT_LENGTH + X25519_KEY_LENGTH} bytes, got ${reply.length}`)
        }
        const pq = ml_kem768.decapsulate(reply.subarray(0, MLKEM_CIPHERTEXT_LENGTH), kem.secretKey)
        return hybridSecret(pq, ecdh.agree(reply.subarray(MLKEM_CIPHERTEXT_LENGTH)))
      }
    }
  },
  respond(init, random) {
    if (init.length !== MLKEM_PUBLIC_KEY_LENGTH + X25519_KEY_LENGTH) {
      throw kexFailure(`mlkem768x25519 C_INIT must be ${MLKEM_PUBLIC_KEY_LENGTH + X25519_KEY_LENGTH} bytes, got ${init.length}`)
    }
    let encapsulated: { cipherText: Uint8Array; sharedSecret: Uint8Array }
    try {
      encapsulated = ml_kem768.encapsulate(init.subarray(0, MLKEM_PUBLIC_KEY_LENGTH), random(MLKEM_MESSAGE_LENGTH))
    } catch {
      // FIPS 203 §7.2: an encapsulation key with unreduced coefficients is invalid.
      throw kexFailure("mlkem768x25519 client ML-KEM public key is invalid")
    }
    const ecdh = x25519KeyPair(random)
    const K = hybridSecret(encapsulated.sharedSecret, ecdh.agree(init.subarray(MLKEM_PUBLIC_KEY_LENGTH)))
    return { value: concatBytes(encapsulated.cipherText, ecdh.publicKey), K }
  }
}
