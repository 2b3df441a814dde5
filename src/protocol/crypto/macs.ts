/**
 * Registry of SSH transport MACs (RFC 4253 §6.4, RFC 6668, OpenSSH PROTOCOL §1.5 for -etm).
 */
import { createHmac } from "node:crypto"

/** Sizes and ordering of one MAC. */
export interface MacSpec {
  /** Bytes of key material to derive. */
  readonly keyLength: number
  /** Bytes of tag on the wire (after any truncation, e.g. 12 for -96). */
  readonly length: number
  /** Encrypt-then-MAC: the tag covers the ciphertext and the packet length is sent in clear. */
  readonly etm: boolean
}

interface MacEntry extends MacSpec {
  /** node:crypto digest name; empty for "none". */
  readonly digest: string
}

const hmac = (digest: string, keyLength: number, length: number, etm: boolean): MacEntry => ({
  digest,
  keyLength,
  length,
  etm
})

const ENTRIES: Readonly<Record<string, MacEntry>> = {
  "hmac-sha2-256-etm@openssh.com": hmac("sha256", 32, 32, true),
  "hmac-sha2-512-etm@openssh.com": hmac("sha512", 64, 64, true),
  "hmac-sha1-etm@openssh.com": hmac("sha1", 20, 20, true),
  "hmac-sha1-96-etm@openssh.com": hmac("sha1", 20, 12, true),
  "hmac-md5-etm@openssh.com": hmac("md5", 16, 16, true),
  "hmac-md5-96-etm@openssh.com": hmac("md5", 16, 12, true),
  "hmac-sha2-256": hmac("sha256", 32, 32, false),
  "hmac-sha2-512": hmac("sha512", 64, 64, false),
  "hmac-sha1": hmac("sha1", 20, 20, false),
  "hmac-sha1-96": hmac("sha1", 20, 12, false),
  "hmac-md5": hmac("md5", 16, 16, false),
  "hmac-md5-96": hmac("md5", 16, 12, false),
  // The state before the first NEWKEYS; never offered by default.
  none: hmac("", 0, 0, false)
}

/** Every MAC this implementation can run, by its SSH name. */
export const MACS: Readonly<Record<string, MacSpec>> = Object.fromEntries(
  Object.entries(ENTRIES).map(([name, { keyLength, length, etm }]) => [name, { keyLength, length, etm }])
)

/** The MACs offered by default, best first: encrypt-then-MAC before the RFC 4253 ordering. */
export const DEFAULT_MACS: ReadonlyArray<string> = [
  "hmac-sha2-256-etm@openssh.com",
  "hmac-sha2-512-etm@openssh.com",
  "hmac-sha1-etm@openssh.com",
  "hmac-sha2-256",
  "hmac-sha2-512",
  "hmac-sha1"
]

/** A MAC bound to its key: computes the tag over `uint32 sequence || data`. */
export interface PacketMac extends MacSpec {
  compute(sequence: number, data: Uint8Array): Uint8Array
}

const sequenceScratch = Buffer.alloc(4)

/** Binds a MAC name to a key; throws for a name outside {@link MACS}. */
export function createPacketMac(name: string, key: Uint8Array): PacketMac {
  const entry = Object.hasOwn(ENTRIES, name) ? ENTRIES[name] : undefined
  if (entry === undefined) throw new Error(`unsupported MAC: ${name}`)
  if (key.length < entry.keyLength) throw new Error(`MAC ${name} needs a ${entry.keyLength}-byte key`)
  const { digest, length } = entry
  const macKey = key.subarray(0, entry.keyLength)
  return {
    keyLength: entry.keyLength,
    length,
    etm: entry.etm,
    compute(sequence, data) {
      if (length === 0) return new Uint8Array(0)
      sequenceScratch.writeUInt32BE(sequence >>> 0, 0)
      const tag = createHmac(digest, macKey).update(sequenceScratch).update(data).digest()
      return length < tag.length ? tag.subarray(0, length) : tag
    }
  }
}
