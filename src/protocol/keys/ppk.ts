/**
 * PuTTY private key files, versions 2 and 3 (PuTTY manual, appendix C "PPK file format"): text
 * headers, the public blob in clear, the private fields optionally under aes256-cbc, and a MAC
 * over all of it. Version 3 derives the keys with Argon2; version 2 with SHA-1.
 */
import { createDecipheriv, createHash, createHmac, timingSafeEqual } from "node:crypto"
import { argon2d, argon2i, argon2id } from "@noble/hashes/argon2.js"
import { SshReader } from "../wire/reader.js"
import { concatBytes, SshWriter } from "../wire/writer.js"
import { decodeOrCorrupt, KeyError } from "./errors.js"
import { decodePublicKeyParts, toBigInt, type PrivateKeyParts } from "./keyEncoding.js"
import { decodeBase64 } from "./publicKey.js"

const PREFIX = "PuTTY-User-Key-File-"
const AES_BLOCK = 16
/**
 * Argon2 costs a file may ask for: PuTTYgen's defaults are 8 MiB and a pass count tuned to
 * 100 ms of C; a hostile file must not make us allocate gigabytes or spin for hours.
 */
const MAX_ARGON2_MEMORY_KIB = 1024 * 1024
const MAX_ARGON2_PASSES = 1000
const MAX_ARGON2_PARALLELISM = 64

export function isPpk(text: string): boolean {
  return text.trimStart().startsWith(PREFIX)
}

interface PpkFile {
  readonly version: 2 | 3
  readonly algorithm: string
  readonly encryption: string
  readonly comment: string
  readonly publicBlob: Uint8Array
  readonly privateBlob: Uint8Array
  readonly headers: ReadonlyMap<string, string>
  readonly mac: Uint8Array
}

function readFile(text: string): PpkFile {
  const lines = text.trimStart().split(/\r\n|\r|\n/)
  let i = 0
  const headers = new Map<string, string>()
  const header = (expected?: string): [string, string] => {
    const line = lines[i++]
    const colon = line?.indexOf(": ") ?? -1
    if (line === undefined || colon < 0) throw new KeyError("corrupt", `PuTTY key file: expected a header line${expected ? ` ${expected}` : ""}`)
    const name = line.slice(0, colon)
    if (expected !== undefined && name !== expected) throw new KeyError("corrupt", `PuTTY key file: expected ${expected}, found ${JSON.stringify(name.slice(0, 40))}`)
    headers.set(name, line.slice(colon + 2))
    return [name, line.slice(colon + 2)]
  }
  const base64Lines = (name: string): Uint8Array => {
    const count = Number(header(name)[1])
    if (!Number.isInteger(count) || count < 0 || i + count > lines.length) throw new KeyError("corrupt", `PuTTY key file: bad ${name}`)
    const b64 = lines.slice(i, i + count).join("")
    i += count
    return decodeBase64(b64, `PuTTY ${name}`)
  }

  const [first, algorithm] = header()
  const version = first.slice(PREFIX.length)
  if (version !== "2" && version !== "3") {
    throw new KeyError("unsupported-format", `PuTTY key file version ${JSON.stringify(version.slice(0, 8))} is not supported (2 and 3 are)`)
  }
  const encryption = header("Encryption")[1]
  if (encryption !== "none" && encryption !== "aes256-cbc") {
    throw new KeyError("unsupported-cipher", `PuTTY key encryption ${JSON.stringify(encryption.slice(0, 32))} is not supported`)
  }
  const comment = header("Comment")[1]
  const publicBlob = base64Lines("Public-Lines")
  if (version === "3" && encryption !== "none") {
    for (const name of ["Key-Derivation", "Argon2-Memory", "Argon2-Passes", "Argon2-Parallelism", "Argon2-Salt"]) header(name)
  }
  const privateBlob = base64Lines("Private-Lines")
  const mac = header("Private-MAC")[1]
  if (!/^(?:[0-9a-f]{2})+$/i.test(mac)) throw new KeyError("corrupt", "PuTTY key file: Private-MAC is not hex")
  return { version: version === "2" ? 2 : 3, algorithm, encryption, comment, publicBlob, privateBlob, headers, mac: Buffer.from(mac, "hex") }
}

function positiveHeader(file: PpkFile, name: string, max: number): number {
  const v = Number(file.headers.get(name))
  if (!Number.isInteger(v) || v < 1 || v > max) throw new KeyError("unsupported-format", `PuTTY key file: ${name} must be 1..${max}`)
  return v
}

/** Cipher key, IV and MAC key, per format version. */
function deriveKeys(file: PpkFile, passphrase: Uint8Array): { key: Uint8Array; iv: Uint8Array; macKey: Uint8Array } {
  if (file.version === 2) {
    const sha1 = (...parts: Uint8Array[]) => createHash("sha1").update(concatBytes(...parts)).digest()
    const key = concatBytes(sha1(Uint8Array.of(0, 0, 0, 0), passphrase), sha1(Uint8Array.of(0, 0, 0, 1), passphrase)).subarray(0, 32)
    const macKey = sha1(new TextEncoder().encode("putty-private-key-file-mac-key"), passphrase)
    return { key, iv: new Uint8Array(AES_BLOCK), macKey }
  }
  if (file.encryption === "none") return { key: new Uint8Array(0), iv: new Uint8Array(0), macKey: new Uint8Array(0) }
  const kdf = file.headers.get("Key-Derivation")
  const argon2 = kdf === "Argon2id" ? argon2id : kdf === "Argon2i" ? argon2i : kdf === "Argon2d" ? argon2d : undefined
  if (argon2 === undefined) throw new KeyError("unsupported-format", `PuTTY key file: unknown Key-Derivation ${JSON.stringify(kdf?.slice(0, 20))}`)
  const salt = file.headers.get("Argon2-Salt")!
  if (!/^(?:[0-9a-f]{2})+$/i.test(salt)) throw new KeyError("corrupt", "PuTTY key file: Argon2-Salt is not hex")
  const out = argon2(passphrase, Buffer.from(salt, "hex"), {
    m: positiveHeader(file, "Argon2-Memory", MAX_ARGON2_MEMORY_KIB),
    t: positiveHeader(file, "Argon2-Passes", MAX_ARGON2_PASSES),
    p: positiveHeader(file, "Argon2-Parallelism", MAX_ARGON2_PARALLELISM),
    dkLen: 32 + AES_BLOCK + 32
  })
  return { key: out.subarray(0, 32), iv: out.subarray(32, 48), macKey: out.subarray(48) }
}

function macInput(file: PpkFile, privatePlain: Uint8Array): Uint8Array {
  return new SshWriter(file.publicBlob.length + privatePlain.length + 256)
    .string(file.algorithm)
    .string(file.encryption)
    .string(file.comment)
    .string(file.publicBlob)
    .string(privatePlain)
    .finish()
}

/** The private fields that follow the public ones, per key type (appendix C.3). */
function privateParts(publicBlob: Uint8Array, privatePlain: Uint8Array): PrivateKeyParts {
  const publicKey = decodePublicKeyParts(publicBlob)
  const r = new SshReader(privatePlain)
  // the blob may carry cipher padding after the fields, so it is not required to end exactly
  switch (publicKey.kind) {
    case "rsa": {
      const d = r.mpintBytes()
      const p = r.mpintBytes()
      const q = r.mpintBytes()
      const iqmp = r.mpintBytes()
      if (toBigInt(p) * toBigInt(q) !== toBigInt(publicKey.n)) throw new KeyError("corrupt", "RSA p·q does not equal the modulus")
      return { kind: "rsa", publicKey, d, p, q, iqmp }
    }
    case "dsa":
      return { kind: "dsa", publicKey, x: r.mpintBytes() }
    case "ecdsa":
      return { kind: "ecdsa", publicKey, d: r.mpintBytes() }
    case "ed25519": {
      // PuTTY writes the secret scalar's little-endian bytes, which are OpenSSH's 32-byte seed
      const seed = r.string()
      if (seed.length !== 32) throw new KeyError("corrupt", `ed25519 private key is ${seed.length} bytes, expected 32`)
      return { kind: "ed25519", publicKey, seed }
    }
    default:
      throw new KeyError("unsupported-key-type", `PuTTY ${publicKey.type} keys are not supported`)
  }
}

/**
 * Decodes a PuTTY private key file. Throws KeyError: "passphrase-required", "bad-passphrase"
 * (the MAC does not verify), "unsupported-cipher", "unsupported-format" or "corrupt".
 */
export function decodePpk(text: string, passphrase?: Uint8Array): { parts: PrivateKeyParts; comment: string } {
  return decodeOrCorrupt("PuTTY private key", () => {
    const file = readFile(text)
    const encrypted = file.encryption !== "none"
    if (encrypted && (passphrase === undefined || passphrase.length === 0)) {
      throw new KeyError("passphrase-required", "the PuTTY key is encrypted; a passphrase is required")
    }
    const pass = encrypted ? passphrase! : new Uint8Array(0)
    const { key, iv, macKey } = deriveKeys(file, pass)
    let plain = file.privateBlob
    if (encrypted) {
      if (plain.length % AES_BLOCK !== 0) throw new KeyError("corrupt", "PuTTY private blob is not a whole number of AES blocks")
      const d = createDecipheriv("aes-256-cbc", key, iv).setAutoPadding(false)
      plain = concatBytes(d.update(plain), d.final())
    }
    const mac = createHmac(file.version === 2 ? "sha1" : "sha256", macKey).update(macInput(file, plain)).digest()
    if (mac.length !== file.mac.length || !timingSafeEqual(mac, file.mac)) {
      throw encrypted
        ? new KeyError("bad-passphrase", "wrong passphrase for the PuTTY key (its MAC does not verify)")
        : new KeyError("corrupt", "the PuTTY key file was modified (its MAC does not verify)")
    }
    if (decodePublicKeyParts(file.publicBlob).type !== file.algorithm) {
      throw new KeyError("corrupt", `the PuTTY key file says ${file.algorithm} but its public key is another type`)
    }
    return { parts: privateParts(file.publicBlob, plain), comment: file.comment }
  })
}
