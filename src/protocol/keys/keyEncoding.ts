/**
 * The SSH encodings of key material: public key blobs (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709 §4,
 * PROTOCOL.u2f) and the private key fields shared by openssh-key-v1 files and the agent protocol.
 * Decoders throw WireError on truncation and KeyError for unknown types or inconsistent values.
 */
import { SshReader } from "../wire/reader.js"
import { SshWriter } from "../wire/writer.js"
import { WireError } from "../wire/errors.js"
import { curveBySshName, SK_ECDSA, SK_ED25519, type EcdsaCurve } from "./algorithms.js"
import { KeyError } from "./errors.js"

export interface Ed25519Public {
  readonly kind: "ed25519"
  readonly type: "ssh-ed25519"
  readonly key: Uint8Array
}
export interface RsaPublic {
  readonly kind: "rsa"
  readonly type: "ssh-rsa"
  /** Unsigned big-endian magnitudes, no leading zeros. */
  readonly e: Uint8Array
  readonly n: Uint8Array
}
export interface EcdsaPublic {
  readonly kind: "ecdsa"
  readonly type: string
  readonly curve: EcdsaCurve
  /** Uncompressed point: 0x04 || x || y. */
  readonly point: Uint8Array
}
export interface DsaPublic {
  readonly kind: "dsa"
  readonly type: "ssh-dss"
  readonly p: Uint8Array
  readonly q: Uint8Array
  readonly g: Uint8Array
  readonly y: Uint8Array
}
export interface SkEd25519Public {
  readonly kind: "sk-ed25519"
  readonly type: typeof SK_ED25519
  readonly key: Uint8Array
  readonly application: string
}
export interface SkEcdsaPublic {
  readonly kind: "sk-ecdsa"
  readonly type: typeof SK_ECDSA
  readonly curve: EcdsaCurve
  readonly point: Uint8Array
  readonly application: string
}
export type PublicKeyParts = Ed25519Public | RsaPublic | EcdsaPublic | DsaPublic | SkEd25519Public | SkEcdsaPublic

export type PrivateKeyParts =
  | { readonly kind: "ed25519"; readonly publicKey: Ed25519Public; readonly seed: Uint8Array }
  | {
      readonly kind: "rsa"
      readonly publicKey: RsaPublic
      readonly d: Uint8Array
      readonly iqmp: Uint8Array
      readonly p: Uint8Array
      readonly q: Uint8Array
    }
  | { readonly kind: "ecdsa"; readonly publicKey: EcdsaPublic; readonly d: Uint8Array }
  | { readonly kind: "dsa"; readonly publicKey: DsaPublic; readonly x: Uint8Array }

/** A non-negative mpint as its magnitude bytes (no sign byte, no leading zeros). */
function unsignedMpint(r: SshReader): Uint8Array {
  const bytes = r.string()
  if (bytes.length > 0 && bytes[0]! & 0x80) throw new WireError("negative mpint in key")
  let i = 0
  while (i < bytes.length && bytes[i] === 0) i++
  return bytes.subarray(i)
}

function ed25519Key(bytes: Uint8Array): Uint8Array {
  if (bytes.length !== 32) throw new KeyError("corrupt", `ed25519 public key is ${bytes.length} bytes, expected 32`)
  return bytes
}

function ecdsaCurveOf(type: string, curveName: string): EcdsaCurve {
  const curve = curveBySshName(curveName)
  const expected = type === SK_ECDSA ? "nistp256" : type.slice("ecdsa-sha2-".length)
  if (curve === undefined || curve.sshName !== expected) {
    throw new KeyError("corrupt", `curve ${curveName} does not match key type ${type}`)
  }
  return curve
}

function ecPoint(curve: EcdsaCurve, point: Uint8Array): Uint8Array {
  if (point.length !== 1 + 2 * curve.size || point[0] !== 4) {
    throw new KeyError("corrupt", `${curve.sshName} public point is not an uncompressed point of the curve's size`)
  }
  return point
}

function nonEmpty(bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.length === 0) throw new KeyError("corrupt", `${what} is zero`)
  return bytes
}

/** The fields that follow the type name in a public key blob. */
export function readPublicFields(type: string, r: SshReader): PublicKeyParts {
  switch (type) {
    case "ssh-ed25519":
      return { kind: "ed25519", type, key: ed25519Key(r.string()) }
    case "ssh-rsa": {
      const e = nonEmpty(unsignedMpint(r), "RSA exponent")
      const n = nonEmpty(unsignedMpint(r), "RSA modulus")
      return { kind: "rsa", type, e, n }
    }
    case "ecdsa-sha2-nistp256":
    case "ecdsa-sha2-nistp384":
    case "ecdsa-sha2-nistp521": {
      const curve = ecdsaCurveOf(type, r.ascii())
      return { kind: "ecdsa", type, curve, point: ecPoint(curve, r.string()) }
    }
    case "ssh-dss": {
      const p = nonEmpty(unsignedMpint(r), "DSA p")
      const q = nonEmpty(unsignedMpint(r), "DSA q")
      const g = nonEmpty(unsignedMpint(r), "DSA g")
      const y = nonEmpty(unsignedMpint(r), "DSA y")
      // ssh-dss signatures are two 160-bit values (RFC 4253 §6.6)
      if (bitLength(q) !== 160) throw new KeyError("unsupported-key-type", "ssh-dss keys need a 160-bit q")
      return { kind: "dsa", type, p, q, g, y }
    }
    case SK_ED25519: {
      const key = ed25519Key(r.string())
      return { kind: "sk-ed25519", type, key, application: r.utf8() }
    }
    case SK_ECDSA: {
      const curve = ecdsaCurveOf(type, r.ascii())
      const point = ecPoint(curve, r.string())
      return { kind: "sk-ecdsa", type, curve, point, application: r.utf8() }
    }
    default:
      throw new KeyError("unsupported-key-type", `unsupported key type ${JSON.stringify(type.slice(0, 64))}`)
  }
}

/** Decodes a public key blob; the blob must be consumed exactly. */
export function decodePublicKeyParts(blob: Uint8Array): PublicKeyParts {
  const r = new SshReader(blob)
  const parts = readPublicFields(r.ascii(), r)
  r.end()
  return parts
}

export function writePublicFields(w: SshWriter, parts: PublicKeyParts): void {
  switch (parts.kind) {
    case "ed25519":
      w.string(parts.key)
      return
    case "rsa":
      w.mpintFromUnsigned(parts.e).mpintFromUnsigned(parts.n)
      return
    case "ecdsa":
      w.string(parts.curve.sshName).string(parts.point)
      return
    case "dsa":
      w.mpintFromUnsigned(parts.p).mpintFromUnsigned(parts.q).mpintFromUnsigned(parts.g).mpintFromUnsigned(parts.y)
      return
    case "sk-ed25519":
      w.string(parts.key).string(parts.application)
      return
    case "sk-ecdsa":
      w.string(parts.curve.sshName).string(parts.point).string(parts.application)
      return
  }
}

export function encodePublicKeyParts(parts: PublicKeyParts): Uint8Array {
  const w = new SshWriter(128)
  w.string(parts.type)
  writePublicFields(w, parts)
  return w.finish()
}

function bitLength(magnitude: Uint8Array): number {
  if (magnitude.length === 0) return 0
  return (magnitude.length - 1) * 8 + (32 - Math.clz32(magnitude[0]!))
}

/** The key size `ssh-keygen -l` prints. */
export function publicKeyBits(parts: PublicKeyParts): number {
  switch (parts.kind) {
    case "ed25519":
    case "sk-ed25519":
      return 256
    case "rsa":
      return bitLength(parts.n)
    case "dsa":
      return bitLength(parts.p)
    case "ecdsa":
    case "sk-ecdsa":
      return parts.curve.bits
  }
}

/**
 * Reads one private key in the agent / openssh-key-v1 encoding (type name first, comment not included).
 * Security-key (sk-*) private keys hold only a handle for a FIDO authenticator, so they are refused.
 */
export function readPrivateKeyFields(r: SshReader): PrivateKeyParts {
  const type = r.ascii()
  switch (type) {
    case "ssh-ed25519": {
      const publicKey: Ed25519Public = { kind: "ed25519", type, key: ed25519Key(r.string()) }
      const secret = r.string()
      // OpenSSH stores seed || public key
      if (secret.length !== 64 || !equalBytes(secret.subarray(32), publicKey.key)) {
        throw new KeyError("corrupt", "ed25519 private key does not match its public key")
      }
      return { kind: "ed25519", publicKey, seed: secret.subarray(0, 32) }
    }
    case "ssh-rsa": {
      const n = nonEmpty(unsignedMpint(r), "RSA modulus")
      const e = nonEmpty(unsignedMpint(r), "RSA exponent")
      const d = nonEmpty(unsignedMpint(r), "RSA d")
      const iqmp = nonEmpty(unsignedMpint(r), "RSA iqmp")
      const p = nonEmpty(unsignedMpint(r), "RSA p")
      const q = nonEmpty(unsignedMpint(r), "RSA q")
      if (toBigInt(p) * toBigInt(q) !== toBigInt(n)) throw new KeyError("corrupt", "RSA p·q does not equal the modulus")
      return { kind: "rsa", publicKey: { kind: "rsa", type, e, n }, d, iqmp, p, q }
    }
    case "ecdsa-sha2-nistp256":
    case "ecdsa-sha2-nistp384":
    case "ecdsa-sha2-nistp521": {
      const curve = ecdsaCurveOf(type, r.ascii())
      const point = ecPoint(curve, r.string())
      const d = nonEmpty(unsignedMpint(r), "EC private scalar")
      if (d.length > curve.size) throw new KeyError("corrupt", "EC private scalar is larger than the curve")
      return { kind: "ecdsa", publicKey: { kind: "ecdsa", type, curve, point }, d }
    }
    case "ssh-dss": {
      const publicKey = readPublicFields(type, r) as DsaPublic
      return { kind: "dsa", publicKey, x: nonEmpty(unsignedMpint(r), "DSA x") }
    }
    case SK_ED25519:
    case SK_ECDSA:
      throw new KeyError(
        "unsupported-key-type",
        `${type} private keys sign through a FIDO authenticator; load them into ssh-agent instead`
      )
    default:
      throw new KeyError("unsupported-key-type", `unsupported private key type ${JSON.stringify(type.slice(0, 64))}`)
  }
}

export function writePrivateKeyFields(w: SshWriter, parts: PrivateKeyParts): void {
  const pub = parts.publicKey
  w.string(pub.type)
  switch (parts.kind) {
    case "ed25519": {
      const secret = new Uint8Array(64)
      secret.set(parts.seed)
      secret.set(parts.publicKey.key, 32)
      w.string(parts.publicKey.key).string(secret)
      return
    }
    case "rsa":
      for (const v of [parts.publicKey.n, parts.publicKey.e, parts.d, parts.iqmp, parts.p, parts.q]) w.mpintFromUnsigned(v)
      return
    case "ecdsa":
      w.string(parts.publicKey.curve.sshName).string(parts.publicKey.point).mpintFromUnsigned(parts.d)
      return
    case "dsa":
      writePublicFields(w, parts.publicKey)
      w.mpintFromUnsigned(parts.x)
      return
  }
}

export function toBigInt(magnitude: Uint8Array): bigint {
  return magnitude.length === 0 ? 0n : BigInt("0x" + Buffer.from(magnitude).toString("hex"))
}

export function fromBigInt(v: bigint): Uint8Array {
  if (v === 0n) return new Uint8Array(0)
  const hex = v.toString(16)
  return Uint8Array.from(Buffer.from(hex.length % 2 ? "0" + hex : hex, "hex"))
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}
