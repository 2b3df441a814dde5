/**
 * The ciphers that can protect an openssh-key-v1 private key section. Each encrypts the whole
 * section in one call, starting from the derived IV (GCM: fixed IV, no AAD; chacha20-poly1305:
 * sequence number 0, no length field), exactly as OpenSSH's cipher_crypt does for key files.
 */
import { createCipheriv, createDecipheriv } from "node:crypto"
import { poly1305 } from "@noble/ciphers/_poly1305.js"
import { concatBytes } from "../wire/writer.js"
import { equalBytes } from "./keyEncoding.js"
import { KeyError } from "./errors.js"

export interface KeyFileCipher {
  readonly name: string
  readonly keyLength: number
  readonly ivLength: number
  /** The private section is padded to a multiple of this. */
  readonly blockSize: number
  /** Length of the authentication tag that follows the encrypted section (0 for unauthenticated ciphers). */
  readonly tagLength: number
  encrypt(key: Uint8Array, iv: Uint8Array, plaintext: Uint8Array): { ciphertext: Uint8Array; tag: Uint8Array }
  /** Returns undefined when the tag does not verify (a wrong passphrase). */
  decrypt(key: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): Uint8Array | undefined
}

const NO_TAG = new Uint8Array(0)

function blockCipher(name: string, nodeName: string, keyLength: number, ivLength: number, blockSize: number): KeyFileCipher {
  const run = (encrypt: boolean, key: Uint8Array, iv: Uint8Array, input: Uint8Array) => {
    const c = encrypt ? createCipheriv(nodeName, key, iv) : createDecipheriv(nodeName, key, iv)
    c.setAutoPadding(false)
    return concatBytes(c.update(input), c.final())
  }
  return {
    name,
    keyLength,
    ivLength,
    blockSize,
    tagLength: 0,
    encrypt: (key, iv, plaintext) => ({ ciphertext: run(true, key, iv, plaintext), tag: NO_TAG }),
    decrypt: (key, iv, ciphertext) => run(false, key, iv, ciphertext)
  }
}

function aesGcm(name: string, bits: 128 | 256): KeyFileCipher {
  const nodeName = `aes-${bits}-gcm` as const
  return {
    name,
    keyLength: bits / 8,
    ivLength: 12,
    blockSize: 16,
    tagLength: 16,
    encrypt(key, iv, plaintext) {
      const c = createCipheriv(nodeName, key, iv)
      const ciphertext = concatBytes(c.update(plaintext), c.final())
      return { ciphertext, tag: c.getAuthTag() }
    },
    decrypt(key, iv, ciphertext, tag) {
      const d = createDecipheriv(nodeName, key, iv)
      d.setAuthTag(tag)
      try {
        return concatBytes(d.update(ciphertext), d.final())
      } catch {
        return undefined
      }
    }
  }
}

/**
 * chacha20-poly1305@openssh.com (PROTOCOL.chacha20poly1305) with sequence number 0 and no
 * length header: the first 32 key bytes drive both the Poly1305 key (block 0) and the payload
 * (from block 1). node's chacha20 takes a 16-byte IV laid out as the original ChaCha's 64-bit
 * little-endian block counter followed by the 64-bit nonce.
 */
const chachaPoly: KeyFileCipher = {
  name: "chacha20-poly1305@openssh.com",
  keyLength: 64,
  ivLength: 0,
  blockSize: 8,
  tagLength: 16,
  encrypt(key, _iv, plaintext) {
    const ciphertext = chacha(key, 1, plaintext)
    return { ciphertext, tag: poly1305(ciphertext, polyKey(key)) }
  },
  decrypt(key, _iv, ciphertext, tag) {
    if (!equalBytes(poly1305(ciphertext, polyKey(key)), tag)) return undefined
    return chacha(key, 1, ciphertext)
  }
}

function chacha(key: Uint8Array, block: number, input: Uint8Array): Uint8Array {
  const iv = new Uint8Array(16)
  iv[0] = block
  const c = createCipheriv("chacha20", key.subarray(0, 32), iv)
  return concatBytes(c.update(input), c.final())
}

const polyKey = (key: Uint8Array) => chacha(key, 0, new Uint8Array(32))

const ciphers: ReadonlyArray<KeyFileCipher> = [
  blockCipher("aes128-ctr", "aes-128-ctr", 16, 16, 16),
  blockCipher("aes192-ctr", "aes-192-ctr", 24, 16, 16),
  blockCipher("aes256-ctr", "aes-256-ctr", 32, 16, 16),
  blockCipher("aes128-cbc", "aes-128-cbc", 16, 16, 16),
  blockCipher("aes192-cbc", "aes-192-cbc", 24, 16, 16),
  blockCipher("aes256-cbc", "aes-256-cbc", 32, 16, 16),
  blockCipher("3des-cbc", "des-ede3-cbc", 24, 8, 8),
  aesGcm("aes128-gcm@openssh.com", 128),
  aesGcm("aes256-gcm@openssh.com", 256),
  chachaPoly
]

/** The names `encodeOpenSSHPrivateKey` accepts as `cipher`. */
export const keyFileCipherNames: ReadonlyArray<string> = ciphers.map((c) => c.name)

export function keyFileCipher(name: string): KeyFileCipher {
  const cipher = ciphers.find((c) => c.name === name)
  if (cipher === undefined) throw new KeyError("unsupported-cipher", `unsupported private key cipher ${JSON.stringify(name.slice(0, 64))}`)
  return cipher
}
