/**
 * Registry of SSH transport ciphers (RFC 4253 §6.3, RFC 4344, RFC 5647, OpenSSH PROTOCOL §1.6–1.7).
 * The packet layer turns a name into running cipher state; kex uses the lengths to derive keys.
 */
import type { CipherGCMTypes } from "node:crypto"

/** Sizes the key exchange and the packet layer need for one cipher. */
export interface CipherSpec {
  /** Bytes of key material to derive. */
  readonly keyLength: number
  /** Bytes of IV material to derive (0 when the cipher takes none). */
  readonly ivLength: number
  /** The packet length alignment unit (before taking max(blockSize, 8)). */
  readonly blockSize: number
  /** Authenticated encryption: the negotiated MAC is ignored and the length travels outside the alignment. */
  readonly aead: boolean
}

/** How the packet layer drives a cipher. */
export type CipherEngine =
  | { readonly kind: "none" }
  /** A node:crypto Cipheriv kept for the whole key epoch: CTR and CBC state chain across packets. */
  | { readonly kind: "stream"; readonly algorithm: string }
  | { readonly kind: "aes-gcm"; readonly algorithm: CipherGCMTypes }
  | { readonly kind: "chacha20-poly1305" }

interface CipherEntry extends CipherSpec {
  readonly engine: CipherEngine
}

const stream = (algorithm: string, keyLength: number, ivLength: number, blockSize: number): CipherEntry => ({
  keyLength,
  ivLength,
  blockSize,
  aead: false,
  engine: { kind: "stream", algorithm }
})

const ENTRIES: Readonly<Record<string, CipherEntry>> = {
  "chacha20-poly1305@openssh.com": {
    // 32 bytes for the payload key K_2, then 32 for the length key K_1.
    keyLength: 64,
    ivLength: 0,
    blockSize: 8,
    aead: true,
    engine: { kind: "chacha20-poly1305" }
  },
  "aes128-gcm@openssh.com": {
    keyLength: 16,
    ivLength: 12,
    blockSize: 16,
    aead: true,
    engine: { kind: "aes-gcm", algorithm: "aes-128-gcm" }
  },
  "aes256-gcm@openssh.com": {
    keyLength: 32,
    ivLength: 12,
    blockSize: 16,
    aead: true,
    engine: { kind: "aes-gcm", algorithm: "aes-256-gcm" }
  },
  "aes128-ctr": stream("aes-128-ctr", 16, 16, 16),
  "aes192-ctr": stream("aes-192-ctr", 24, 16, 16),
  "aes256-ctr": stream("aes-256-ctr", 32, 16, 16),
  "aes128-cbc": stream("aes-128-cbc", 16, 16, 16),
  "aes192-cbc": stream("aes-192-cbc", 24, 16, 16),
  "aes256-cbc": stream("aes-256-cbc", 32, 16, 16),
  "3des-cbc": stream("des-ede3-cbc", 24, 8, 8),
  // The state before the first NEWKEYS; never offered by default.
  none: { keyLength: 0, ivLength: 0, blockSize: 8, aead: false, engine: { kind: "none" } }
}

/** Every cipher this implementation can run, by its SSH name. */
export const CIPHERS: Readonly<Record<string, CipherSpec>> = Object.fromEntries(
  Object.entries(ENTRIES).map(([name, { keyLength, ivLength, blockSize, aead }]) => [name, { keyLength, ivLength, blockSize, aead }])
)

/**
 * The ciphers offered by default, best first. AES-GCM leads because node:crypto runs it at
 * OpenSSL speed with AES-NI, while chacha20-poly1305 is held back by a JavaScript Poly1305.
 */
export const DEFAULT_CIPHERS: ReadonlyArray<string> = [
  "aes128-gcm@openssh.com",
  "aes256-gcm@openssh.com",
  "chacha20-poly1305@openssh.com",
  "aes128-ctr",
  "aes192-ctr",
  "aes256-ctr"
]

/** The engine behind a cipher name; throws for a name outside {@link CIPHERS}. */
export function cipherEngine(name: string): CipherSpec & { readonly engine: CipherEngine } {
  const entry = Object.hasOwn(ENTRIES, name) ? ENTRIES[name] : undefined
  if (entry === undefined) throw new Error(`unsupported cipher: ${name}`)
  return entry
}
