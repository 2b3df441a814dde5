/**
 * The openssh-key-v1 private key container (PROTOCOL.key), the binary inside
 * "-----BEGIN OPENSSH PRIVATE KEY-----".
 */
import { randomBytes } from "node:crypto"
import { SshReader } from "../wire/reader.js"
import { SshWriter } from "../wire/writer.js"
import { bcryptPbkdf } from "./bcryptPbkdf.js"
import { decodeOrCorrupt, KeyError } from "./errors.js"
import { keyFileCipher, type KeyFileCipher } from "./keyFileCiphers.js"
import {
  encodePublicKeyParts,
  equalBytes,
  readPrivateKeyFields,
  writePrivateKeyFields,
  type PrivateKeyParts
} from "./keyEncoding.js"

const MAGIC = new TextEncoder().encode("openssh-key-v1\0")
/** Block size of the "none" cipher, which pads like a 64-bit block cipher. */
const NONE_BLOCK_SIZE = 8
const SALT_LENGTH = 16
export const DEFAULT_KDF_ROUNDS = 16
/**
 * A file asking for more rounds is refused rather than left to run for minutes or years (each
 * round costs ~10 ms here); ssh-keygen's default is 16 and -a 100 is a common hardening.
 */
export const MAX_KDF_ROUNDS = 4096

const commentDecoder = new TextDecoder()

export function isOpenSSHKeyBinary(bin: Uint8Array): boolean {
  return bin.length >= MAGIC.length && equalBytes(bin.subarray(0, MAGIC.length), MAGIC)
}

interface Kdf {
  readonly salt: Uint8Array
  readonly rounds: number
}

function deriveKeyAndIv(cipher: KeyFileCipher, passphrase: Uint8Array, kdf: Kdf) {
  const derived = bcryptPbkdf(passphrase, kdf.salt, cipher.keyLength + cipher.ivLength, kdf.rounds)
  return { key: derived.subarray(0, cipher.keyLength), iv: derived.subarray(cipher.keyLength) }
}

/** Decodes an openssh-key-v1 container holding one key; throws KeyError with the reason. */
export function decodeOpenSSHPrivateKey(bin: Uint8Array, passphrase?: Uint8Array): { parts: PrivateKeyParts; comment: string } {
  return decodeOrCorrupt("OpenSSH private key", () => {
    if (!isOpenSSHKeyBinary(bin)) throw new KeyError("corrupt", "missing openssh-key-v1 magic")
    const r = new SshReader(bin, MAGIC.length)
    const cipherName = r.ascii()
    const kdfName = r.ascii()
    const kdfOptions = r.string()
    const count = r.uint32()
    if (count !== 1) throw new KeyError("unsupported-format", `OpenSSH key files with ${count} keys are not supported`)
    const publicBlob = r.string()
    const section = r.string()

    let plaintext = section
    const encrypted = cipherName !== "none"
    if (!encrypted) {
      if (kdfName !== "none") throw new KeyError("corrupt", `kdf ${kdfName} without a cipher`)
      r.end()
      if (section.length % NONE_BLOCK_SIZE !== 0) throw new KeyError("corrupt", "private section is not padded")
    } else {
      const cipher = keyFileCipher(cipherName)
      if (kdfName !== "bcrypt") throw new KeyError("unsupported-format", `unsupported key derivation ${JSON.stringify(kdfName.slice(0, 64))}`)
      const options = new SshReader(kdfOptions)
      const kdf: Kdf = { salt: options.string(), rounds: options.uint32() }
      options.end()
      const tag = r.bytes(cipher.tagLength)
      r.end()
      if (passphrase === undefined || passphrase.length === 0) {
        throw new KeyError("passphrase-required", "the private key is encrypted; a passphrase is required")
      }
      if (kdf.rounds < 1 || kdf.rounds > MAX_KDF_ROUNDS) {
        throw new KeyError("unsupported-format", `bcrypt rounds ${kdf.rounds} outside 1..${MAX_KDF_ROUNDS}`)
      }
      if (section.length % cipher.blockSize !== 0) throw new KeyError("corrupt", "encrypted section is not a whole number of blocks")
      const { key, iv } = deriveKeyAndIv(cipher, passphrase, kdf)
      const decrypted = cipher.decrypt(key, iv, section, tag)
      if (decrypted === undefined) throw new KeyError("bad-passphrase", "wrong passphrase (authentication tag mismatch)")
      plaintext = decrypted
    }

    const p = new SshReader(plaintext)
    if (p.uint32() !== p.uint32()) {
      throw encrypted
        ? new KeyError("bad-passphrase", "wrong passphrase (check values differ after decryption)")
        : new KeyError("corrupt", "check values differ")
    }
    const parts = readPrivateKeyFields(p)
    const comment = commentDecoder.decode(p.string())
    const padding = p.rest()
    for (let i = 0; i < padding.length; i++) {
      if (padding[i] !== i + 1) throw new KeyError("corrupt", "bad padding after the private key")
    }
    if (!equalBytes(encodePublicKeyParts(parts.publicKey), publicBlob)) {
      throw new KeyError("corrupt", "the private key does not match the public key in the file")
    }
    return { parts, comment }
  })
}

export interface OpenSSHEncodeOptions {
  /** Encrypts when non-empty. */
  readonly passphrase?: Uint8Array
  readonly rounds?: number
  /** Default aes256-ctr, as ssh-keygen. */
  readonly cipher?: string
}

/** Encodes one key as an openssh-key-v1 container. */
export function encodeOpenSSHPrivateKey(parts: PrivateKeyParts, comment: string, options: OpenSSHEncodeOptions = {}): Uint8Array {
  const passphrase = options.passphrase ?? new Uint8Array(0)
  const cipher = passphrase.length > 0 ? keyFileCipher(options.cipher ?? "aes256-ctr") : undefined
  const rounds = options.rounds ?? DEFAULT_KDF_ROUNDS
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > MAX_KDF_ROUNDS) {
    throw new KeyError("unsupported-format", `bcrypt rounds must be 1..${MAX_KDF_ROUNDS}`)
  }

  const check = randomBytes(4).readUInt32BE(0)
  const section = new SshWriter(512).uint32(check).uint32(check)
  writePrivateKeyFields(section, parts)
  section.string(comment)
  const blockSize = cipher?.blockSize ?? NONE_BLOCK_SIZE
  for (let i = 1; section.length % blockSize !== 0; i++) section.byte(i)
  const plaintext = section.finish()

  const w = new SshWriter(1024).raw(MAGIC)
  if (cipher === undefined) {
    w.string("none").string("none").string(new Uint8Array(0)).uint32(1).string(encodePublicKeyParts(parts.publicKey))
    w.string(plaintext)
  } else {
    const kdf: Kdf = { salt: randomBytes(SALT_LENGTH), rounds }
    const { key, iv } = deriveKeyAndIv(cipher, passphrase, kdf)
    const { ciphertext, tag } = cipher.encrypt(key, iv, plaintext)
    const kdfOptions = new SshWriter(32).string(kdf.salt).uint32(kdf.rounds).finish()
    w.string(cipher.name).string("bcrypt").string(kdfOptions).uint32(1).string(encodePublicKeyParts(parts.publicKey))
    w.string(ciphertext).raw(tag)
  }
  return w.finish()
}
