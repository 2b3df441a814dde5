/**
 * The little DER that DSA keys need: node:crypto imports and exports DSA keys only as
 * SubjectPublicKeyInfo / PKCS#8, never as JWK.
 */
import { concatBytes } from "../wire/writer.js"
import { KeyError } from "./errors.js"

const TAG_INTEGER = 0x02
const TAG_BIT_STRING = 0x03
const TAG_OCTET_STRING = 0x04
const TAG_OID = 0x06
const TAG_SEQUENCE = 0x30

/** 1.2.840.10040.4.1 (id-dsa), content bytes. */
const OID_DSA = Uint8Array.of(0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01)

function tlv(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length
  let header: Uint8Array
  if (n < 0x80) header = Uint8Array.of(tag, n)
  else if (n < 0x100) header = Uint8Array.of(tag, 0x81, n)
  else if (n < 0x10000) header = Uint8Array.of(tag, 0x82, n >> 8, n & 0xff)
  else header = Uint8Array.of(tag, 0x83, n >> 16, (n >> 8) & 0xff, n & 0xff)
  return concatBytes(header, content)
}

function integer(magnitude: Uint8Array): Uint8Array {
  const needsZero = magnitude.length === 0 || magnitude[0]! & 0x80
  return tlv(TAG_INTEGER, needsZero ? concatBytes(Uint8Array.of(0), magnitude) : magnitude)
}

const sequence = (...items: ReadonlyArray<Uint8Array>) => tlv(TAG_SEQUENCE, concatBytes(...items))

function dsaAlgorithm(p: Uint8Array, q: Uint8Array, g: Uint8Array): Uint8Array {
  return sequence(tlv(TAG_OID, OID_DSA), sequence(integer(p), integer(q), integer(g)))
}

/** SubjectPublicKeyInfo for a DSA public key (RFC 3279 §2.3.2). */
export function dsaSpki(p: Uint8Array, q: Uint8Array, g: Uint8Array, y: Uint8Array): Uint8Array {
  return sequence(dsaAlgorithm(p, q, g), tlv(TAG_BIT_STRING, concatBytes(Uint8Array.of(0), integer(y))))
}

/** PKCS#8 PrivateKeyInfo for a DSA private key (RFC 5958, RFC 3279). */
export function dsaPkcs8(p: Uint8Array, q: Uint8Array, g: Uint8Array, x: Uint8Array): Uint8Array {
  return sequence(integer(new Uint8Array(0)), dsaAlgorithm(p, q, g), tlv(TAG_OCTET_STRING, integer(x)))
}

class DerReader {
  private pos = 0
  constructor(private readonly buf: Uint8Array) {}

  read(tag: number): Uint8Array {
    const b = this.buf
    if (this.pos + 2 > b.length || b[this.pos] !== tag) throw new KeyError("corrupt", "unexpected DER structure")
    let len = b[this.pos + 1]!
    this.pos += 2
    if (len & 0x80) {
      const count = len & 0x7f
      if (count === 0 || count > 3 || this.pos + count > b.length) throw new KeyError("corrupt", "bad DER length")
      len = 0
      for (let i = 0; i < count; i++) len = (len << 8) | b[this.pos++]!
    }
    if (this.pos + len > b.length) throw new KeyError("corrupt", "truncated DER value")
    const content = b.subarray(this.pos, this.pos + len)
    this.pos += len
    return content
  }

  /** An INTEGER that must be non-negative, as magnitude bytes. */
  unsigned(): Uint8Array {
    const v = this.read(TAG_INTEGER)
    if (v.length > 0 && v[0]! & 0x80) throw new KeyError("corrupt", "negative DER integer")
    let i = 0
    while (i < v.length && v[i] === 0) i++
    return v.subarray(i)
  }
}

/** The domain parameters and private value of a DSA PKCS#8 key, as node:crypto exports it. */
export function parseDsaPkcs8(der: Uint8Array): { p: Uint8Array; q: Uint8Array; g: Uint8Array; x: Uint8Array } {
  const info = new DerReader(new DerReader(der).read(TAG_SEQUENCE))
  info.unsigned()
  const algorithm = new DerReader(info.read(TAG_SEQUENCE))
  algorithm.read(TAG_OID)
  const params = new DerReader(algorithm.read(TAG_SEQUENCE))
  const p = params.unsigned()
  const q = params.unsigned()
  const g = params.unsigned()
  const x = new DerReader(info.read(TAG_OCTET_STRING)).unsigned()
  return { p, q, g, x }
}

/** The domain parameters and public value of a DSA SubjectPublicKeyInfo, as node:crypto exports it. */
export function parseDsaSpki(der: Uint8Array): { p: Uint8Array; q: Uint8Array; g: Uint8Array; y: Uint8Array } {
  const info = new DerReader(new DerReader(der).read(TAG_SEQUENCE))
  const algorithm = new DerReader(info.read(TAG_SEQUENCE))
  algorithm.read(TAG_OID)
  const params = new DerReader(algorithm.read(TAG_SEQUENCE))
  const p = params.unsigned()
  const q = params.unsigned()
  const g = params.unsigned()
  const bits = info.read(TAG_BIT_STRING)
  if (bits[0] !== 0) throw new KeyError("corrupt", "DSA public key bit string has unused bits")
  const y = new DerReader(bits.subarray(1)).unsigned()
  return { p, q, g, y }
}
