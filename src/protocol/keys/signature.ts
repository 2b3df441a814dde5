/**
 * SSH signature blobs (RFC 4253 §6.6): `string algorithm || string signature`, with the per-type
 * inner formats of RFC 5656 §3.1.2 (ECDSA), RFC 8332 (RSA), RFC 8709 (Ed25519), RFC 4253 (DSA)
 * and PROTOCOL.u2f (security keys: flags and counter follow, and the signed data is wrapped).
 */
import { constants, createHash, sign as nodeSign, verify as nodeVerify, type KeyObject } from "node:crypto"
import { SshReader } from "../wire/reader.js"
import { concatBytes, SshWriter } from "../wire/writer.js"
import {
  isCertificateType,
  keyTypeOfAlgorithm,
  plainAlgorithmOfCertificate,
  rsaHash,
  signatureAlgorithms,
  SK_ECDSA,
  SK_ED25519,
  type EcdsaCurve
} from "./algorithms.js"
import { blobKeyType, decodeCertificate } from "./certificateEncoding.js"
import { decodeOrCorrupt, KeyError } from "./errors.js"
import { decodePublicKeyParts, type PrivateKeyParts, type PublicKeyParts } from "./keyEncoding.js"
import { publicKeyObject } from "./nodeKeys.js"

export interface ParsedSignature {
  readonly algorithm: string
  /** The algorithm-specific signature bytes. */
  readonly signature: Uint8Array
  /**
   * Present for sk-* signatures: the authenticator's flags (0x01 user present, 0x04 user verified)
   * and its signature counter. Whether user presence is required is the verifier's policy.
   */
  readonly sk?: { readonly flags: number; readonly counter: number }
}

/** Splits a signature blob into its parts; throws KeyError("corrupt") on a malformed blob. */
export function parseSignatureBlob(blob: Uint8Array): ParsedSignature {
  return decodeOrCorrupt("signature", () => {
    const r = new SshReader(blob)
    const algorithm = r.ascii()
    const signature = r.string()
    if (algorithm === SK_ECDSA || algorithm === SK_ED25519) {
      const flags = r.byte()
      const counter = r.uint32()
      r.end()
      return { algorithm, signature, sk: { flags, counter } }
    }
    r.end()
    return { algorithm, signature }
  })
}

function encodeSignatureBlob(algorithm: string, signature: Uint8Array): Uint8Array {
  return new SshWriter(signature.length + algorithm.length + 16).string(algorithm).string(signature).finish()
}

/** ECDSA `mpint r || mpint s` to the fixed-width r||s node:crypto verifies; undefined when out of range. */
function ecdsaToP1363(inner: Uint8Array, curve: EcdsaCurve): Uint8Array | undefined {
  const r = new SshReader(inner)
  const out = new Uint8Array(2 * curve.size)
  for (let i = 0; i < 2; i++) {
    const bytes = r.string()
    if (bytes.length > 0 && bytes[0]! & 0x80) return undefined
    let start = 0
    while (start < bytes.length && bytes[start] === 0) start++
    const magnitude = bytes.subarray(start)
    if (magnitude.length > curve.size) return undefined
    out.set(magnitude, (i + 1) * curve.size - magnitude.length)
  }
  r.end()
  return out
}

function p1363ToEcdsa(fixed: Uint8Array): Uint8Array {
  const half = fixed.length / 2
  return new SshWriter(fixed.length + 16).mpintFromUnsigned(fixed.subarray(0, half)).mpintFromUnsigned(fixed.subarray(half)).finish()
}

/** What a FIDO authenticator actually signs for an sk-* key (PROTOCOL.u2f "SSH U2F signatures"). */
export function skSignedData(application: string, flags: number, counter: number, data: Uint8Array): Uint8Array {
  const header = new SshWriter(8).byte(flags).uint32(counter).finish()
  return concatBytes(sha256(new TextEncoder().encode(application)), header, sha256(data))
}

function sha256(data: Uint8Array): Uint8Array {
  return createHash("sha256").update(data).digest()
}

const RSA_PKCS1 = constants.RSA_PKCS1_PADDING

function verifyParsed(parts: PublicKeyParts, key: KeyObject, sig: ParsedSignature, data: Uint8Array): boolean {
  const s = sig.signature
  switch (parts.kind) {
    case "ed25519":
      return s.length === 64 && nodeVerify(null, data, key, s)
    case "rsa": {
      const modulusBytes = parts.n.length
      if (s.length > modulusBytes) return false
      // some signers drop leading zero bytes; RSA verification wants the full modulus width
      const padded = new Uint8Array(modulusBytes)
      padded.set(s, modulusBytes - s.length)
      return nodeVerify(rsaHash(sig.algorithm)!, data, { key, padding: RSA_PKCS1 }, padded)
    }
    case "ecdsa": {
      const fixed = ecdsaToP1363(s, parts.curve)
      return fixed !== undefined && nodeVerify(parts.curve.hash, data, { key, dsaEncoding: "ieee-p1363" }, fixed)
    }
    case "dsa":
      return s.length === 40 && nodeVerify("sha1", data, { key, dsaEncoding: "ieee-p1363" }, s)
    case "sk-ecdsa": {
      const fixed = ecdsaToP1363(s, parts.curve)
      if (fixed === undefined || sig.sk === undefined) return false
      const signed = skSignedData(parts.application, sig.sk.flags, sig.sk.counter, data)
      return nodeVerify("sha256", signed, { key, dsaEncoding: "ieee-p1363" }, fixed)
    }
    case "sk-ed25519": {
      if (s.length !== 64 || sig.sk === undefined) return false
      return nodeVerify(null, skSignedData(parts.application, sig.sk.flags, sig.sk.counter, data), key, s)
    }
  }
}

/** Recently used public keys: a host key or a user key is verified against more than once. */
const keyCache = new Map<string, { readonly parts: PublicKeyParts; readonly key: KeyObject }>()
const KEY_CACHE_SIZE = 64

function cachedPublicKey(blob: Uint8Array): { readonly parts: PublicKeyParts; readonly key: KeyObject } {
  const id = Buffer.from(blob.buffer, blob.byteOffset, blob.length).toString("base64")
  let entry = keyCache.get(id)
  if (entry === undefined) {
    const parts = decodePublicKeyParts(Uint8Array.from(blob))
    entry = { parts, key: publicKeyObject(parts) }
    if (keyCache.size >= KEY_CACHE_SIZE) keyCache.delete(keyCache.keys().next().value!)
    keyCache.set(id, entry)
  }
  return entry
}

/**
 * Verifies an SSH signature blob over `data` with a public key blob. The signature's algorithm
 * must belong to the key type, and equal `expectedAlgorithm` when given (the algorithm the peer
 * announced, e.g. in a userauth request). A certificate blob verifies with the key it certifies
 * (its CA signature is not checked here: see `certificate.ts`), and its expected algorithm is a
 * certificate algorithm such as `rsa-sha2-512-cert-v01@openssh.com`. Returns false for a bad
 * signature and for any malformed or unsupported key or signature blob; it never throws.
 */
export function verifySignature(
  publicKeyBlob: Uint8Array,
  signatureBlob: Uint8Array,
  data: Uint8Array,
  expectedAlgorithm?: string
): boolean {
  try {
    let keyBlob = publicKeyBlob
    let expected = expectedAlgorithm
    const type = blobKeyType(publicKeyBlob)
    if (type !== undefined && isCertificateType(type)) {
      if (expectedAlgorithm !== undefined) {
        if (keyTypeOfAlgorithm(expectedAlgorithm) !== type) return false
        expected = plainAlgorithmOfCertificate(expectedAlgorithm)
        if (expected === undefined) return false
      }
      keyBlob = decodeCertificate(publicKeyBlob).publicKey
    } else if (expectedAlgorithm !== undefined && plainAlgorithmOfCertificate(expectedAlgorithm) !== undefined) {
      return false
    }
    const { parts, key } = cachedPublicKey(keyBlob)
    const sig = parseSignatureBlob(signatureBlob)
    if (expected !== undefined && sig.algorithm !== expected) return false
    if (!signatureAlgorithms(parts.type).includes(sig.algorithm)) return false
    return verifyParsed(parts, key, sig, data)
  } catch {
    return false
  }
}

/** Signs `data` with a private key and returns the signature blob. */
export function signWithKey(parts: PrivateKeyParts, key: KeyObject, algorithm: string, data: Uint8Array): Uint8Array {
  const type = parts.publicKey.type
  if (!signatureAlgorithms(type).includes(algorithm)) {
    throw new KeyError("unsupported-key-type", `a ${type} key cannot make ${algorithm} signatures`)
  }
  switch (parts.kind) {
    case "ed25519":
      return encodeSignatureBlob(algorithm, nodeSign(null, data, key))
    case "rsa":
      return encodeSignatureBlob(algorithm, nodeSign(rsaHash(algorithm)!, data, { key, padding: RSA_PKCS1 }))
    case "ecdsa": {
      const fixed = nodeSign(parts.publicKey.curve.hash, data, { key, dsaEncoding: "ieee-p1363" })
      return encodeSignatureBlob(algorithm, p1363ToEcdsa(fixed))
    }
    case "dsa":
      return encodeSignatureBlob(algorithm, nodeSign("sha1", data, { key, dsaEncoding: "ieee-p1363" }))
  }
}
