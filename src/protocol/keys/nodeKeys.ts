/**
 * Conversions between SSH key material and node:crypto KeyObjects: JWK for RSA, EC and Ed25519,
 * DER for DSA (node has no DSA JWK).
 */
import { createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto"
import { curveByNodeName, type EcdsaCurve } from "./algorithms.js"
import { dsaPkcs8, dsaSpki, parseDsaPkcs8, parseDsaSpki } from "./der.js"
import { KeyError } from "./errors.js"
import { fromBigInt, toBigInt, type EcdsaPublic, type PrivateKeyParts, type PublicKeyParts } from "./keyEncoding.js"

const b64url = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64url")
const unb64url = (s: string | undefined): Uint8Array => {
  if (s === undefined) throw new KeyError("corrupt", "key component missing")
  return Uint8Array.from(Buffer.from(s, "base64url"))
}

function leftPad(bytes: Uint8Array, size: number): Uint8Array {
  if (bytes.length >= size) return bytes
  const out = new Uint8Array(size)
  out.set(bytes, size - bytes.length)
  return out
}

function stripZeros(bytes: Uint8Array): Uint8Array {
  let i = 0
  while (i < bytes.length && bytes[i] === 0) i++
  return bytes.subarray(i)
}

function ecJwk(curve: EcdsaCurve, point: Uint8Array): JsonWebKey {
  return {
    kty: "EC",
    crv: curve.jwkCurve,
    x: b64url(point.subarray(1, 1 + curve.size)),
    y: b64url(point.subarray(1 + curve.size))
  }
}

/** A public KeyObject; throws (node's error) when the values do not form a valid key. */
export function publicKeyObject(parts: PublicKeyParts): KeyObject {
  switch (parts.kind) {
    case "ed25519":
    case "sk-ed25519":
      return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64url(parts.key) }, format: "jwk" })
    case "rsa":
      return createPublicKey({ key: { kty: "RSA", n: b64url(parts.n), e: b64url(parts.e) }, format: "jwk" })
    case "ecdsa":
    case "sk-ecdsa":
      return createPublicKey({ key: ecJwk(parts.curve, parts.point), format: "jwk" })
    case "dsa":
      return createPublicKey({
        key: Buffer.from(dsaSpki(parts.p, parts.q, parts.g, parts.y)),
        format: "der",
        type: "spki"
      })
  }
}

/** A private KeyObject for signing. */
export function privateKeyObject(parts: PrivateKeyParts): KeyObject {
  switch (parts.kind) {
    case "ed25519":
      return createPrivateKey({
        key: { kty: "OKP", crv: "Ed25519", x: b64url(parts.publicKey.key), d: b64url(parts.seed) },
        format: "jwk"
      })
    case "rsa": {
      const d = toBigInt(parts.d)
      const p = toBigInt(parts.p)
      const q = toBigInt(parts.q)
      const jwk: JsonWebKey = {
        kty: "RSA",
        n: b64url(parts.publicKey.n),
        e: b64url(parts.publicKey.e),
        d: b64url(parts.d),
        p: b64url(parts.p),
        q: b64url(parts.q),
        dp: b64url(fromBigInt(d % (p - 1n))),
        dq: b64url(fromBigInt(d % (q - 1n))),
        qi: b64url(parts.iqmp)
      }
      return createPrivateKey({ key: jwk, format: "jwk" })
    }
    case "ecdsa": {
      const curve = parts.publicKey.curve
      const jwk = { ...ecJwk(curve, parts.publicKey.point), d: b64url(leftPad(parts.d, curve.size)) }
      return createPrivateKey({ key: jwk, format: "jwk" })
    }
    case "dsa": {
      const { p, q, g } = parts.publicKey
      return createPrivateKey({ key: Buffer.from(dsaPkcs8(p, q, g, parts.x)), format: "der", type: "pkcs8" })
    }
  }
}

function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let result = 1n
  base %= mod
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % mod
    base = (base * base) % mod
    exp >>= 1n
  }
  return result
}

function ecdsaPublicFromJwk(key: KeyObject, jwk: JsonWebKey): EcdsaPublic {
  const curve = curveByNodeName(key.asymmetricKeyDetails?.namedCurve ?? "")
  if (curve === undefined) {
    throw new KeyError("unsupported-key-type", `EC curve ${key.asymmetricKeyDetails?.namedCurve} has no SSH key type`)
  }
  const point = new Uint8Array(1 + 2 * curve.size)
  point[0] = 4
  point.set(leftPad(unb64url(jwk.x), curve.size), 1)
  point.set(leftPad(unb64url(jwk.y), curve.size), 1 + curve.size)
  return { kind: "ecdsa", type: `ecdsa-sha2-${curve.sshName}`, curve, point }
}

/** SSH public key fields from a node:crypto public key (SPKI / PKCS#1 PEM files). */
export function publicKeyPartsFromKeyObject(key: KeyObject): PublicKeyParts {
  switch (key.asymmetricKeyType) {
    case "ed25519":
      return { kind: "ed25519", type: "ssh-ed25519", key: unb64url(key.export({ format: "jwk" }).x) }
    case "rsa": {
      const jwk = key.export({ format: "jwk" })
      return { kind: "rsa", type: "ssh-rsa", e: stripZeros(unb64url(jwk.e)), n: stripZeros(unb64url(jwk.n)) }
    }
    case "ec":
      return ecdsaPublicFromJwk(key, key.export({ format: "jwk" }))
    case "dsa": {
      const { p, q, g, y } = parseDsaSpki(key.export({ format: "der", type: "spki" }))
      return { kind: "dsa", type: "ssh-dss", p, q, g, y }
    }
    default:
      throw new KeyError("unsupported-key-type", `${key.asymmetricKeyType} keys have no SSH key type`)
  }
}

/** SSH private key fields from a node:crypto private key (PEM files, generated keys). */
export function privateKeyPartsFromKeyObject(key: KeyObject): PrivateKeyParts {
  switch (key.asymmetricKeyType) {
    case "ed25519": {
      const jwk = key.export({ format: "jwk" })
      return { kind: "ed25519", publicKey: { kind: "ed25519", type: "ssh-ed25519", key: unb64url(jwk.x) }, seed: unb64url(jwk.d) }
    }
    case "rsa": {
      const jwk = key.export({ format: "jwk" })
      const n = stripZeros(unb64url(jwk.n))
      const e = stripZeros(unb64url(jwk.e))
      return {
        kind: "rsa",
        publicKey: { kind: "rsa", type: "ssh-rsa", e, n },
        d: stripZeros(unb64url(jwk.d)),
        iqmp: stripZeros(unb64url(jwk.qi)),
        p: stripZeros(unb64url(jwk.p)),
        q: stripZeros(unb64url(jwk.q))
      }
    }
    case "ec": {
      const jwk = key.export({ format: "jwk" })
      return { kind: "ecdsa", publicKey: ecdsaPublicFromJwk(key, jwk), d: stripZeros(unb64url(jwk.d)) }
    }
    case "dsa": {
      const { p, q, g, x } = parseDsaPkcs8(key.export({ format: "der", type: "pkcs8" }))
      const y = fromBigInt(modPow(toBigInt(g), toBigInt(x), toBigInt(p)))
      return { kind: "dsa", publicKey: { kind: "dsa", type: "ssh-dss", p, q, g, y }, x }
    }
    default:
      throw new KeyError("unsupported-key-type", `${key.asymmetricKeyType} keys have no SSH key type`)
  }
}
