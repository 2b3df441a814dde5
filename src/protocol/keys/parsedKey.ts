/**
 * The key object of ssh2's `utils.parseKey`: type, comment, equals, getPrivatePEM,
 * getPublicPEM, getPublicSSH, isPrivateKey, sign and verify, over this library's keys, so the
 * classic edge only has to adapt errors.
 */
import { sign as nodeSign, verify as nodeVerify, type KeyObject } from "node:crypto"
import { rsaHash } from "./algorithms.js"
import { KeyError } from "./errors.js"
import { decodePublicKeyParts, equalBytes, type PublicKeyParts } from "./keyEncoding.js"
import { privateKeyObject, publicKeyObject } from "./nodeKeys.js"
import { parsePrivateKey, privateKeyParts, type SshPrivateKey } from "./privateKey.js"
import { verifySignature, type SshPublicKey } from "./publicKey.js"
import { encodePublicKeyPem, parsePublicKey } from "./publicKeyFile.js"

export interface ParsedKey {
  /** The full key type, e.g. `ssh-rsa` or `ssh-ed25519-cert-v01@openssh.com`. */
  readonly type: string
  readonly comment: string
  /** Same public key (comments are not compared); `other` may be a ParsedKey, a blob or parseable key text. */
  equals(other: ParsedKey | Uint8Array | string): boolean
  /** PKCS#1 for RSA, SEC1 for ECDSA, PKCS#8 for Ed25519 and DSA; null for a public key. */
  getPrivatePEM(): string | null
  /** SubjectPublicKeyInfo PEM. */
  getPublicPEM(): string
  /** The public key blob. */
  getPublicSSH(): Buffer
  isPrivateKey(): boolean
  /**
   * Signs `data` and returns the signature as node:crypto makes it (raw for Ed25519 and RSA, DER
   * for ECDSA and DSA), as ssh2 does. `algorithm` picks the RSA hash: a hash name ("sha256") or a
   * signature algorithm ("rsa-sha2-512"); the default is SHA-1 for ssh-rsa as in ssh2.
   */
  sign(data: Uint8Array | string, algorithm?: string): Buffer
  /** Verifies a signature in the form `sign` returns, or a whole SSH signature blob. */
  verify(data: Uint8Array | string, signature: Uint8Array, algorithm?: string): boolean
}

const toBytes = (data: Uint8Array | string) => (typeof data === "string" ? Buffer.from(data) : data)

function hashFor(parts: PublicKeyParts, algorithm: string | undefined): string | null {
  switch (parts.kind) {
    case "ed25519":
    case "sk-ed25519":
      return null
    case "rsa":
      if (algorithm === undefined) return "sha1"
      return rsaHash(algorithm) ?? (["sha1", "sha256", "sha512"].includes(algorithm) ? algorithm : unsupported(algorithm))
    case "ecdsa":
    case "sk-ecdsa":
      return parts.curve.hash
    case "dsa":
      return "sha1"
  }
}

function unsupported(algorithm: string): never {
  throw new KeyError("unsupported-key-type", `cannot sign with ${JSON.stringify(algorithm.slice(0, 64))} using an RSA key`)
}

function makeParsedKey(publicKey: SshPublicKey, privateKey?: SshPrivateKey): ParsedKey {
  const certified = publicKey.certificate?.publicKey ?? publicKey.blob
  const parts = decodePublicKeyParts(certified)
  let nodePublic: KeyObject | undefined
  const publicObject = () => (nodePublic ??= publicKeyObject(parts))
  let nodePrivate: KeyObject | undefined
  const privateObject = () => {
    const fields = privateKey === undefined ? undefined : privateKeyParts(privateKey)
    if (fields === undefined) throw new KeyError("unsupported-format", "this key has no private half")
    return (nodePrivate ??= privateKeyObject(fields))
  }
  const dsaEncoding = { dsaEncoding: "der" as const }
  return {
    type: publicKey.type,
    comment: privateKey?.comment ?? publicKey.comment,
    equals(other) {
      const blob = typeof other === "string" ? parsePublicKey(other).blob : other instanceof Uint8Array ? other : other.getPublicSSH()
      return equalBytes(blob, publicKey.blob)
    },
    getPrivatePEM() {
      if (privateKey === undefined) return null
      const key = privateObject()
      const type = key.asymmetricKeyType === "rsa" ? "pkcs1" : key.asymmetricKeyType === "ec" ? "sec1" : "pkcs8"
      return key.export({ type, format: "pem" }).toString()
    },
    getPublicPEM: () => encodePublicKeyPem(parts),
    getPublicSSH: () => Buffer.from(publicKey.blob),
    isPrivateKey: () => privateKey !== undefined,
    sign(data, algorithm) {
      return nodeSign(hashFor(parts, algorithm), toBytes(data), { key: privateObject(), ...dsaEncoding })
    },
    verify(data, signature, algorithm) {
      const bytes = toBytes(data)
      // a whole SSH signature blob starts with the length of its algorithm name
      if (signature.length > 4 && signature[0] === 0 && verifySignature(publicKey.blob, signature, bytes)) return true
      try {
        return nodeVerify(hashFor(parts, algorithm), bytes, { key: publicObject(), ...dsaEncoding }, signature)
      } catch {
        return false
      }
    }
  }
}

/** Wraps a key of this library in the ssh2 `parseKey` shape. */
export function toParsedKey(key: SshPrivateKey | SshPublicKey): ParsedKey {
  return "publicKey" in key ? makeParsedKey(key.publicKey, key) : makeParsedKey(key)
}

/**
 * ssh2's `utils.parseKey`: a private key in any supported format (OpenSSH, PEM, PKCS#8, PPK),
 * or else a public key (OpenSSH line, RFC 4716, PEM). Throws KeyError.
 */
export function parseKey(data: string | Uint8Array, passphrase?: string | Uint8Array): ParsedKey {
  const text = typeof data === "string" ? data : Buffer.from(data).toString("latin1")
  if (/PRIVATE KEY-----|^\s*PuTTY-User-Key-File-/.test(text) || text.startsWith("openssh-key-v1\0")) {
    return toParsedKey(parsePrivateKey(data, passphrase))
  }
  return toParsedKey(parsePublicKey(data))
}

