/**
 * SSH public keys: blobs, the one-line text form of authorized_keys / known_hosts / *.pub files,
 * and fingerprints as `ssh-keygen -l` prints them.
 */
import { createHash } from "node:crypto"
import { isCertificateType } from "./algorithms.js"
import { blobKeyType, decodeCertificate, type SshCertificate } from "./certificateEncoding.js"
import { decodeOrCorrupt, KeyError } from "./errors.js"
import { decodePublicKeyParts, publicKeyBits } from "./keyEncoding.js"

export { keyTypeOfAlgorithm, signatureAlgorithms } from "./algorithms.js"
export { parseSignatureBlob, verifySignature, type ParsedSignature } from "./signature.js"

export interface SshPublicKey {
  /** ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256|384|521, ssh-dss, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com */
  readonly type: string
  /** The public key blob as sent on the wire. */
  readonly blob: Uint8Array
  readonly bits: number
  readonly comment: string
  /** Present when the blob is an OpenSSH certificate (`type` is then its `*-cert-v01@openssh.com` type); not yet verified. */
  readonly certificate?: SshCertificate
}

/** Reads a public key or certificate blob; throws KeyError ("unsupported-key-type" or "corrupt"). */
export function parsePublicKeyBlob(blob: Uint8Array, comment = ""): SshPublicKey {
  const copy = Uint8Array.from(blob)
  const type = blobKeyType(copy)
  if (type !== undefined && isCertificateType(type)) {
    const certificate = decodeCertificate(copy)
    const bits = publicKeyBits(decodePublicKeyParts(certificate.publicKey))
    return { type, blob: certificate.blob, bits, comment, certificate }
  }
  const parts = decodeOrCorrupt("public key blob", () => decodePublicKeyParts(copy))
  return { type: parts.type, blob: copy, bits: publicKeyBits(parts), comment }
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/

/** Strict base64: node's decoder skips characters it does not know, which hides corruption. */
export function decodeBase64(text: string, what: string): Uint8Array {
  if (text.length % 4 !== 0 || !BASE64.test(text)) throw new KeyError("corrupt", `${what} is not valid base64`)
  return Uint8Array.from(Buffer.from(text, "base64"))
}

/**
 * Reads `type base64 [comment]`, the form of *.pub files and authorized_keys / known_hosts lines
 * without their options or host fields. The type must match the blob's.
 */
export function parsePublicKeyLine(line: string): SshPublicKey {
  const match = /^\s*(\S+)\s+(\S+)(?:\s+(.*?))?\s*$/.exec(line)
  if (match === null) throw new KeyError("unsupported-format", "not a public key line: expected `type base64 [comment]`")
  const [, type, data, comment] = match
  const key = parsePublicKeyBlob(decodeBase64(data!, "public key"), comment ?? "")
  if (key.type !== type) throw new KeyError("corrupt", `the line says ${type} but the key is ${key.type}`)
  return key
}

/** `type base64 comment`, as in a *.pub file; `comment` replaces the key's own. */
export function formatPublicKeyLine(key: SshPublicKey, comment: string = key.comment): string {
  const base = `${key.type} ${Buffer.from(key.blob).toString("base64")}`
  return comment === "" ? base : `${base} ${comment}`
}

/**
 * The fingerprint `ssh-keygen -l` prints: `SHA256:` and unpadded base64 (the default), or `MD5:`
 * and colon-separated hex.
 */
export function fingerprint(blob: Uint8Array, hash: "sha256" | "md5" = "sha256"): string {
  const digest = createHash(hash).update(blob).digest()
  if (hash === "md5") return "MD5:" + (digest.toString("hex").match(/../g) ?? []).join(":")
  return "SHA256:" + digest.toString("base64").replace(/=+$/, "")
}
