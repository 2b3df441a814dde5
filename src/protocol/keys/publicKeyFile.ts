/**
 * One entry point for public key files, whatever wrote them: OpenSSH lines (`*.pub`, including
 * certificates), RFC 4716 (`ssh-keygen -e`, PuTTYgen), and PEM SubjectPublicKeyInfo or PKCS#1
 * (`ssh-keygen -e -m PKCS8|PEM`, OpenSSL).
 */
import { createPublicKey } from "node:crypto"
import { findArmoredBlock } from "./armor.js"
import { KeyError } from "./errors.js"
import { encodePublicKeyParts, type PublicKeyParts } from "./keyEncoding.js"
import { publicKeyObject, publicKeyPartsFromKeyObject } from "./nodeKeys.js"
import { parsePublicKeyBlob, parsePublicKeyLine, type SshPublicKey } from "./publicKey.js"
import { decodeRfc4716, isRfc4716 } from "./rfc4716.js"

const PEM_PUBLIC_LABELS = ["PUBLIC KEY", "RSA PUBLIC KEY"]
const textDecoder = new TextDecoder()

/**
 * Reads a public key in any format it sniffs; throws KeyError ("unsupported-format",
 * "unsupported-key-type" or "corrupt"). Bytes that are not text are read as a raw key blob.
 */
export function parsePublicKey(data: string | Uint8Array): SshPublicKey {
  if (typeof data !== "string" && looksBinary(data)) return parsePublicKeyBlob(data)
  const text = typeof data === "string" ? data : textDecoder.decode(data)
  if (isRfc4716(text)) {
    const { blob, headers } = decodeRfc4716(text)
    return parsePublicKeyBlob(blob, headers.get("Comment") ?? "")
  }
  const pem = findArmoredBlock(text, (label) => PEM_PUBLIC_LABELS.includes(label))
  if (pem !== undefined) return parsePublicKeyBlob(encodePublicKeyParts(pemPublicKeyParts(pem.text, pem.label)))
  if (/-----BEGIN [A-Z0-9 ]+-----/.test(text)) {
    throw new KeyError("unsupported-format", "no public key found: the PEM block is not a PUBLIC KEY")
  }
  const line = text.split(/\r?\n/).find((l) => l.trim() !== "" && !l.trimStart().startsWith("#"))
  if (line === undefined) throw new KeyError("unsupported-format", "no public key found")
  return parsePublicKeyLine(line)
}

function pemPublicKeyParts(pem: string, label: string): PublicKeyParts {
  try {
    return publicKeyPartsFromKeyObject(createPublicKey({ key: pem, format: "pem", ...(label === "RSA PUBLIC KEY" ? { type: "pkcs1" } : {}) }))
  } catch (e) {
    if (e instanceof KeyError) throw e
    throw new KeyError("corrupt", `malformed ${label}: ${e instanceof Error ? e.message : String(e)}`)
  }
}

/** A key blob starts with a uint32 length, so its first byte is 0; text never does. */
function looksBinary(bytes: Uint8Array): boolean {
  return bytes.length > 0 && bytes[0] === 0
}

/** The key as "-----BEGIN PUBLIC KEY-----" (SubjectPublicKeyInfo), as OpenSSL and `ssh-keygen -e -m PKCS8` write it. */
export function encodePublicKeyPem(parts: PublicKeyParts): string {
  if (parts.kind === "sk-ecdsa" || parts.kind === "sk-ed25519") {
    throw new KeyError("unsupported-key-type", `${parts.type} keys have no PEM form`)
  }
  return publicKeyObject(parts).export({ type: "spki", format: "pem" }).toString()
}
